import { ReseedError, throwIfAborted } from '../errors.js';
import type { Journal } from '../journal/journal.js';
import type { Logger } from '../log.js';
import type { KeyRange } from '../mysql/chunking.js';
import { planRanges, rawReadSessionSql } from '../mysql/chunking.js';
import type { Endpoint } from '../mysql/credentials.js';
import { inspect } from '../mysql/facts.js';
import { listObjects, objectLabel } from '../mysql/objects.js';
import type { SchemaObject } from '../mysql/objects.js';
import type { ReadLockPolicy } from '../mysql/read-lock.js';
import { connect } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import { openSnapshotGroup } from '../mysql/snapshot.js';
import type { SnapshotLockMode } from '../mysql/snapshot.js';
import { displayName, listSchemas, listTables, tableName } from '../mysql/tables.js';
import type { TableInfo } from '../mysql/tables.js';
import type { ProgressSink } from '../progress.js';
import { replicaStatus } from '../replication/replica.js';
import { chunkChecksum } from './checksum.js';

export interface Difference {
  /** "table s.t", "view s.v", ... */
  what: string;
  detail: string;
}

export interface VerifyReport {
  ok: boolean;
  /** the donor position both sides were compared at */
  position: string;
  /** how the replica was held at that position, or why it was not */
  method:
    | 'replica stopped at the donor snapshot'
    | 'live (joiner is not a GTID replica: quiesce both for an exact result)';
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
}

/**
 * Compares donor and replica at one GTID position: the replica's applier is stopped, the donor's
 * snapshot is opened, the replica is let run exactly up to the snapshot's position, then both are
 * checksummed chunk by chunk. Replication is restarted afterwards, whatever happens.
 */
export async function verify(req: VerifyRequest): Promise<VerifyReport> {
  const { log, progress, signal } = req;
  const donorMeta = await connect(req.donor, { init: ["SET SESSION time_zone = '+00:00'"] });
  const joinerMeta = await connect(req.joiner, { init: ["SET SESSION time_zone = '+00:00'"] });
  const opened: Server[] = [donorMeta, joinerMeta];
  let restartReplica: (() => Promise<void>) | undefined;
  try {
    const donorFacts = await inspect(donorMeta, signal);
    const joinerFacts = await inspect(joinerMeta, signal);
    const flavor = joinerFacts.flavor;
    const schemas = req.schemas.length ? req.schemas : await listSchemas(donorMeta, signal);
    const replica = joinerFacts.replica;
    const holdReplica = replica !== undefined && replica.usingGtid;
    if (holdReplica) {
      // Stop first: the replica can then not be ahead of the donor snapshot opened next.
      const seq = req.journal?.record("pause the joiner's replication for verify", {
        target: 'joiner',
        statements: [flavor.startReplicaSql],
      });
      await joinerMeta.query(flavor.stopReplicaSql, [], signal);
      restartReplica = async () => {
        await joinerMeta.query(flavor.stopReplicaSql).catch(() => undefined);
        await joinerMeta.query(flavor.startReplicaSql);
        if (seq !== undefined) req.journal?.resolve(seq);
      };
    }
    const group = await openSnapshotGroup({
      endpoint: req.donor,
      flavor: donorFacts.flavor,
      sessions: req.parallel,
      sessionInit: ["SET SESSION time_zone = '+00:00'", ...donorFacts.flavor.unboundedSessionSql],
      lockMode: req.lockMode,
      policy: req.readLock,
      monitor: donorMeta,
      log,
      signal,
    });
    try {
      const position = group.coordinates.gtid;
      if (holdReplica) {
        const until = flavor.startReplicaUntilGtidSql(position);
        await joinerMeta.query(until.sql, until.params, signal);
        const wait = flavor.waitForGtidSql(position, Math.ceil(req.catchupTimeoutMs / 1000));
        const [r] = await joinerMeta.query(wait.sql, wait.params, signal);
        if (Number(r?.result ?? -1) < 0) {
          const s = await replicaStatus(joinerMeta, flavor, signal);
          throw new ReseedError(
            'CATCHUP_TIMEOUT',
            `the replica did not reach the donor's position ${position} for verify (${s?.lastSqlError || s?.lastIoError || 'still behind'})`,
            { retryable: true },
          );
        }
      }
      const tables = await listTables(donorMeta, schemas, signal);
      const joinerTables = new Set((await listTables(joinerMeta, schemas, signal)).map(displayName));
      const differences: Difference[] = [];
      for (const t of tables)
        if (!joinerTables.has(displayName(t)))
          differences.push({ what: `table ${displayName(t)}`, detail: 'missing on the joiner' });
      const present = tables.filter((t) => joinerTables.has(displayName(t)));
      const planner = await connect(req.donor, {
        init: rawReadSessionSql(),
      });
      opened.push(planner);
      const joinerSessions: Server[] = [];
      for (let i = 0; i < req.parallel; i++) {
        const s = await connect(req.joiner, {
          init: ["SET SESSION time_zone = '+00:00'", ...flavor.unboundedSessionSql],
        });
        opened.push(s);
        joinerSessions.push(s);
      }
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
        method: holdReplica
          ? 'replica stopped at the donor snapshot'
          : 'live (joiner is not a GTID replica: quiesce both for an exact result)',
        tables: tables.length,
        chunks: counts.chunks,
        rows: counts.rows,
        objects: objects.length,
        differences,
      };
    } finally {
      await group.close();
    }
  } finally {
    try {
      if (restartReplica) await restartReplica();
    } finally {
      await Promise.allSettled(opened.map((s) => s.close()));
    }
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
