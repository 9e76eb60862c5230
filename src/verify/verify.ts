import { ReseedError, errorMessage, isReseedError, throwIfAborted } from '../errors.js';
import { Journal, journalDir } from '../journal/journal.js';
import type { Logger } from '../log.js';
import type { KeyRange } from '../mysql/chunking.js';
import { planRanges, rawReadSessionSql } from '../mysql/chunking.js';
import type { Endpoint } from '../mysql/credentials.js';
import { publicEndpoint } from '../mysql/credentials.js';
import { hasPrivilege, inspect, sameServer } from '../mysql/facts.js';
import type { ServerFacts } from '../mysql/facts.js';
import type { Flavor, ReplicaStatus } from '../mysql/flavor/index.js';
import { listObjects, objectLabel } from '../mysql/objects.js';
import type { SchemaObject } from '../mysql/objects.js';
import type { ReadLockPolicy } from '../mysql/read-lock.js';
import { connect } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import { openSnapshotGroup } from '../mysql/snapshot.js';
import type { SnapshotLockMode } from '../mysql/snapshot.js';
import { SYSTEM_SCHEMAS, displayName, listSchemas, listTables, tableName } from '../mysql/tables.js';
import type { TableInfo } from '../mysql/tables.js';
import type { ProgressSink } from '../progress.js';
import { chunkChecksum } from './checksum.js';

export interface Difference {
  /** "table s.t", "view s.v", ... */
  what: string;
  detail: string;
}

const LIVE = 'compared live (writes on either side can show as differences)';

export interface VerifyReport {
  ok: boolean;
  /** the donor position both sides were compared at */
  position: string;
  /** how the replica was held at that position, or why it was not */
  method: 'replica stopped at the donor snapshot' | `${string}: ${typeof LIVE}`;
  /** the facts behind a live comparison */
  why?: string | undefined;
  /** what verify did to the joiner's replication, and the state it left it in */
  replication: string;
  tables: number;
  chunks: number;
  rows: number;
  objects: number;
  differences: Difference[];
}

export interface VerifyRequest {
  donor: Endpoint;
  joiner: Endpoint;
  schemas: string[];
  parallel: number;
  chunkRows: number;
  lockMode: SnapshotLockMode;
  readLock: ReadLockPolicy;
  catchupTimeoutMs: number;
  log: Logger;
  progress: ProgressSink;
  signal: AbortSignal;
  /** the clone's journal, when verify runs inside a clone; otherwise verify keeps its own */
  journal?: Journal | undefined;
  /**
   * A MariaDB multi-source connection name: the joiner's replication is read, paused and
   * resumed on that connection instead of the default one.
   */
  replicaConnection?: string | undefined;
}

const SESSION_TZ = "SET SESSION time_zone = '+00:00'";

/**
 * Compares donor and replica at one GTID position. When the joiner is a GTID replica of the donor,
 * its replication is paused, the donor's snapshot opened, and the replica let run exactly up to
 * the snapshot's position; its threads are then given back exactly as found (journaled first, so
 * `reseed recover` does it after a kill). Any other joiner is compared live, untouched.
 */
export async function verify(req: VerifyRequest): Promise<VerifyReport> {
  // Every session verify opens is closed on every path, a failed connect included.
  const opened: Server[] = [];
  try {
    return await verifyWith(req, opened);
  } finally {
    await Promise.allSettled(opened.map((s) => s.close()));
  }
}

interface Context {
  req: VerifyRequest;
  opened: Server[];
  donorMeta: Server;
  joinerMeta: Server;
  donorFacts: ServerFacts;
  joinerFacts: ServerFacts;
  schemas: string[];
}

