import mysql from 'mysql2';
import type { Connection, ConnectionOptions, FieldPacket, QueryOptions } from 'mysql2';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { ReseedError, abortError, errorMessage } from '../errors.js';
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
  close(): Promise<void>;
  /** Drops the socket at once (the server rolls back and releases this session's locks). */
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

export interface ConnectOptions {
  /** Session statements run right after connecting (sql_log_bin=0, time_zone...). */
  init?: string[];
  connectTimeoutMs?: number;
}

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

export async function connect(endpoint: Endpoint, options: ConnectOptions = {}): Promise<Server> {
  const config: ConnectionOptions = {
    user: endpoint.user,
    password: endpoint.password ?? '',
    connectTimeout: options.connectTimeoutMs ?? 10_000,
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
  const label = describeEndpoint(endpoint);
  const connection = mysql.createConnection(config);
  try {
    await new Promise<void>((resolve, reject) =>
      connection.connect((err) => (err ? reject(err) : resolve())),
    );
  } catch (err) {
    connection.destroy();
    throw new ReseedError('CONNECT_FAILED', `cannot connect to ${label}: ${errorMessage(err)}`, {
      cause: err,
      retryable: true,
      hints: connectHints(err, endpoint),
    });
  }
  const server = new Mysql2Server(endpoint, label, connection);
  for (const statement of options.init ?? []) await server.query(statement);
  return server;
}

class Mysql2Server implements Server {
  readonly endpoint: Endpoint;
  readonly label: string;
  readonly #connection: Connection;
  #fatal: Error | undefined;

  constructor(endpoint: Endpoint, label: string, connection: Connection) {
    this.endpoint = endpoint;
    this.label = label;
    this.#connection = connection;
    // An idle connection that dies must not crash the process; the next call reports it.
    connection.on('error', (err) => (this.#fatal = err));
  }

  get bulkExecute(): boolean {
    return (this.#connection as unknown as { reseedBulk?: boolean }).reseedBulk === true;
  }

  prepare(sql: string, signal?: AbortSignal): Promise<PreparedStatement> {
    if (this.#fatal) return Promise.reject(this.#wrap(this.#fatal, sql));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise((resolve, reject) => {
      this.#connection.prepare(sql, (err, info) => {
        if (err) return reject(this.#wrap(err, sql));
        const statement = info as unknown as { id: number; parameters: unknown[] };
        resolve({
          id: statement.id,
          parameters: statement.parameters.length,
          close: () => this.#connection.unprepare(sql),
        });
      });
    });
  }

  executeBulk(packet: Buffer): Promise<number> {
    if (this.#fatal) return Promise.reject(this.#wrap(this.#fatal, 'COM_STMT_BULK_EXECUTE'));
    return new Promise((resolve, reject) => {
      const command = new RawCommand(packet, (err, affected) =>
        err ? reject(this.#wrap(err, 'COM_STMT_BULK_EXECUTE')) : resolve(affected ?? 0),
      );
      (this.#connection as unknown as { addCommand(c: unknown): void }).addCommand(command);
    });
  }

  get connectionId(): number {
    return this.#connection.threadId ?? -1;
  }

  query(sql: string, params: unknown[] = [], signal?: AbortSignal): Promise<Row[]> {
    if (this.#fatal) return Promise.reject(this.#wrap(this.#fatal, sql));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<Row[]>((resolve, reject) => {
      const onAbort = () => reject(abortError(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#connection.query({ sql, values: params }, (err, rows) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) return reject(this.#wrap(err, sql));
        resolve(Array.isArray(rows) ? (rows as Row[]) : []);
      });
    });
  }

  async *streamRaw(sql: string, signal?: AbortSignal): AsyncIterable<RawRow> {
    const options: QueryOptions = {
      sql,
      rowsAsArray: true,
      typeCast: (field) => field.buffer(),
    };
    const query = this.#connection.query(options);
    const stream = query.stream({ highWaterMark: 256 });
    const onAbort = () => stream.destroy(abortError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const row of stream as AsyncIterable<RawRow>) yield row;
    } catch (err) {
      throw this.#wrap(err, sql);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  streamPackets(sql: string, sink: PacketSink, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const connection = this.#connection;
    return new Promise<void>((resolve, reject) => {
      const query = connection.query(sql) as unknown as {
        row: (packet: WirePacket, conn: unknown) => unknown;
        _fieldCount: number;
        on(event: string, fn: (...args: unknown[]) => void): void;
      };
      // mysql2 drives a query through states; after the column definitions its next state is
      // `this.row`. Our own `row` reads the packet bytes and leaves end-of-rows to mysql2.
      // This is the one place reseed relies on mysql2 internals; the logical clone tests cover it.
      const original = Object.getPrototypeOf(query).row as (packet: WirePacket, conn: unknown) => unknown;
      const fast = function (this: typeof query, packet: WirePacket, conn: unknown): unknown {
        if (packet.isEOF()) return original.call(this, packet, conn);
        if (!sink.onRow(packet.buffer, packet.offset, packet.end, this._fieldCount)) connection.pause();
        return fast;
      };
      query.row = fast;
      sink.setResume(() => connection.resume());
      const onAbort = () => {
        connection.resume();
        reject(abortError(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      query.on('error', (err) => {
        signal?.removeEventListener('abort', onAbort);
        reject(this.#wrap(err, sql));
      });
      query.on('end', () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  loadData(sql: string, source: Readable, signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<number>((resolve, reject) => {
      let failed = false;
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        reject(err);
      };
      source.once('error', fail);
      const onAbort = () => source.destroy(abortError(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#connection.query(
        { sql, infileStreamFactory: () => source } as QueryOptions,
        (err, result: unknown, _fields?: FieldPacket[]) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) return fail(this.#wrap(err, sql));
          if (source.errored) return fail(source.errored);
          resolve((result as { affectedRows?: number }).affectedRows ?? 0);
        },
      );
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#connection.end(() => resolve());
      // end() waits for the server's answer to COM_QUIT; a dead server must not hang us.
      setTimeout(() => {
        this.#connection.destroy();
        resolve();
      }, 2000).unref();
    });
  }

  destroy(): void {
    this.#connection.destroy();
  }

  #wrap(err: unknown, sql: string): Error {
    if (err instanceof ReseedError) return err;
    const e = err as { code?: string; errno?: number; sqlMessage?: string; message?: string };
    // Statements are shortened and never include values a caller passed as parameters.
    const short = /IDENTIFIED|PASSWORD/i.test(sql)
      ? '(statement withheld: it may hold a secret)'
      : sql.length > 160
        ? `${sql.slice(0, 160)}...`
        : sql;
    const wrapped = new ReseedError('INTERNAL', `${this.label}: ${e.sqlMessage ?? e.message} [${short}]`, {
      cause: err,
    });
    return Object.assign(wrapped, { sqlErrno: e.errno, sqlCode: e.code });
  }
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
