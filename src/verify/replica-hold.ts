import { ReseedError, errorMessage, isReseedError, throwIfAborted } from '../errors.js';
import { Journal, journalDir } from '../journal/journal.js';
import { publicEndpoint } from '../mysql/credentials.js';
import type { ServerFacts } from '../mysql/facts.js';
import type { Flavor, ReplicaStatus } from '../mysql/flavor/index.js';
import { connect } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import { transactionsBehind } from '../replication/replica.js';
import type { VerifyRequest } from './verify.js';

/** What deciding on and holding the joiner's replication needs of a verify run. */
export interface HoldContext {
  req: VerifyRequest;
  donorMeta: Server;
  donorFacts: ServerFacts;
  joinerFacts: ServerFacts;
}

/** A replica's thread states, as START SLAVE gives them back. */
interface Threads {
  io: boolean;
  sql: boolean;
}

export function describeThreads(t: Threads): string {
  return `IO thread ${t.io ? 'running' : 'stopped'}, SQL thread ${t.sql ? 'running' : 'stopped'}`;
}

/** The statements that start exactly the threads `t` runs ("START SLAVE IO_THREAD"...). */
function startStatements(flavor: Flavor, t: Threads): string[] {
  // flavor.startReplicaSqlThreadSql is "START SLAVE SQL_THREAD" / "START REPLICA SQL_THREAD".
  const startIo = flavor.startReplicaSqlThreadSql.replace(/SQL_THREAD$/, 'IO_THREAD');
  if (t.io && t.sql) return [flavor.startReplicaSql];
  if (t.io) return [startIo];
  if (t.sql) return [flavor.startReplicaSqlThreadSql];
  return [];
}

/**
 * The threads that stopped on an error (an I/O thread retrying its connection has not). Verify
 * refuses a replica with such a thread before changing anything, and START SLAVE clears the error
 * of a thread it starts: while verify holds the replica, an error is one that happened meanwhile.
 */
function stoppedOnError(s: ReplicaStatus): Threads {
  return {
    io: !s.ioRunning && !s.ioConnecting && s.lastIoErrno !== 0,
    sql: !s.sqlRunning && s.lastSqlErrno !== 0,
  };
}

/** The threads as restore() gave them back: `failed` ones were left stopped on their error. */
function describeGivenBack(found: Threads, given: Threads, failed: Threads, s: ReplicaStatus): string {
  if (!failed.io && !failed.sql && given.io === found.io && given.sql === found.sql)
    return `${describeThreads(found)}, as verify found it`;
  const keptError = (thread: string, errno: number) =>
    `${thread} thread stopped on error ${errno} during verify: left stopped so that SHOW SLAVE STATUS shows the error; START SLAVE when it is fixed`;
  const io = failed.io
    ? keptError('IO', s.lastIoErrno)
    : given.io !== found.io
      ? "IO thread stopped, though found running: it cannot run before the SQL thread does (the joiner keeps verify's UNTIL until then), and START SLAVE starts both"
      : `IO thread ${found.io ? 'running' : 'stopped'}, as verify found it`;
  const sql = failed.sql
    ? keptError('SQL', s.lastSqlErrno)
    : `SQL thread ${found.sql ? 'running' : 'stopped'}, as verify found it`;
  return failed.sql && !failed.io ? `${sql}; ${io}` : `${io}; ${sql}`;
}

/** The joiner's replication connection as verify needs to know it. */
export interface Link {
  status: ReplicaStatus;
  /** io: running or on its way to connect (Yes, Connecting, Preparing) */
  threads: Threads;
  /** the source's server_id and server_uuid as the I/O thread last heard them from the source */
  sourceServerId: number;
  sourceUuid: string;
  untilCondition: string;
}

export async function readLink(
  joiner: Server,
  flavor: Flavor,
  signal?: AbortSignal,
): Promise<Link | undefined> {
  const [row] = await joiner.query(flavor.replicaStatusSql, [], signal);
  if (!row) return undefined;
  const status = flavor.parseReplicaStatus(row);
  if (status.sourceHost === '') return undefined;
  // Columns ReplicaStatus does not carry, under their MariaDB or MySQL names.
  const raw = (...names: string[]) => names.map((n) => row[n]).find((v) => v !== undefined && v !== null);
  return {
    status,
    threads: {
      io: String(raw('Slave_IO_Running', 'Replica_IO_Running') ?? 'No') !== 'No',
      sql: status.sqlRunning,
    },
    sourceServerId: Number(raw('Master_Server_Id', 'Source_Server_Id') ?? 0),
    sourceUuid: String(raw('Source_UUID', 'Master_UUID') ?? ''),
    untilCondition: String(raw('Until_Condition') ?? 'None'),
  };
}