async function verifyWith(req: VerifyRequest, opened: Server[]): Promise<VerifyReport> {
  const { signal } = req;
  const donorMeta = await openSession(req.donor, 'donor', [SESSION_TZ], opened);
  const joinerMeta = await openSession(req.joiner, 'joiner', [SESSION_TZ], opened);
  const donorFacts = await inspect(donorMeta, signal);
  const joinerFacts = await inspect(joinerMeta, signal);
  if (sameServer(donorFacts, joinerFacts))
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `donor and joiner are the same server (${donorFacts.hostname}:${donorFacts.port}, server_id ${donorFacts.serverId}): --to must name its replica; nothing was compared`,
    );
  const flavor = joinerFacts.flavor;
  const use = await useReplicaConnection(joinerMeta, flavor, req.replicaConnection, signal);
  const schemas = await resolveSchemas(donorMeta, req.schemas, signal);
  const ctx: Context = { req, opened, donorMeta, joinerMeta, donorFacts, joinerFacts, schemas };

  // A replica whose applier or I/O thread stopped on an error cannot reach any position: say so
  // now, before anything is changed or a snapshot held open on the donor.
  const link = await readLink(joinerMeta, flavor, signal).catch((err: unknown) => {
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `cannot read the joiner's replication status: ${errorMessage(err)}; nothing was changed`,
      { cause: err, hints: ['the joiner account needs SLAVE MONITOR (MariaDB 10.5+) or REPLICATION CLIENT'] },
    );
  });
  const broken = link && brokenThread(link.status);
  if (link && broken) throw replicationFailed(link, broken, 'nothing was changed');

  const plan = await planHold(ctx, link);
  if (!plan.hold) {
    const compared = await compareAtSnapshot(ctx, undefined);
    return {
      ...compared,
      method: `${plan.reason}: ${LIVE}`,
      why: plan.why,
      replication: link ? `not touched (${describeThreads(link.threads)})` : 'none',
    };
  }
  if (!hasPrivilege(joinerFacts, 'REPLICATION SLAVE ADMIN')) {
    // As clone's preflight: refused before a STOP that could not be undone by the same account.
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `the joiner account ${joinerFacts.user} lacks REPLICATION SLAVE ADMIN (or SUPER), which verify needs to hold the replica at the donor's snapshot; nothing was changed`,
    );
  }
  const hold = ReplicaHold.begin(ctx, plan.found, use);
  let compared: Compared | undefined;
  let failure: unknown;
  try {
    await hold.pause(joinerMeta);
    compared = await compareAtSnapshot(ctx, hold);
  } catch (err) {
    failure = err;
  }
  let state: string;
  try {
    state = await hold.restore();
  } catch (restoreError) {
    throw hold.restoreFailed(failure, restoreError);
  }
  if (failure !== undefined) throw withHint(failure, `the joiner's replication: ${state}`);
  return { ...compared!, method: 'replica stopped at the donor snapshot', replication: state };
}

async function openSession(
  endpoint: Endpoint,
  side: 'donor' | 'joiner',
  init: string[],
  opened: Server[],
): Promise<Server> {
  try {
    const s = await connect(endpoint, { init });
    opened.push(s);
    return s;
  } catch (err) {
    if (!isReseedError(err) || err.code !== 'CONNECT_FAILED') throw err;
    throw new ReseedError('CONNECT_FAILED', `${side}: ${err.message}`, {
      cause: err,
      retryable: err.retryable,
      hints: err.hints,
    });
  }
}

/** The statements that point a joiner session at `name` (none for the default connection). */
async function useReplicaConnection(
  joiner: Server,
  flavor: Flavor,
  name: string | undefined,
  signal: AbortSignal,
): Promise<string[]> {
  if (name === undefined) return [];
  const use = flavor.useReplicaConnectionSql(name);
  if (!use)
    throw new ReseedError('CONFIG', `the joiner has no named replication connections (asked for '${name}')`);
  await joiner.query(use, [], signal);
  try {
    await joiner.query(flavor.replicaStatusSql, [], signal);
  } catch (err) {
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `the joiner has no replication connection '${name}'; nothing was changed`,
      { cause: err, hints: ['SHOW ALL SLAVES STATUS on the joiner lists its connections'] },
    );
  }
  return [use];
}

