import mysql from 'mysql2';
import type { Connection, ConnectionOptions, FieldPacket, QueryOptions } from 'mysql2';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PassThrough, finished } from 'node:stream';
import type { Readable } from 'node:stream';
import { ReseedError, abortError, errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { Endpoint, TlsSettings } from './credentials.js';
import { valueLength } from './wire.js';
import { describeEndpoint } from './credentials.js';

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

/** The subset of mysql2's Connection internals this file reads. */
interface ConnectionInternals {
  /** the command the connection runs: sent, its answer not yet complete */
  _command: object | null;
  _fatalError: Error | null;
  /** fails the running and queued commands, as when the connection is lost */
  _notifyError(err: Error): void;
  stream?: { destroy(): void };
  addCommand(command: unknown): void;
  /** set at the handshake by the patch below */
  reseedBulk?: boolean;
}

function internals(connection: Connection): ConnectionInternals {
  return connection as unknown as ConnectionInternals;
}

export interface ConnectOptions {
  /** Session statements run right after connecting (sql_log_bin=0, time_zone...). */
  init?: string[];
  connectTimeoutMs?: number;
  /** where a kill that failed is reported (it never fails the call) */
  log?: Logger;
}

/** The side connection that sends KILL QUERY: its connect timeout, and its whole life. */
const KILL_CONNECT_TIMEOUT_MS = 2000;
const KILL_DEADLINE_MS = 5000;
/** close() waits this long for the statement before COM_QUIT, then drops the socket. */
const CLOSE_TIMEOUT_MS = 2000;

// mysql2 internals, reached by file path (its package exports do not list them). Two things
// mysql2 lacks: asking a MariaDB server for bulk operations at the handshake, and sending a
// prepared-statement command whose parameters the caller has already encoded.
const mysql2Lib = join(dirname(createRequire(import.meta.url).resolve('mysql2')), 'lib');
const requireLib = createRequire(join(mysql2Lib, 'index.js'));
type CommandClass = new () => {
  on(event: string, fn: (...args: unknown[]) => void): void;
  onResult?: (err: Error | null, result?: unknown) => void;
};
const Command = requireLib('./commands/command.js') as CommandClass;
const ClientHandshake = requireLib('./commands/client_handshake.js') as {
  prototype: Record<string, unknown>;
};
/** MARIADB_CLIENT_STMT_BULK_OPERATIONS, in the extended (upper 32 bits) capability word */
const MARIADB_BULK_OPERATIONS = 0x4;
for (const method of ['sendSSLRequest', 'sendCredentials']) {
  const original = ClientHandshake.prototype[method] as (this: HandshakeState, c: unknown) => unknown;
  ClientHandshake.prototype[method] = function (this: HandshakeState, connection: { reseedBulk?: boolean }) {
    // mysql2 leaves the extended word at 0 unless it negotiated MariaDB's extended metadata;
    // when it did, the server reads the word and bulk operations can be asked for too.
    if (
      this.mariadbExtendedClientFlags &&
      this.handshake.mariadbExtendedCapabilityFlags & MARIADB_BULK_OPERATIONS
    ) {
      this.mariadbExtendedClientFlags |= MARIADB_BULK_OPERATIONS;
      connection.reseedBulk = true;
    }
    return original.call(this, connection);
  };
}
interface HandshakeState {
  mariadbExtendedClientFlags: number;
  handshake: { mariadbExtendedCapabilityFlags: number };
}

/** A mysql2 command that writes one ready-made packet and reads an OK (or ERR) packet back. */
class RawCommand extends Command {
  readonly #packet: Buffer;
  constructor(packet: Buffer, onResult: (err: Error | null, affected?: number) => void) {
    super();
    this.#packet = packet;
    this.onResult = onResult as (err: Error | null, result?: unknown) => void;
  }
  start(_packet: unknown, connection: { writePacket(p: unknown): void }): unknown {
    const buffer = this.#packet;
    connection.writePacket({
      buffer,
      length: () => buffer.length - 4,
      // Called for packets under 16 MB only: mysql2 frames larger ones itself.
      writeHeader(sequenceId: number) {
        buffer.writeUIntLE(buffer.length - 4, 0, 3);
        buffer[3] = sequenceId;
      },
    });
    return this.response;
  }
  response(packet: WirePacket): null {
    // OK packet: 0x00, then the affected rows as a length-encoded integer.
    this.onResult!(null, valueLength(packet.buffer, packet.offset + 1));
    return null;
  }
}

/** mysql2's (Node's) TLS options for `tls`: the files are read here, at each connection. */
function sslOptions(tls: TlsSettings): NonNullable<ConnectionOptions['ssl']> {
  const read = (what: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new ReseedError('CONFIG', `cannot read the TLS ${what} ${path}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
  };
  // required: encrypted, certificate unchecked; verify-ca: its chain checked; verify-identity:
  // its chain and the host name (or IP address) it names.
  const ssl: NonNullable<ConnectionOptions['ssl']> & { verifyIdentity?: boolean } = {
    rejectUnauthorized: tls.mode !== 'required',
    verifyIdentity: tls.mode === 'verify-identity',
  };
  const ca = read('CA', tls.ca);
  const cert = read('certificate', tls.cert);
  const key = read('key', tls.key);
  if (ca) ssl.ca = ca;
  if (cert) ssl.cert = cert;
  if (key) ssl.key = key;
  return ssl;
}

function connectHints(err: unknown, endpoint: Endpoint): string[] {
  const message = errorMessage(err);
  const addTls =
    'add --ssl-mode required, or --ssl-ca <CA file> to check its certificate too (docs/credentials.md)';
  if (/insecure transport|ssl|tls|certificate|self.signed|secure connection/i.test(message)) {
    return endpoint.tls
      ? [
          "check the TLS settings: --ssl-ca must be the CA that signed the server's certificate, and verify-identity needs the host named in it (docs/credentials.md)",
        ]
      : [`the server wants TLS: ${addTls}`];
  }
  const hints = ['check the host, port, user and password (see docs/credentials.md)'];
  // MariaDB answers a plain connection it refuses for want of TLS with "Access denied" too.
  if (!endpoint.tls && (err as { errno?: number }).errno === 1045) {
    hints.push(`if the server requires TLS (require_secure_transport=ON): ${addTls}`);
  }
  return hints;
}

/** mysql2's options for `endpoint`; the TLS files are read here, at each call. */
function connectionOptions(endpoint: Endpoint, connectTimeoutMs: number): ConnectionOptions {
  const config: ConnectionOptions = {
    user: endpoint.user,
    password: endpoint.password ?? '',
    connectTimeout: connectTimeoutMs,
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
    decimalNumbers: false,
    multipleStatements: false,
    charset: 'utf8mb4_general_ci',
    infileStreamFactory: () => {
      throw new ReseedError('INTERNAL', 'LOAD DATA LOCAL without a stream');
    },
  };
  if (endpoint.tls) config.ssl = sslOptions(endpoint.tls);
  if (endpoint.socketPath) config.socketPath = endpoint.socketPath;
  else {
    config.host = endpoint.host;
    config.port = endpoint.port;
  }
  return config;
}

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

interface ServerParts {
  endpoint: Endpoint;
  label: string;
  connection: Connection;
  /** what `connection` was made with, for the side connection that kills its statements */
  config: ConnectionOptions;
  log: Logger;
}

class Mysql2Server implements Server {
  readonly endpoint: Endpoint;
  readonly label: string;
  readonly #connection: Connection;
  readonly #config: ConnectionOptions;
  readonly #log: Logger;
  /** Commands this session sent for its callers: killQuery() kills no handshake or quit. */
  readonly #statements = new WeakSet<object>();
  /** Kills in flight, by the command they aim at. */
  readonly #kills = new WeakMap<object, Promise<void>>();
  /**
   * Settled once every kill in flight is done. New statements wait for it: a KILL QUERY that
   * arrives after its target ended must find the session idle (the server then ignores it),
   * never running the caller's next statement.
   */
  #gate: Promise<void> | undefined;
  #fatal: Error | undefined;
  #closed = false;

  constructor(parts: ServerParts) {
    this.endpoint = parts.endpoint;
    this.label = parts.label;
    this.#connection = parts.connection;
    this.#config = parts.config;
    this.#log = parts.log;
    // An idle connection that dies must not crash the process; the next call reports it.
    parts.connection.on('error', (err) => (this.#fatal = err));
  }

  get bulkExecute(): boolean {
    return internals(this.#connection).reseedBulk === true;
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
          this.#statements.add(command);
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
          this.#statements.add(command);
          internals(this.#connection).addCommand(command);
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
        if (command) void this.#stop(command);
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
          this.#statements.add(command);
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
    await this.#gate;
    const late = this.#refuse(sql, signal);
    if (late) throw late;
    const query = this.#connection.query({ sql, rowsAsArray: true, typeCast: (field) => field.buffer() });
    this.#statements.add(query);
    // The error of a killed query comes after its stream is gone; unheard, mysql2 would throw it
    // while reading packets and break the connection.
    query.on('error', () => undefined);
    const stream = query.stream({ highWaterMark: 256 });
    const onAbort = () => {
      stream.destroy(abortError(signal!));
      this.#abandon(query);
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
      this.#abandon(query);
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
        if (query) this.#abandon(query);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#whenFree(
        sql,
        () => {
          if (signal?.aborted) return;
          query = connection.query(sql) as unknown as WireQuery;
          this.#statements.add(query);
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
          this.#statements.add(command);
        },
        settle,
      );
    });
  }

  killQuery(): Promise<void> {
    const current = internals(this.#connection)._command;
    return current && this.#statements.has(current) ? this.#kill(current) : Promise.resolve();
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
    const current = internals(this.#connection)._command;
    // The server notices a client gone only when it next reads or writes: a statement it runs
    // (a long UPDATE and its row locks) would go on to its end. Once dropped, the session can
    // run nothing else, so the kill cannot hit another statement.
    const running = current !== null && this.#statements.has(current) && !this.#kills.has(current);
    drop(this.#connection);
    if (running) void this.#kill(current, () => true);
  }

  /** True while `command` is the one the session runs: sent, its answer not complete. */
  #runs(command: object): boolean {
    return internals(this.#connection)._command === command;
  }

  /**
   * Stops a statement its caller gave up on: killed if it runs; if it still waits its turn behind
   * another, it is never sent (a mysql2 command whose first state sends nothing ends at once).
   */
  #stop(command: object): Promise<void> {
    if (this.#runs(command)) return this.#kill(command);
    (command as { start: () => null }).start = () => null;
    return Promise.resolve();
  }

  #kill(command: object, stillRunning = () => this.#runs(command)): Promise<void> {
    if (!stillRunning()) return Promise.resolve();
    const pending = this.#kills.get(command);
    if (pending) return pending;
    const done = killStatement(this.#config, this.connectionId, stillRunning).then((failure) => {
      if (failure !== undefined) {
        this.#log.warn(
          { err: errorMessage(failure), connectionId: this.connectionId },
          `${this.label}: could not kill the statement of an interrupted session; it runs until it ends`,
        );
      }
    });
    this.#kills.set(command, done);
    const gate: Promise<void> = Promise.all([this.#gate, done]).then(() => {
      if (this.#gate === gate) this.#gate = undefined;
    });
    this.#gate = gate;
    return done;
  }

  /**
   * Kills a query whose rows nobody wants any more, and reads none of them until then: they
   * would only compete with the kill for this process. What is left then is read and dropped.
   */
  #abandon(query: object): void {
    if (!this.#runs(query)) {
      void this.#stop(query);
      return;
    }
    this.#connection.pause();
    void this.#kill(query).then(() => this.#connection.resume());
  }

  /**
   * Ends a LOAD DATA LOCAL given up on: killed first (it stops at its next row), and if it still
   * waits for the file, its session is dropped, for ending the file would commit it.
   */
  async #abandonLoad(command: object | undefined, fileOpen: () => boolean): Promise<void> {
    if (!command) return;
    await this.#stop(command);
    if (this.#runs(command) && fileOpen()) this.destroy();
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
    if (!this.#gate) return run();
    void this.#gate.then(() => {
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

/**
 * Sends `KILL QUERY threadId` from a short-lived side connection (the session itself, busy with
 * its statement, reads nothing else). `stillRunning` is asked once connected: a statement that
 * ended meanwhile is left alone. Never throws; resolves with what went wrong, if anything, once
 * the side connection is closed.
 */
async function killStatement(
  config: ConnectionOptions,
  threadId: number,
  stillRunning: () => boolean,
): Promise<unknown> {
  const side = mysql.createConnection({ ...config, connectTimeout: KILL_CONNECT_TIMEOUT_MS });
  side.on('error', () => undefined); // reported through the callbacks below
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((resolve, reject) =>
        side.connect((err) => {
          if (err) return reject(err);
          if (!stillRunning()) return resolve();
          side.query(`KILL QUERY ${threadId}`, (e) => (e ? reject(e) : resolve()));
        }),
      ),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${KILL_DEADLINE_MS} ms`)),
          KILL_DEADLINE_MS,
        );
      }),
    ]);
    await new Promise<void>((resolve) => side.end(() => resolve()));
    return undefined;
  } catch (err) {
    drop(side);
    // 1094, unknown thread: the session is gone, and its statement with it.
    return (err as { errno?: number }).errno === 1094 ? undefined : err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Closes the socket now (mysql2's destroy() only half-closes it, which a vanished server never
 * answers), and fails what was sent or queued on it as a lost connection does: nobody is left
 * waiting for an answer that cannot come.
 */
function drop(connection: Connection): void {
  const c = internals(connection);
  const lost = Object.assign(new Error('the session was closed before its statement ended'), {
    fatal: true,
    code: 'PROTOCOL_CONNECTION_LOST',
  });
  connection.on('error', () => undefined); // from here on, failures reach the callers below
  if (!c._fatalError) {
    // mysql2 tells a command without a callback (a streamed query) nothing: it tells the connection
    const current = c._command as { onResult?: unknown; listenerCount?(e: string): number } | null;
    if (current && !current.onResult && current.listenerCount?.('error')) {
      (current as unknown as { emit(e: string, err: Error): void }).emit('error', lost);
    }
    c._notifyError(lost);
  }
  connection.destroy();
  c.stream?.destroy();
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