/** A replication thread that stopped on an error (an I/O thread retrying a failed connection counts). */
export function brokenThread(s: ReplicaStatus): string | undefined {
  if (!s.sqlRunning && s.lastSqlErrno !== 0)
    return `its SQL thread stopped with error ${s.lastSqlErrno}: ${s.lastSqlError}`;
  if (!s.ioRunning && s.lastIoErrno !== 0)
    return `its IO thread ${s.ioConnecting ? 'cannot connect' : 'stopped'} (error ${s.lastIoErrno}): ${s.lastIoError}`;
  return undefined;
}

export function replicationFailed(link: Link, broken: string, state: string): ReseedError {
  return new ReseedError(
    'REPLICATION_FAILED',
    `the joiner's replication from ${link.status.sourceHost}:${link.status.sourcePort} is broken: ${broken} (${state})`,
    {
      hints: [
        'repair the replica first (SHOW SLAVE STATUS on the joiner names the failing event), then verify again',
      ],
    },
  );
}

type Plan = { hold: true; found: Threads } | { hold: false; reason: string; why: string };

/**
 * Whether verify may hold the joiner at the donor's snapshot. Only a GTID replica that reads from
 * the donor can be; any other joiner is compared live, its replication untouched.
 *
 * "Reads from the donor" is decided by the identity the joiner's I/O thread last heard from its
 * source itself (kept after STOP SLAVE), never by host names, which differ with the point of view:
 * on MySQL the source's server_uuid must be the donor's; on MariaDB (no UUID) its server_id must
 * be the donor's and, because unrelated servers may share a server_id, either the joiner's source
 * port is the donor's @@port or the donor lists a replica with the joiner's server_id (a port
 * mapped by a proxy or NAT). Otherwise verify cannot tell, and compares live.
 */
export async function planHold(ctx: HoldContext, link: Link | undefined): Promise<Plan> {
  const notFromDonor = 'joiner does not replicate from the donor';
  const cannotTell = 'cannot tell whether the joiner replicates from the donor';
  if (!link) return { hold: false, reason: notFromDonor, why: 'the joiner has no replication configured' };
  const { donorFacts: donor, joinerFacts: joiner } = ctx;
  const s = link.status;
  const where = `${s.sourceHost}:${s.sourcePort}`;
  if (link.sourceUuid && donor.serverUuid) {
    if (link.sourceUuid !== donor.serverUuid)
      return {
        hold: false,
        reason: notFromDonor,
        why: `the joiner replicates from ${where} (server_uuid ${link.sourceUuid}), not from the donor (server_uuid ${donor.serverUuid})`,
      };
  } else if (link.sourceServerId === 0) {
    return {
      hold: false,
      reason: cannotTell,
      why: `the joiner's replication from ${where} has not connected since the joiner started: the server it reads is unknown`,
    };
  } else if (link.sourceServerId !== donor.serverId) {
    return {
      hold: false,
      reason: notFromDonor,
      why: `the joiner replicates from ${where} (server_id ${link.sourceServerId}), not from the donor (server_id ${donor.serverId})`,
    };
  } else if (s.sourcePort !== donor.port && !(await donorListsReplica(ctx.donorMeta, joiner.serverId))) {
    return {
      hold: false,
      reason: cannotTell,
      why: `the joiner's source ${where} has the donor's server_id ${donor.serverId}, but the donor's port is ${donor.port} and it lists no replica with the joiner's server_id ${joiner.serverId}`,
    };
  }
  if (!s.usingGtid)
    return {
      hold: false,
      reason: 'joiner replicates from the donor without GTID',
      why: 'verify holds a replica at the snapshot by its GTID position; this one follows a binlog file and offset',
    };
  if (link.threads.sql && link.untilCondition !== 'None')
    return {
      hold: false,
      reason: 'joiner replicates from the donor up to an UNTIL condition',
      why: `its SQL thread runs with UNTIL (${link.untilCondition}), which pausing it would lose`,
    };
  return { hold: true, found: link.threads };
}

/** SHOW SLAVE HOSTS on the donor lists a replica with this server_id (MariaDB; false when unreadable). */
async function donorListsReplica(donor: Server, serverId: number): Promise<boolean> {
  const rows = await donor.query('SHOW SLAVE HOSTS').catch(() => []);
  return rows.some((r) => Number(r.Server_id) === serverId);
}