/** The named schemas, which must be the donor's user schemas; by default all of them. */
async function resolveSchemas(donor: Server, named: string[], signal: AbortSignal): Promise<string[]> {
  const all = await listSchemas(donor, signal);
  const problems: string[] = [];
  const system = named.filter((s) => SYSTEM_SCHEMAS.includes(s));
  const missing = named.filter((s) => !all.includes(s) && !system.includes(s));
  if (missing.length) problems.push(`--schemas names schemas the donor does not have: ${missing.join(', ')}`);
  if (system.length)
    problems.push(`--schemas names system schemas, which are never compared: ${system.join(', ')}`);
  const schemas = named.length ? named : all;
  if (problems.length === 0 && schemas.length === 0) problems.push('the donor has no user schema to compare');
  if (problems.length) {
    throw new ReseedError('PREFLIGHT_FAILED', `${problems.join('; ')}; nothing was compared or changed`, {
      hints: all.length ? [`the donor's schemas: ${all.join(', ')}`] : [],
    });
  }
  return schemas;
}

/** A replica's thread states, as START SLAVE gives them back. */
interface Threads {
  io: boolean;
  sql: boolean;
}

function describeThreads(t: Threads): string {
  return `IO thread ${t.io ? 'running' : 'stopped'}, SQL thread ${t.sql ? 'running' : 'stopped'}`;
}

/** The joiner's replication connection as verify needs to know it. */
interface Link {
  status: ReplicaStatus;
  /** io: running or on its way to connect (Yes, Connecting, Preparing) */
  threads: Threads;
  /** the source's server_id and server_uuid as the I/O thread last heard them from the source */
  sourceServerId: number;
  sourceUuid: string;
  untilCondition: string;
}

