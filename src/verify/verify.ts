import { ReseedError, errorMessage, isReseedError, throwIfAborted } from '../errors.js';
import type { Journal } from '../journal/journal.js';
import type { Logger } from '../log.js';
import type { KeyRange } from '../mysql/chunking.js';
import { planRanges, rawReadSessionSql } from '../mysql/chunking.js';
import type { Endpoint } from '../mysql/credentials.js';
import { hasPrivilege, inspect, sameServer } from '../mysql/facts.js';
import { JOINER_LOCK, tryLockJoiner } from '../mysql/joiner-lock.js';
import type { Flavor } from '../mysql/flavor/index.js';
import { listObjects, objectLabel } from '../mysql/objects.js';
import type { SchemaObject } from '../mysql/objects.js';
import type { ReadLockPolicy } from '../mysql/read-lock.js';
import { connect } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import { openSnapshotGroup } from '../mysql/snapshot.js';
import type { SnapshotLockMode } from '../mysql/snapshot.js';
import { SYSTEM_SCHEMAS, displayName, listSchemas, listTables, tableName } from '../mysql/tables.js';
import type { TableInfo } from '../mysql/tables.js';
import { throttleReporter } from '../progress.js';
import type { ProgressSink } from '../progress.js';
import { chunkChecksum, groupConcatSql, longValueBytes, verifyChunkRows } from './checksum.js';
import type { ChunkChecksum } from './checksum.js';
import { DEFAULT_THROTTLE, DonorThrottle, throttleProblems } from '../throttle/donor-throttle.js';
import type { ThrottleOptions, ThrottleReport } from '../throttle/donor-throttle.js';
import type { RateGate } from '../throttle/rate-gate.js';
import {
  ReplicaHold,
  brokenThread,
  describeThreads,
  planHold,
  readLink,
  replicationFailed,
} from './replica-hold.js';
import type { HoldContext } from './replica-hold.js';

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
  /** what the donor throttle did while the donor's chunks were checksummed */
  throttle?: ThrottleReport | undefined;
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
  /**
   * Let verify run a joiner's stopped SQL thread up to the donor's snapshot, applying the
   * transactions the operator held back with it; otherwise such a joiner is refused.
   */
  applyHeld?: boolean | undefined;
  /** how the donor's checksum queries are paced (default: adaptive, no cap) */
  throttle?: ThrottleOptions | undefined;
}

const SESSION_TZ = "SET SESSION time_zone = '+00:00'";

