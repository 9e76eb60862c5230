import mysql from 'mysql2';
import type { Connection, ConnectionOptions } from 'mysql2';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

/** The side connection that sends KILL QUERY: its connect timeout, and its whole life. */
const KILL_CONNECT_TIMEOUT_MS = 2000;
const KILL_DEADLINE_MS = 5000;

/** The subset of mysql2's Connection internals this file reads. */
interface ConnectionInternals {
  /** the command the connection runs: sent, its answer not yet complete */
  _command: object | null;
  _fatalError: Error | null;
  /** fails the running and queued commands, as when the connection is lost */
  _notifyError(err: Error): void;
  stream?: { destroy(): void };
}

function internals(connection: Connection): ConnectionInternals {
  return connection as unknown as ConnectionInternals;
}

export interface SessionParts {
  /** "donor 127.0.0.1:3306": for messages */
  label: string;
  connection: Connection;
  /** what `connection` was made with, for the side connection that kills its statements */
  config: ConnectionOptions;
  /** where a kill that failed is reported */
  log: Logger;
}

/**
 * Kills the statements one session runs for its callers (each at most once), and keeps the gate
 * its next statements wait behind while a kill is in flight.
 */
export class QueryKiller {
  readonly #label: string;
  readonly #connection: Connection;
  readonly #config: ConnectionOptions;
  readonly #log: Logger;
  /** Commands this session sent for its callers: killQuery() kills no handshake or quit. */
  readonly #statements = new WeakSet<object>();
  /** Kills in flight, by the command they aim at. */
  readonly #kills = new WeakMap<object, Promise<void>>();
  #gate: Promise<void> | undefined;

  constructor(parts: SessionParts) {
    this.#label = parts.label;
    this.#connection = parts.connection;
    this.#config = parts.config;
    this.#log = parts.log;
  }

  /**
   * Settled once every kill in flight is done (undefined when none is). New statements wait for
   * it: a KILL QUERY that arrives after its target ended must find the session idle (the server
   * then ignores it), never running the caller's next statement.
   */
  get gate(): Promise<void> | undefined {
    return this.#gate;
  }

  /** Records `command` as sent for a caller, a statement that may be killed. */
  track(command: object): void {
    this.#statements.add(command);
  }

  /** Kills the statement the session runs for a caller, if any. */
  killRunning(): Promise<void> {
    const current = internals(this.#connection)._command;
    return current && this.#statements.has(current) ? this.#kill(current) : Promise.resolve();
  }

  /** Drops the session (see drop), and kills the statement it ran for a caller. */
  dropSession(): void {
    const current = internals(this.#connection)._command;
    // The server notices a client gone only when it next reads or writes: a statement it runs
    // (a long UPDATE and its row locks) would go on to its end. Once dropped, the session can
    // run nothing else, so the kill cannot hit another statement.
    const running = current !== null && this.#statements.has(current) && !this.#kills.has(current);
    drop(this.#connection);
    if (running) void this.#kill(current, () => true);
  }

  /** True while `command` is the one the session runs: sent, its answer not complete. */
  runs(command: object): boolean {
    return internals(this.#connection)._command === command;
  }

  /**
   * Stops a statement its caller gave up on: killed if it runs; if it still waits its turn behind
   * another, it is never sent (a mysql2 command whose first state sends nothing ends at once).
   */
  stop(command: object): Promise<void> {
    if (this.runs(command)) return this.#kill(command);
    (command as { start: () => null }).start = () => null;
    return Promise.resolve();
  }

  /**
   * Kills a query whose rows nobody wants any more, and reads none of them until then: they
   * would only compete with the kill for this process. What is left then is read and dropped.
   */
  abandon(query: object): void {
    if (!this.runs(query)) {
      void this.stop(query);
      return;
    }
    this.#connection.pause();
    void this.#kill(query).then(() => this.#connection.resume());
  }

  get #connectionId(): number {
    return this.#connection.threadId ?? -1;
  }

  #kill(command: object, stillRunning = () => this.runs(command)): Promise<void> {
    if (!stillRunning()) return Promise.resolve();
    const pending = this.#kills.get(command);
    if (pending) return pending;
    const done = killStatement(this.#config, this.#connectionId, stillRunning).then((failure) => {
      if (failure !== undefined) {
        this.#log.warn(
          { err: errorMessage(failure), connectionId: this.#connectionId },
          `${this.#label}: could not kill the statement of an interrupted session; it runs until it ends`,
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
export function drop(connection: Connection): void {
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
