import mysql from 'mysql2';
import type { Connection, FieldPacket, QueryOptions } from 'mysql2';
import { PassThrough, finished } from 'node:stream';
import type { Readable } from 'node:stream';
import { ReseedError, abortError, errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';
import { RawCommand, bulkOperations, queueCommand } from './bulk-command.js';
import { connectHints, connectionOptions } from './connection-options.js';
import type { Endpoint } from './credentials.js';
import { describeEndpoint } from './credentials.js';
import { QueryKiller, drop } from './kill-query.js';
import type { SessionParts } from './kill-query.js';

/** A row from a metadata query: column name to value (numbers and dates as strings, never lossy). */
export type Row = Record<string, unknown>;
/** A row from a data query: raw column bytes as the server sent them, null for SQL NULL. */
export type RawRow = (Buffer | null)[];

/**
 * One connected endpoint: the only place SQL is sent. Owning this boundary ("the subset of
 * mysql2 we need") keeps the driver replaceable and lets tests record what logic would send.
 */
export interface Server {
  readonly endpoint: Endpoint;
  /** "donor 127.0.0.1:3306": for messages; never holds a password. */
  readonly label: string;
  readonly connectionId: number;
  query(sql: string, params?: unknown[], signal?: AbortSignal): Promise<Row[]>;
  /** Rows as raw bytes with backpressure: memory stays bounded whatever the result size. */
  streamRaw(sql: string, signal?: AbortSignal): AsyncIterable<RawRow>;
  /**
   * Rows as they come off the wire, handed to `onRow(buf, start, end, columns)` without being
   * decoded (the fast path of the logical copy). Backpressure: while `onRow` returns false the
   * connection is paused until `resume` is called.
   */
  streamPackets(sql: string, sink: PacketSink, signal?: AbortSignal): Promise<void>;
  /** Runs a LOAD DATA LOCAL INFILE statement whose file content is `source`. */
  loadData(sql: string, source: Readable, signal?: AbortSignal): Promise<number>;
  /**
   * True when this session may send COM_STMT_BULK_EXECUTE (MariaDB array binding: one prepared
   * INSERT, many rows, no SQL text to parse per row).
   */
  readonly bulkExecute: boolean;
  /** Prepares a statement; its id goes into the packets given to executeBulk. */
  prepare(sql: string, signal?: AbortSignal): Promise<PreparedStatement>;
  /**
   * Sends one COM_STMT_BULK_EXECUTE command, `packet` being the whole packet with 4 bytes
   * reserved in front for the header (see BulkEncoder), and resolves with the rows it affected.
   * Calls queue up on the connection and run in order.
   */
  executeBulk(packet: Buffer): Promise<number>;
  /**
   * Kills the statement this session is running, if any (KILL QUERY from a short-lived side
   * connection), and resolves once that is done; never rejects. The statement's caller gets
   * "Query execution was interrupted" (1317). An AbortSignal passed to the calls above does this
   * by itself; executeBulk takes none, so its callers use this.
   */
  killQuery(): Promise<void>;
  close(): Promise<void>;
  /**
   * Drops the socket at once (the server rolls back and releases this session's locks); a
   * statement it runs is killed, and the calls waiting on it fail.
   */
  destroy(): void;
}

export interface PacketSink {
  /** one row packet; return false to pause the connection until resume() */
  onRow(buf: Buffer, start: number, end: number, columns: number): boolean;
  /** registers the function that resumes a paused connection */
  setResume(resume: () => void): void;
}

export interface PreparedStatement {
  readonly id: number;
  readonly parameters: number;
  close(): void;
}

/** The subset of mysql2's internal Packet that streamPackets reads. */
interface WirePacket {
  buffer: Buffer;
  offset: number;
  end: number;
  isEOF(): boolean;
}

/** The subset of mysql2's internal Query command that streamPackets drives. */
interface WireQuery {
  row: (packet: WirePacket, conn: unknown) => unknown;
  _fieldCount: number;
  on(event: string, fn: (...args: unknown[]) => void): void;
}

export interface ConnectOptions {
  /** Session statements run right after connecting (sql_log_bin=0, time_zone...). */
  init?: string[];
  connectTimeoutMs?: number;
  /** where a kill that failed is reported (it never fails the call) */
  log?: Logger;
}

/** close() waits this long for the statement before COM_QUIT, then drops the socket. */
const CLOSE_TIMEOUT_MS = 2000;

export async function connect(endpoint: Endpoint, options: ConnectOptions = {}): Promise<Server> {
  const config = connectionOptions(endpoint, options.connectTimeoutMs ?? 10_000);
  const label = describeEndpoint(endpoint);
  const connection = mysql.createConnection(config);
  try {
    await new Promise<void>((resolve, reject) =>
      connection.connect((err) => (err ? reject(err) : resolve())),
    );
  } catch (err) {
    drop(connection);
    throw new ReseedError('CONNECT_FAILED', `cannot connect to ${label}: ${errorMessage(err)}`, {
      cause: err,
      retryable: true,
      hints: connectHints(err, endpoint),
    });
  }
  const server = new Mysql2Server({ endpoint, label, connection, config, log: options.log ?? defaultLog() });
  for (const statement of options.init ?? []) {
    try {
      await server.query(statement);
    } catch (err) {
      // The session is of no use without its settings, and nobody else holds it to close it.
      server.destroy();
      throw initFailed(label, statement, err);
    }
  }
  return server;
}

function initFailed(label: string, statement: string, err: unknown): ReseedError {
  const errno = sqlErrno(err);
  const cause = (err as { cause?: { sqlMessage?: string } }).cause;
  const reason = cause?.sqlMessage ?? errorMessage(err);
  // 1227: "you need (at least one of) the X privilege(s)"; 1044, 1142: access denied.
  const denied = errno === 1227 || errno === 1044 || errno === 1142;
  const failure = new ReseedError(
    'CONNECT_FAILED',
    `connected to ${label}, but its session setup statement \`${shortSql(statement)}\` failed: ${reason}`,
    {
      cause: err,
      // no answer from the server (the connection broke) may go better another time
      retryable: errno === undefined,
      hints: denied
        ? [
            'grant that account the privilege the message names, or connect with an account that has it (see docs/credentials.md)',
          ]
        : [],
    },
  );
  return Object.assign(failure, { sqlErrno: errno });
}

interface ServerParts extends SessionParts {
  endpoint: Endpoint;
}

class Mysql2Server implements Server {
  readonly endpoint: Endpoint;
  readonly label: string;
  readonly #connection: Connection;
  readonly #killer: QueryKiller;
  #fatal: Error | undefined;
  #closed = false;

  constructor(parts: ServerParts) {
    this.endpoint = parts.endpoint;
    this.label = parts.label;
    this.#connection = parts.connection;
    this.#killer = new QueryKiller(parts);
    // An idle connection that dies must not crash the process; the next call reports it.
    parts.connection.on('error', (err) => (this.#fatal = err));
  }

  get bulkExecute(): boolean {
    return bulkOperations(this.#connection);
  }

  get connectionId(): number {
    return this.#connection.threadId ?? -1;
  }

  prepare(sql: string, signal?: AbortSignal): Promise<PreparedStatement> {
    const refused = this.#refuse(sql, signal);
    if (refused) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      this.#whenFree(
        sql,
        () => {
          const command = this.#connection.prepare(sql, (err, info) => {
            if (err) return reject(this.#wrap(err, sql));
            const statement = info as unknown as { id: number; parameters: unknown[] };
            resolve({
              id: statement.id,
              parameters: statement.parameters.length,
              close: () => this.#connection.unprepare(sql),
            });
          });
          this.#killer.track(command);
        },
        reject,
      );
    });
  }

  executeBulk(packet: Buffer): Promise<number> {
    const refused = this.#refuse('COM_STMT_BULK_EXECUTE');
    if (refused) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      this.#whenFree(
        'COM_STMT_BULK_EXECUTE',
        () => {
          const command = new RawCommand(packet, (err, affected) =>
            err ? reject(this.#wrap(err, 'COM_STMT_BULK_EXECUTE')) : resolve(affected ?? 0),
          );
          this.#killer.track(command);
          queueCommand(this.#connection, command);
        },
        reject,
      );
    });
  }

  query(sql: string, params: unknown[] = [], signal?: AbortSignal): Promise<Row[]> {
    const refused = this.#refuse(sql, signal);
    if (refused) return Promise.reject(refused);
    return new Promise<Row[]>((resolve, reject) => {
      let command: object | undefined;
      const onAbort = () => {
        reject(abortError(signal!));
        if (command) void this.#killer.stop(command);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#whenFree(
        sql,
        () => {
          if (signal?.aborted) return;
          command = this.#connection.query({ sql, values: params }, (err, rows) => {
            signal?.removeEventListener('abort', onAbort);
            if (err) return reject(this.#wrap(err, sql));
            resolve(Array.isArray(rows) ? (rows as Row[]) : []);
          });
          this.#killer.track(command);
        },
        (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  async *streamRaw(sql: string, signal?: AbortSignal): AsyncIterable<RawRow> {
    const refused = this.#refuse(sql, signal);
    if (refused) throw refused;
    await this.#killer.gate;
    const late = this.#refuse(sql, signal);
    if (late) throw late;
    const query = this.#connection.query({ sql, rowsAsArray: true, typeCast: (field) => field.buffer() });
    this.#killer.track(query);
    // The error of a killed query comes after its stream is gone; unheard, mysql2 would throw it
    // while reading packets and break the connection.
    query.on('error', () => undefined);
    const stream = query.stream({ highWaterMark: 256 });
    const onAbort = () => {
      stream.destroy(abortError(signal!));
      this.#killer.abandon(query);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const row of stream as AsyncIterable<RawRow>) yield row;
    } catch (err) {
      throw this.#wrap(err, sql);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // Given up before its end (aborted, failed, or the consumer stopped reading): the server
      // would go on producing rows that nobody reads. A no-op when it ended.
      this.#killer.abandon(query);
    }
  }

  streamPackets(sql: string, sink: PacketSink, signal?: AbortSignal): Promise<void> {
    const refused = this.#refuse(sql, signal);
    if (refused) return Promise.reject(refused);
    const connection = this.#connection;
    return new Promise<void>((resolve, reject) => {
      let query: WireQuery | undefined;
      let abandoned = false;
      const onAbort = () => {
        abandoned = true;
        reject(abortError(signal!));
        if (query) this.#killer.abandon(query);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#whenFree(
        sql,
        () => {
          if (signal?.aborted) return;
          query = connection.query(sql) as unknown as WireQuery;
          this.#killer.track(query);
          // mysql2 drives a query through states; after the column definitions its next state is
          // `this.row`. Our own `row` reads the packet bytes and leaves end-of-rows to mysql2.
          // This is the one place reseed relies on mysql2 internals; the logical clone tests cover
          // it. Rows that arrive after an abort, before the kill lands, are dropped.
          const original = Object.getPrototypeOf(query).row as WireQuery['row'];
          const fast = function (this: WireQuery, packet: WirePacket, conn: unknown): unknown {
            if (packet.isEOF()) return original.call(this, packet, conn);
            if (!abandoned && !sink.onRow(packet.buffer, packet.offset, packet.end, this._fieldCount)) {
              connection.pause();
            }
            return fast;
          };
          query.row = fast;
          sink.setResume(() => {
            // after an abort, #abandon resumes the connection once the kill is done
            if (!abandoned) connection.resume();
          });
          query.on('error', (err) => {
            signal?.removeEventListener('abort', onAbort);
            reject(this.#wrap(err, sql));
          });
          query.on('end', () => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          });
        },
        (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  loadData(sql: string, source: Readable, signal?: AbortSignal): Promise<number> {
    const refused = this.#refuse(sql, signal);
    if (refused) return Promise.reject(refused);
    return new Promise<number>((resolve, reject) => {
      // mysql2 reads `file`, never `source`: when its stream fails mysql2 ends the file, and the
      // server then commits the rows sent so far. A failed or aborted source must not do that.
      const file = new PassThrough();
      let command: object | undefined;
      let settled = false;
      let fileOpen = false;
      const settle = (err: unknown, rows = 0) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(rows);
      };
      const abandon = (err: unknown) => {
        if (settled) return;
        settle(err);
        source.unpipe(file);
        void this.#abandonLoad(command, () => fileOpen);
      };
      // Kept to the end: it also hears the error of the source destroyed on abort, below.
      finished(source, (err) => {
        if (err) abandon(err);
      });
      const onAbort = () => {
        abandon(abortError(signal!));
        source.destroy(abortError(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const infileStreamFactory = () => {
        fileOpen = true;
        // Asked for the file after we gave up (the kill came too late or failed): the statement
        // must end with its session, see #abandonLoad.
        if (settled) queueMicrotask(() => this.destroy());
        else {
          source.once('end', () => {
            fileOpen = false;
            file.end();
          });
          source.pipe(file, { end: false });
        }
        return file;
      };
      this.#whenFree(
        sql,
        () => {
          if (settled) return;
          command = this.#connection.query(
            { sql, infileStreamFactory } as QueryOptions,
            (err, result: unknown, _fields?: FieldPacket[]) =>
              err
                ? settle(this.#wrap(err, sql))
                : settle(null, (result as { affectedRows?: number }).affectedRows ?? 0),
          );
          this.#killer.track(command);
        },
        settle,
      );
    });
  }

  killQuery(): Promise<void> {
    return this.#killer.killRunning();
  }

  close(): Promise<void> {
    this.#closed = true;
    return new Promise((resolve) => {
      this.#connection.end(() => resolve());
      // end() waits for the statement before it; a server that vanished must not hang us.
      setTimeout(() => {
        drop(this.#connection);
        resolve();
      }, CLOSE_TIMEOUT_MS).unref();
    });
  }

  destroy(): void {
    this.#closed = true;
    this.#killer.dropSession();
  }

  /**
   * Ends a LOAD DATA LOCAL given up on: killed first (it stops at its next row), and if it still
   * waits for the file, its session is dropped, for ending the file would commit it.
   */
  async #abandonLoad(command: object | undefined, fileOpen: () => boolean): Promise<void> {
    if (!command) return;
    await this.#killer.stop(command);
    if (this.#killer.runs(command) && fileOpen()) this.destroy();
  }

  /**
   * Runs `send` now, or once the kills in flight are done (unless the session was closed
   * meanwhile); `fail` gets what it throws.
   */
  #whenFree(sql: string, send: () => void, fail: (err: unknown) => void): void {
    const run = () => {
      try {
        send();
      } catch (err) {
        fail(err);
      }
    };
    const gate = this.#killer.gate;
    if (!gate) return run();
    void gate.then(() => {
      const refused = this.#refuse(sql);
      if (refused) fail(refused);
      else run();
    });
  }

  #refuse(sql: string, signal?: AbortSignal): Error | undefined {
    if (this.#fatal) return this.#wrap(this.#fatal, sql);
    if (signal?.aborted) return abortError(signal);
    if (this.#closed)
      return new ReseedError('INTERNAL', `${this.label}: session already closed [${shortSql(sql)}]`);
    return undefined;
  }

  #wrap(err: unknown, sql: string): Error {
    if (err instanceof ReseedError) return err;
    const e = err as { code?: string; errno?: number; sqlMessage?: string; message?: string };
    const wrapped = new ReseedError(
      'INTERNAL',
      `${this.label}: ${e.sqlMessage ?? e.message} [${shortSql(sql)}]`,
      {
        cause: err,
      },
    );
    return Object.assign(wrapped, { sqlErrno: e.errno, sqlCode: e.code });
  }
}

/** A statement for a message: shortened, and withheld when it may hold a secret. */
function shortSql(sql: string): string {
  if (/IDENTIFIED|PASSWORD/i.test(sql)) return '(statement withheld: it may hold a secret)';
  return sql.length > 160 ? `${sql.slice(0, 160)}...` : sql;
}

let fallbackLog: Logger | undefined;
/** For callers that pass no logger: the CLI's default, silent unless RESEED_LOG_LEVEL says. */
function defaultLog(): Logger {
  fallbackLog ??= createLogger({ level: process.env.RESEED_LOG_LEVEL ?? 'silent' });
  return fallbackLog;
}

/** The server's error number behind a failure from Server, if it came from the server. */
export function sqlErrno(err: unknown): number | undefined {
  return (err as { sqlErrno?: number } | undefined)?.sqlErrno;
}

export function quoteIdent(name: string): string {
  return '`' + name.replaceAll('`', '``') + '`';
}

export function quoteString(value: string): string {
  return "'" + value.replaceAll('\\', '\\\\').replaceAll("'", "''").replaceAll('\0', '\\0') + "'";
}