/**
 * Compares donor and replica at one GTID position. When the joiner is a GTID replica of the donor,
 * its replication is paused, the donor's snapshot opened, and the replica let run exactly up to
 * the snapshot's position; its threads are then given back as found (journaled first, so
 * `reseed recover` does it after a kill), but for a thread that stopped on an error meanwhile,
 * which keeps its error. A stopped SQL thread is run only with `applyHeld`. Any other joiner is
 * compared live, untouched.
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

interface Context extends HoldContext {
  opened: Server[];
  joinerMeta: Server;
  schemas: string[];
}

async function verifyWith(req: VerifyRequest, opened: Server[]): Promise<VerifyReport> {
  const { signal } = req;
  const donorMeta = await openSession(req.donor, 'donor', [SESSION_TZ], opened);
  const joinerMeta = await openSession(req.joiner, 'joiner', [SESSION_TZ], opened);
  const donorFacts = await inspect(donorMeta, signal);
  const joinerFacts = await inspect(joinerMeta, signal);
  // Standalone, verify stops and starts the joiner's replication: not while a clone or recover
  // works on it (inside a clone, the clone holds the lock).
  if (!req.journal) {
    const lock = await tryLockJoiner(joinerMeta, signal);
    if (!lock.got)
      throw new ReseedError(
        'PREFLIGHT_FAILED',
        `another reseed operation is working on the joiner (its session ${lock.holder} holds the lock ${JOINER_LOCK}); nothing was compared or changed`,
      );
  }
  if (sameServer(donorFacts, joinerFacts))
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `donor and joiner are the same server (${donorFacts.hostname}:${donorFacts.port}, server_id ${donorFacts.serverId}): --to must name its replica; nothing was compared`,
    );
  const flavor = joinerFacts.flavor;
  const use = await useReplicaConnection(joinerMeta, flavor, req.replicaConnection, signal);
  const schemas = await resolveSchemas(donorMeta, req.schemas, signal);
  const throttleTrouble = await throttleProblems(req.throttle ?? DEFAULT_THROTTLE, donorMeta);
  if (throttleTrouble.length)
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `${throttleTrouble.join('; ')}; nothing was compared or changed`,
    );
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
  if (!plan.found.sql && req.applyHeld !== true) {
    // A stopped SQL thread may be holding back a statement the operator must not see applied.
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      "the joiner's SQL thread is stopped, and comparing at one position would apply the transactions it holds back: start it yourself (START SLAVE SQL_THREAD), or pass --apply-held to let verify run it up to the donor's snapshot and stop it again; nothing was changed",
    );
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
  let throttle: DonorThrottle | undefined;
  const group = await openSnapshotGroup({
    endpoint: req.donor,
    flavor: donorFacts.flavor,
    sessions: req.parallel,
    sessionInit: [SESSION_TZ, groupConcatSql(), ...donorFacts.flavor.unboundedSessionSql],
    lockMode: req.lockMode,
    policy: req.readLock,
    monitor: donorMeta,
    log,
    signal,
    onWaiting: throttleReporter(progress),
  });
  try {
    const position = group.coordinates.gtid;
    progress.emit({
      type: 'snapshot',
      sessions: group.sessions.length,
      lockMode: group.lockMode,
      lockHeldMs: group.lockHeldMs,
      gtid: position,
    });
    if (hold) await hold.runUntil(joinerMeta, position);
    const tables = await listTables(donorMeta, schemas, signal);
    const joinerTables = new Set((await listTables(joinerMeta, schemas, signal)).map(displayName));
    const differences: Difference[] = [];
    for (const t of tables)
      if (!joinerTables.has(displayName(t)))
        differences.push({ what: `table ${displayName(t)}`, detail: 'missing on the joiner' });
    const present = tables.filter((t) => joinerTables.has(displayName(t)));
    for (const t of present)
      progress.emit({ type: 'verify-planned', table: displayName(t), estimatedRows: t.estimatedRows });
    const planner = await openSession(req.donor, 'donor', rawReadSessionSql(), opened);
    const joinerSessions: Server[] = [];
    for (let i = 0; i < req.parallel; i++)
      joinerSessions.push(
        await openSession(
          req.joiner,
          'joiner',
          [SESSION_TZ, groupConcatSql(), ...joinerFacts.flavor.unboundedSessionSql],
          opened,
        ),
      );
    const maxPacket = Math.min(
      await maxAllowedPacket(donorMeta, signal),
      await maxAllowedPacket(joinerMeta, signal),
    );
    throttle = await DonorThrottle.start({
      donor: req.donor,
      options: req.throttle ?? DEFAULT_THROTTLE,
      ours: [...group.sessions, planner, donorMeta],
      readers: group.sessions.length,
      log,
      progress,
    });
    const counts = await compareTables({
      gate: throttle.gate,
      maxPacket,
      tables: present,
      donors: group.sessions,
      joiners: joinerSessions,
      planner,
      chunkRows: req.chunkRows,
      differences,
      progress,
      signal,
    });
    const throttled = await throttle.stop();
    throttle = undefined;
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
      throttle: throttled,
    };
  } finally {
    await throttle?.stop();
    await group.close();
  }
}

async function maxAllowedPacket(server: Server, signal: AbortSignal): Promise<number> {
  const [row] = await server.query('SELECT @@max_allowed_packet AS m', [], signal);
  return Number(row?.m ?? 1 << 24);
}

async function compareTables(o: {
  /** paces the donor's checksum queries (the throttle) */
  gate: RateGate;
  /** the smaller max_allowed_packet of the two servers: no row's serialization may exceed it */
  maxPacket: number;
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
  const tally = new Map<TableInfo, TableTally>();
  const tableDone = (table: TableInfo, t: TableTally) =>
    o.progress.emit({
      type: 'verify-table',
      table: displayName(table),
      chunks: t.chunks,
      rows: t.rows,
      mismatches: t.mismatches,
    });
  async function* work(): AsyncGenerator<{ table: TableInfo; range: KeyRange }> {
    for (const table of o.tables) {
      const t: TableTally = { chunks: 0, done: 0, rows: 0, mismatches: 0, planned: false };
      tally.set(table, t);
      for await (const range of planRanges(o.planner, table, verifyChunkRows(table, o.chunkRows), o.signal)) {
        t.chunks++;
        yield { table, range };
      }
      t.planned = true;
      // Its chunks may all be compared already: then no worker will notice it is complete.
      if (t.done === t.chunks) tableDone(table, t);
    }
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
        const longBytes = longValueBytes(table, o.maxPacket);
        let [a, b] = await Promise.all([
          paced(o.gate, table, () => chunkChecksum(donor, table, range, longBytes, o.signal), o.signal),
          chunkChecksum(o.joiners[i]!, table, range, longBytes, o.signal),
        ]);
        // Ordered fingerprints that differ (or one side could not make one) are checked again
        // order-free: a difference in order alone is not a difference in data.
        if (a.rows === b.rows && (a.kind !== b.kind || (a.kind === 'ordered' && a.hash !== b.hash)))
          [a, b] = await Promise.all([
            paced(
              o.gate,
              table,
              () => chunkChecksum(donor, table, range, longBytes, o.signal, 'order-free'),
              o.signal,
            ),
            chunkChecksum(o.joiners[i]!, table, range, longBytes, o.signal, 'order-free'),
          ]);
        chunks++;
        rows += a.rows;
        const mismatch = a.rows !== b.rows || a.kind !== b.kind || a.hash !== b.hash;
        if (mismatch) {
          o.differences.push({
            what: `table ${displayName(table)}`,
            detail: `${describeRange(table, range)}: donor ${a.rows} rows, joiner ${b.rows} rows${a.rows === b.rows ? ', contents differ' : ''}`,
          });
        }
        const t = tally.get(table)!;
        t.done++;
        t.rows += a.rows;
        if (mismatch) t.mismatches++;
        o.progress.emit({
          type: 'verify-chunk',
          table: displayName(table),
          rows: a.rows,
          chunks: t.chunks,
          chunksDone: t.done,
          allPlanned: t.planned,
          mismatch,
        });
        if (t.planned && t.done === t.chunks) tableDone(table, t);
      }
    }),
  );
  return { chunks, rows };
}

/**
 * A donor checksum query under the throttle: it waits for a reading slot, and afterwards for as
 * long as the gate says for the bytes it read (estimated from the table's average row).
 */
async function paced(
  gate: RateGate,
  table: TableInfo,
  run: () => Promise<ChunkChecksum>,
  signal: AbortSignal,
): Promise<ChunkChecksum> {
  await new Promise<void>((go) => gate.acquire(go));
  let result: ChunkChecksum;
  try {
    result = await run();
  } finally {
    gate.release();
  }
  // The wait can be long at a low --max-rate: Ctrl-C ends it at once, a raised rate shortens it.
  if (gate.charge(result.rows * (table.dataBytes / Math.max(1, table.estimatedRows))) > 0) {
    await gate.settle(signal);
    throwIfAborted(signal);
  }
  return result;
}

/** One table's chunks as verify compares them. */
interface TableTally {
  /** chunks planned so far; final once `planned` */
  chunks: number;
  done: number;
  rows: number;
  mismatches: number;
  planned: boolean;
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