async function readLink(joiner: Server, flavor: Flavor, signal?: AbortSignal): Promise<Link | undefined> {
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
function brokenThread(s: ReplicaStatus): string | undefined {
  if (!s.sqlRunning && s.lastSqlErrno !== 0)
    return `its SQL thread stopped with error ${s.lastSqlErrno}: ${s.lastSqlError}`;
  if (!s.ioRunning && s.lastIoErrno !== 0)
    return `its IO thread ${s.ioConnecting ? 'cannot connect' : 'stopped'} (error ${s.lastIoErrno}): ${s.lastIoError}`;
  return undefined;
}

function replicationFailed(link: Link, broken: string, state: string): ReseedError {
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
async function planHold(ctx: Context, link: Link | undefined): Promise<Plan> {
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
 * The joiner's replication, paused by verify and given back exactly as found. The undo (stop, then
 * start exactly the threads that ran) is journaled before the first STOP, so `reseed recover`
 * gives the threads back after a kill.
 *
 * The UNTIL condition verify sets must go too: MariaDB keeps it across STOP SLAVE, its I/O thread
 * obeys it (a later START SLAVE IO_THREAD would stop again at once), and only a start of the SQL
 * thread clears it. Where the SQL thread is to stay stopped it is started and stopped again; it
 * has nothing to apply then, the relay log ending at the snapshot's position at the latest (the
 * I/O thread was stopped before the snapshot was opened, and UNTIL stops it at that position).
 */
class ReplicaHold {
  readonly found: Threads;
  readonly #ctx: Context;
  readonly #flavor: Flavor;
  /** statements of a session on the joiner's replication connection */
  readonly #use: string[];
  /** stop both threads; start the SQL thread and stop it (clears UNTIL); start what ran */
  readonly #stopSql: string;
  readonly #clearUntilSql: string[];
  readonly #startSql: string[];
  readonly #journal: Journal;
  readonly #ownJournal: boolean;
  readonly #seq: number;

  private constructor(ctx: Context, found: Threads, use: string[]) {
    this.#ctx = ctx;
    this.found = found;
    this.#use = use;
    const flavor = (this.#flavor = ctx.joinerFacts.flavor);
    // flavor.startReplicaSqlThreadSql is "START SLAVE SQL_THREAD" / "START REPLICA SQL_THREAD".
    const startIo = flavor.startReplicaSqlThreadSql.replace(/SQL_THREAD$/, 'IO_THREAD');
    const start =
      found.io && found.sql
        ? [flavor.startReplicaSql]
        : found.io
          ? [startIo]
          : found.sql
            ? [flavor.startReplicaSqlThreadSql]
            : [];
    this.#stopSql = flavor.stopReplicaSql;
    this.#clearUntilSql = [flavor.startReplicaSqlThreadSql, flavor.stopReplicaSqlThreadSql];
    this.#startSql = start;
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

  static begin(ctx: Context, found: Threads, use: string[]): ReplicaHold {
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
      detail: `the joiner runs up to the donor snapshot ${position}`,
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
      progress.emit({ type: 'lag', secondsBehind: link.status.secondsBehind, gtid: position });
    }
  }

  /**
   * Gives the threads back as found, on a fresh session (the operation's own may be broken), and
   * says in what state they are.
   */
  async restore(): Promise<string> {
    const { req } = this.#ctx;
    let state = `${describeThreads(this.found)}, as verify found it`;
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
      await s.query(this.#stopSql);
      // Only where the UNTIL condition outlived STOP (MariaDB), so no other flavor's applier runs.
      const stopped = await readLink(s, this.#flavor);
      if (!this.found.sql && stopped && stopped.untilCondition !== 'None')
        for (const sql of this.#clearUntilSql) await s.query(sql);
      for (const sql of this.#startSql) await s.query(sql);
      const now = await readLink(s, this.#flavor);
      const same = now?.threads.io === this.found.io && now.threads.sql === this.found.sql;
      // A thread that fails again at once on the event that broke it was given back all the same.
      const broken = now && !same ? brokenThread(now.status) : undefined;
      if (!now || (!same && !broken) || now.untilCondition !== 'None') {
        throw new ReseedError(
          'JOURNAL',
          `after restoring it the joiner's replication has ${now ? `${describeThreads(now.threads)}, UNTIL ${now.untilCondition}` : 'gone'}`,
        );
      }
      state = broken ? `restarted as verify found it, then ${broken}` : state;
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

function withHint(err: unknown, hint: string): unknown {
  if (!isReseedError(err)) return err;
  return new ReseedError(err.code, err.message, {
    cause: err,
    retryable: err.retryable,
    hints: [...err.hints, hint],
  });
}

type Compared = Omit<VerifyReport, 'method' | 'why' | 'replication'>;

/** Checksums both sides at the donor snapshot's position (the joiner held there when `hold`). */
async function compareAtSnapshot(ctx: Context, hold: ReplicaHold | undefined): Promise<Compared> {
  const { req, donorMeta, joinerMeta, donorFacts, joinerFacts, schemas, opened } = ctx;
  const { log, progress, signal } = req;
  const group = await openSnapshotGroup({
    endpoint: req.donor,
    flavor: donorFacts.flavor,
    sessions: req.parallel,
    sessionInit: [SESSION_TZ, ...donorFacts.flavor.unboundedSessionSql],
    lockMode: req.lockMode,
    policy: req.readLock,
    monitor: donorMeta,
    log,
    signal,
  });
  try {
    const position = group.coordinates.gtid;
    if (hold) await hold.runUntil(joinerMeta, position);
    const tables = await listTables(donorMeta, schemas, signal);
    const joinerTables = new Set((await listTables(joinerMeta, schemas, signal)).map(displayName));
    const differences: Difference[] = [];
    for (const t of tables)
      if (!joinerTables.has(displayName(t)))
        differences.push({ what: `table ${displayName(t)}`, detail: 'missing on the joiner' });
    const present = tables.filter((t) => joinerTables.has(displayName(t)));
    const planner = await openSession(req.donor, 'donor', rawReadSessionSql(), opened);
    const joinerSessions: Server[] = [];
    for (let i = 0; i < req.parallel; i++)
      joinerSessions.push(
        await openSession(
          req.joiner,
          'joiner',
          [SESSION_TZ, ...joinerFacts.flavor.unboundedSessionSql],
          opened,
        ),
      );
    const counts = await compareTables({
      tables: present,
      donors: group.sessions,
      joiners: joinerSessions,
      planner,
      chunkRows: req.chunkRows,
      differences,
      progress,
      signal,
    });
    differences.push(...(await compareDefinitions(donorMeta, joinerMeta, schemas, tables, signal)));
    const objects = await listObjects(donorMeta, schemas, signal);
    return {
      ok: differences.length === 0,
      position,
      tables: tables.length,
      chunks: counts.chunks,
      rows: counts.rows,
      objects: objects.length,
      differences,
    };
  } finally {
    await group.close();
  }
}

async function compareTables(o: {
  tables: TableInfo[];
  donors: Server[];
  joiners: Server[];
  planner: Server;
  chunkRows: number;
  differences: Difference[];
  progress: ProgressSink;
  signal: AbortSignal;
}): Promise<{ chunks: number; rows: number }> {
  let chunks = 0;
  let rows = 0;
  async function* work(): AsyncGenerator<{ table: TableInfo; range: KeyRange }> {
    for (const table of o.tables)
      for await (const range of planRanges(o.planner, table, o.chunkRows, o.signal)) yield { table, range };
  }
  const queue = work();
  let next: Promise<unknown> = Promise.resolve();
  const take = () => {
    const call = next.then(() => queue.next());
    next = call.catch(() => undefined);
    return call;
  };
  await Promise.all(
    o.donors.map(async (donor, i) => {
      for (;;) {
        throwIfAborted(o.signal);
        const item = await take();
        if (item.done) return;
        const { table, range } = item.value;
        const [a, b] = await Promise.all([
          chunkChecksum(donor, table, range, o.signal),
          chunkChecksum(o.joiners[i]!, table, range, o.signal),
        ]);
        chunks++;
        rows += a.rows;
        if (a.rows !== b.rows || a.hash !== b.hash) {
          o.differences.push({
            what: `table ${displayName(table)}`,
            detail: `${describeRange(table, range)}: donor ${a.rows} rows, joiner ${b.rows} rows${a.rows === b.rows ? ', contents differ' : ''}`,
          });
        }
      }
    }),
  );
  return { chunks, rows };
}

function describeRange(table: TableInfo, range: KeyRange): string {
  if (!table.chunkKey) return 'whole table (no key to split it)';
  if (!range.lower && !range.upper) return 'all rows';
  const key = table.chunkKey.map((c) => c.name).join(', ');
  const show = (v: Buffer[]) => v.map((b) => b.toString('utf8')).join(', ');
  return `key (${key}) ${range.lower ? `> (${show(range.lower)})` : ''}${range.lower && range.upper ? ' and ' : ''}${range.upper ? `<= (${show(range.upper)})` : ''}`;
}

/** Table definitions and the other objects, as SHOW CREATE prints them. */
async function compareDefinitions(
  donor: Server,
  joiner: Server,
  schemas: string[],
  tables: TableInfo[],
  signal: AbortSignal,
): Promise<Difference[]> {
  const out: Difference[] = [];
  for (const t of tables) {
    const [a] = await donor.query(`SHOW CREATE TABLE ${tableName(t)}`, [], signal);
    const [b] = await joiner.query(`SHOW CREATE TABLE ${tableName(t)}`, [], signal).catch(() => [undefined]);
    if (!b) continue;
    const strip = (s: unknown) => String(s).replace(/ AUTO_INCREMENT=\d+/, '');
    if (strip(a?.['Create Table']) !== strip(b['Create Table']))
      out.push({ what: `table ${displayName(t)}`, detail: 'definition differs' });
  }
  const key = (o: SchemaObject) => objectLabel(o);
  const normalize = (o: SchemaObject) =>
    o.kind === 'event' ? o.create.replace(/\b(ENABLE|DISABLE( ON SLAVE)?)\b/g, '') : o.create;
  const mine = new Map((await listObjects(donor, schemas, signal)).map((o) => [key(o), o]));
  const theirs = new Map((await listObjects(joiner, schemas, signal)).map((o) => [key(o), o]));
  for (const [k, o] of mine) {
    const other = theirs.get(k);
    if (!other) out.push({ what: k, detail: 'missing on the joiner' });
    else if (normalize(o) !== normalize(other)) out.push({ what: k, detail: 'definition differs' });
  }
  for (const k of theirs.keys()) if (!mine.has(k)) out.push({ what: k, detail: 'exists only on the joiner' });
  return out;
}