/**
 * The joiner's replication, paused by verify and given back exactly as found, but for a thread that
 * stopped on an error meanwhile: it keeps its error (restore()). The undo (stop, then start exactly
 * the threads that ran) is journaled before the first STOP, so `reseed recover` gives the threads
 * back after a kill.
 *
 * The UNTIL condition verify sets must go too: MariaDB keeps it across STOP SLAVE, its I/O thread
 * obeys it (a later START SLAVE IO_THREAD would stop again at once), and only a start of the SQL
 * thread clears it. Where the SQL thread is to stay stopped it is started and stopped again; it
 * has nothing to apply then, the relay log ending at the snapshot's position at the latest (the
 * I/O thread was stopped before the snapshot was opened, and UNTIL stops it at that position).
 */
export class ReplicaHold {
  readonly found: Threads;
  readonly #ctx: HoldContext;
  readonly #flavor: Flavor;
  /** statements of a session on the joiner's replication connection */
  readonly #use: string[];
  /** stop both threads; start the SQL thread and stop it (clears UNTIL) */
  readonly #stopSql: string;
  readonly #clearUntilSql: string[];
  readonly #journal: Journal;
  readonly #ownJournal: boolean;
  readonly #seq: number;

  private constructor(ctx: HoldContext, found: Threads, use: string[]) {
    this.#ctx = ctx;
    this.found = found;
    this.#use = use;
    const flavor = (this.#flavor = ctx.joinerFacts.flavor);
    const start = startStatements(flavor, found);
    this.#stopSql = flavor.stopReplicaSql;
    this.#clearUntilSql = [flavor.startReplicaSqlThreadSql, flavor.stopReplicaSqlThreadSql];
    const clear = found.sql ? [] : this.#clearUntilSql;
    const back = use.length ? [flavor.useReplicaConnectionSql('')!] : [];
    const { req } = ctx;
    this.#ownJournal = req.journal === undefined;
    try {
      this.#journal =
        req.journal ??
        Journal.create({
          operation: 'verify',
          donor: publicEndpoint(req.donor),
          joiner: publicEndpoint(req.joiner),
        });
      this.#seq = this.#journal.record(
        `pause the joiner's replication for verify (${describeThreads(found)})`,
        {
          target: 'joiner',
          statements: [...use, this.#stopSql, ...clear, ...start, ...back],
          resumes: start.length > 0,
        },
      );
    } catch (err) {
      if (isReseedError(err)) throw err;
      throw new ReseedError(
        'JOURNAL',
        `cannot write the undo journal in ${journalDir()}: ${errorMessage(err)}; nothing was changed`,
        { cause: err, hints: ['RESEED_STATE_DIR chooses where journals are kept'] },
      );
    }
  }

  static begin(ctx: HoldContext, found: Threads, use: string[]): ReplicaHold {
    return new ReplicaHold(ctx, found, use);
  }

  /**
   * Stops both threads: the replica then cannot pass the snapshot opened next, and START SLAVE
   * UNTIL needs both stopped. No signal: a STOP killed half-way would leave less to reason about.
   */
  async pause(joiner: Server): Promise<void> {
    await joiner.query(this.#flavor.stopReplicaSql);
  }

  /**
   * Lets the replica run up to `position`, waiting in one-second steps: between them, an abort is
   * acted on and a thread that stopped on an error fails verify at once.
   */
  async runUntil(joiner: Server, position: string): Promise<void> {
    const { catchupTimeoutMs, progress, signal } = this.#ctx.req;
    const flavor = this.#flavor;
    const until = flavor.startReplicaUntilGtidSql(position);
    await joiner.query(until.sql, until.params);
    progress.emit({
      type: 'phase',
      phase: 'catch-up',
      detail: `verify holds the joiner at the donor's snapshot ${position} (its replication runs up to it)`,
    });
    const reached = async () => {
      const wait = flavor.waitForGtidSql(position, 1);
      const [r] = await joiner.query(wait.sql, wait.params, signal);
      return Number(r?.result ?? -1) >= 0;
    };
    const deadline = Date.now() + catchupTimeoutMs;
    for (;;) {
      throwIfAborted(signal);
      if (await reached()) return;
      const link = await readLink(joiner, flavor, signal);
      if (!link)
        throw new ReseedError(
          'REPLICATION_FAILED',
          "the joiner's replication connection disappeared while verify waited",
        );
      const broken = brokenThread(link.status);
      if (broken) throw replicationFailed(link, broken, `verify stopped waiting for ${position}`);
      // UNTIL stops the SQL thread at the position: stopped short of it means someone stopped it.
      if (!link.status.sqlRunning) {
        if (await reached()) return;
        throw new ReseedError(
          'REPLICATION_FAILED',
          `the joiner's SQL thread stopped before reaching ${position}`,
        );
      }
      if (Date.now() >= deadline) {
        throw new ReseedError(
          'CATCHUP_TIMEOUT',
          `the replica did not reach the donor's position ${position} for verify within ${Math.round(catchupTimeoutMs / 1000)} s (lag ${link.status.secondsBehind === null ? 'unknown' : `${link.status.secondsBehind} s`})`,
          { retryable: true, hints: ['raise --catchup-timeout, or verify when the replica is less behind'] },
        );
      }
      progress.emit({
        type: 'lag',
        secondsBehind: link.status.secondsBehind,
        gtid: position,
        transactionsBehind: await transactionsBehind(joiner, flavor, position, signal),
      });
    }
  }

  /**
   * Gives the threads back as found, on a fresh session (the operation's own may be broken), and
   * says in what state they are. A thread that stopped on an error while verify held the replica
   * is left stopped: starting it would erase the error (Last_SQL_Errno, Last_IO_Errno) that the
   * operator must read to repair the replica.
   */
  async restore(): Promise<string> {
    const { req } = this.#ctx;
    const flavor = this.#flavor;
    const gone = (what: string) =>
      new ReseedError('JOURNAL', `after restoring it the joiner's replication has ${what}`);
    let state: string;
    const s = await connect(req.joiner, { init: this.#use });
    // STOP SLAVE waits for the transaction the applier is in (a row lock can hold it for
    // innodb_lock_wait_timeout): say why nothing seems to happen.
    const slow = setTimeout(
      () =>
        req.progress.emit({
          type: 'warning',
          message:
            "waiting for the joiner's SQL thread to stop: it finishes the transaction it is applying first",
        }),
      3000,
    );
    slow.unref();
    try {
      // Read before STOP, after which an I/O thread retrying its connection looks like one that gave up.
      const seen = await readLink(s, flavor);
      await s.query(this.#stopSql);
      const stopped = await readLink(s, flavor);
      if (!seen || !stopped) throw gone('gone');
      const failed = stoppedOnError(seen.status);
      // Only MariaDB keeps the UNTIL condition across STOP (so no other flavor's applier is run to
      // clear it). There only a start of the SQL thread clears it, and the I/O thread obeys it:
      // while the SQL thread keeps its error, the I/O thread cannot run either.
      const untilKept = stopped.untilCondition !== 'None';
      const want: Threads = {
        io: this.found.io && !failed.io && !(failed.sql && untilKept),
        sql: this.found.sql && !failed.sql,
      };
      if (untilKept && !want.sql && !failed.sql) for (const sql of this.#clearUntilSql) await s.query(sql);
      for (const sql of startStatements(flavor, want)) await s.query(sql);
      const now = await readLink(s, flavor);
      if (!now) throw gone('gone');
      const same = now.threads.io === want.io && now.threads.sql === want.sql;
      // A thread that fails again at once on the event that broke it was given back all the same.
      const broken = same ? undefined : brokenThread(now.status);
      const untilExpected = failed.sql && untilKept ? stopped.untilCondition : 'None';
      if ((!same && !broken) || now.untilCondition !== untilExpected)
        throw gone(`${describeThreads(now.threads)}, UNTIL ${now.untilCondition}`);
      state = broken
        ? `restarted as verify found it, then ${broken}`
        : describeGivenBack(this.found, want, failed, seen.status);
    } finally {
      clearTimeout(slow);
      await s.close();
    }
    this.#journal.resolve(this.#seq);
    if (this.#ownJournal) this.#journal.commit();
    return state;
  }

  /** The error to report when restore() failed: the original first, and where the undo is kept. */
  restoreFailed(original: unknown, restoreError: unknown): Error {
    const undo = this.#ownJournal
      ? `run \`reseed recover\` (journal ${this.#journal.path})`
      : "the operation's rollback restores it";
    const state = `the joiner's replication could not be given back as found (${describeThreads(this.found)}): ${errorMessage(restoreError)}; ${undo}`;
    if (this.#ownJournal) this.#journal.close();
    if (original === undefined) return new ReseedError('JOURNAL', state, { cause: restoreError });
    return Object.assign(new AggregateError([original, restoreError], errorMessage(original)), {
      code: isReseedError(original) ? original.code : 'INTERNAL',
      hints: [...(isReseedError(original) ? original.hints : []), state],
    });
  }
}
