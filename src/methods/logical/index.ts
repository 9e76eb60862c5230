import { rawReadSessionSql } from '../../mysql/chunking.js';
import { connect, quoteIdent } from '../../mysql/server.js';
import type { Server } from '../../mysql/server.js';
import { listObjects } from '../../mysql/objects.js';
import type { SchemaObject } from '../../mysql/objects.js';
import { openSnapshotGroup } from '../../mysql/snapshot.js';
import type { SnapshotGroup } from '../../mysql/snapshot.js';
import { compareVersions, parseVersion } from '../../mysql/flavor/index.js';
import { displayName, listTableKinds, listTables } from '../../mysql/tables.js';
import type { Coordinates } from '../../replication/coordinates.js';
import { throttleReporter } from '../../progress.js';
import type { CloneContext, TransferMethod, TransferResult } from '../method.js';
import { copyTables, loaderFor } from './copy.js';
import { DonorThrottle } from '../../throttle/donor-throttle.js';
import { createObjects, createTables } from './schema.js';
import { copyUsers } from './users.js';

/** Engines whose tables a consistent-snapshot transaction reads as of the snapshot. */
const SNAPSHOT_ENGINES = new Set(['innodb', 'rocksdb']);

export const logical: TransferMethod = {
  name: 'logical',
  phases: ['snapshot', 'schema', 'copy', 'objects'],
  summary: 'one consistent snapshot, parallel chunked copy streamed into the joiner with LOAD DATA',
  capabilities: {
    donorLock: 'none-or-brief',
    replaces: 'schemas',
    needsJoinerStopped: false,
    needsAgents: false,
    crossVersion: true,
  },

  async preflight(ctx) {
    const problems: string[] = [];
    // System-versioned tables are copied with their history, which only MariaDB 10.11 and later
    // let a session write (system_versioning_insert_history).
    const kinds = await listTableKinds(ctx.donor.meta, ctx.options.schemas, ctx.signal);
    const versioned = kinds.filter((t) => t.type === 'SYSTEM VERSIONED');
    const j = ctx.joiner.facts;
    if (
      versioned.length &&
      (j.flavor.name !== 'mariadb' || compareVersions(j.version, parseVersion('10.11.0')) < 0)
    ) {
      problems.push(
        `system-versioned tables (${versioned.map(displayName).join(', ')}) need a MariaDB 10.11 or later joiner to receive their history (the joiner is ${j.version.text}); leave their schemas out with --schemas`,
      );
    }
    // Bulk INSERTs need no local_infile; LOAD DATA LOCAL does (then only rows too big for the
    // joiner's max_allowed_packet use it, and fail with a hint if it is off).
    if (!ctx.joiner.facts.localInfile && loaderFor(ctx.options.loadMode, ctx.joiner.meta) === 'load-data') {
      problems.push(
        'the joiner has local_infile=OFF: run SET GLOBAL local_infile = ON there (this clone loads with LOAD DATA LOCAL)',
      );
    }
    return problems;
  },

  async advisories(ctx) {
    // Only transactional engines are read consistently inside the snapshot.
    const kinds = await listTableKinds(ctx.donor.meta, ctx.options.schemas, ctx.signal);
    const loose = kinds.filter(
      (t) =>
        ['BASE TABLE', 'SYSTEM VERSIONED'].includes(t.type) && !SNAPSHOT_ENGINES.has(t.engine.toLowerCase()),
    );
    if (loose.length === 0) return [];
    const names = loose.map((t) => `${displayName(t)} (${t.engine})`);
    const shown = names.length > 10 ? [...names.slice(0, 10), `and ${names.length - 10} more`] : names;
    return [
      `not protected by the snapshot: ${shown.join(', ')}; writes to them during the copy can make the joiner differ (stop those writes, or check with --verify)`,
    ];
  },

  async run(ctx: CloneContext): Promise<TransferResult> {
    const { donor, joiner, options, journal, log, progress, signal } = ctx;
    const phases: Record<string, number> = {};
    const flavor = donor.facts.flavor;
    const opened: Server[] = [];
    let group: SnapshotGroup | undefined;
    let throttle: DonorThrottle | undefined;
    try {
      // 1. The snapshot. A donor that replicates has its applier paused for the moment it takes,
      //    so its position in its own source's stream is exact too.
      let t = Date.now();
      progress.emit({ type: 'phase', phase: 'snapshot' });
      const pauseApplier = donor.facts.replica?.sqlRunning === true;
      let pauseSeq: number | undefined;
      if (pauseApplier) {
        pauseSeq = journal.record("pause the donor's replication applier", {
          target: 'donor',
          statements: [flavor.startReplicaSqlThreadSql],
        });
        await donor.meta.query(flavor.stopReplicaSqlThreadSql, [], signal);
      }
      group = await openSnapshotGroup({
        endpoint: donor.endpoint,
        flavor,
        sessions: options.parallel,
        sessionInit: rawReadSessionSql(flavor.unboundedSessionSql),
        lockMode: options.lockMode,
        policy: options.readLock,
        monitor: donor.meta,
        log,
        signal,
        onWaiting: throttleReporter(progress),
      });
      const coordinates: Coordinates = { ...group.coordinates };
      const { lockMode, lockHeldMs } = group;
      progress.emit({
        type: 'snapshot',
        sessions: group.sessions.length,
        lockMode,
        lockHeldMs,
        gtid: coordinates.gtid,
      });
      if (donor.facts.replica) {
        const [row] = await donor.meta.query(flavor.replicaStatusSql, [], signal);
        const [g] = await donor.meta.query(flavor.replicaGtidPositionSql, [], signal);
        if (row) {
          const s = flavor.parseReplicaStatus(row);
          coordinates.source = {
            host: s.sourceHost,
            port: s.sourcePort,
            gtid: String(g?.gtid ?? ''),
            binlog: s.executed,
          };
        }
      }
      if (pauseSeq !== undefined) {
        await donor.meta.query(flavor.startReplicaSqlThreadSql, [], signal);
        journal.resolve(pauseSeq);
      }
      phases.snapshot = Date.now() - t;
      log.info({ coordinates, lockMode: group.lockMode, lockHeldMs: group.lockHeldMs }, 'snapshot open');

      // 2. Schemas and tables.
      t = Date.now();
      progress.emit({ type: 'phase', phase: 'schema' });
      const tables = await listTables(donor.meta, options.schemas, signal);
      // The estimates, before any row moves: the whole copy's size is known up front.
      for (const table of tables)
        progress.emit({
          type: 'table-planned',
          table: displayName(table),
          estimatedRows: table.estimatedRows,
          estimatedBytes: table.dataBytes,
        });
      const objects = await listObjects(donor.meta, options.schemas, signal);
      // A sequence's state as of the snapshot (its row, read in the snapshot).
      const sequences: { object: SchemaObject; next: string }[] = [];
      for (const o of objects.filter((x) => x.kind === 'sequence')) {
        const [row] = await group.sessions[0]!.query(
          `SELECT next_not_cached_value AS n FROM ${quoteIdent(o.schema)}.${quoteIdent(o.name)}`,
          [],
          signal,
        );
        sequences.push({ object: o, next: String(row?.n) });
      }
      const deferredIndexes = await createTables({
        donor: donor.meta,
        joiner: joiner.meta,
        schemas: options.schemas,
        tables,
        sequences,
        journal,
        signal,
        deferIndexes: options.deferIndexes,
      });
      phases.schema = Date.now() - t;

      // 3. Rows.
      t = Date.now();
      progress.emit({ type: 'phase', phase: 'copy' });
      const planner = await connect(donor.endpoint, { init: rawReadSessionSql(flavor.unboundedSessionSql) });
      opened.push(planner);
      const joiners: Server[] = [];
      for (let i = 0; i < options.parallel; i++) {
        const s = await connect(joiner.endpoint, {
          init: [
            ...joiner.facts.flavor.bulkLoadSessionSql,
            ...joiner.facts.flavor.unboundedSessionSql,
            // Row start and end of versioned tables' rows are written as the donor had them.
            ...(tables.some((t) => t.versioned) ? ['SET SESSION system_versioning_insert_history = 1'] : []),
          ],
        });
        opened.push(s);
        joiners.push(s);
      }
      throttle = await DonorThrottle.start({
        donor: donor.endpoint,
        options: options.throttle,
        ours: [...group.sessions, planner],
        readers: group.sessions.length,
        log,
        progress,
      });
      const { tables: copied, loadedWith } = await copyTables({
        gate: throttle.gate,
        donors: group.sessions,
        joiners,
        planner,
        tables,
        chunkRows: options.chunkRows,
        deferredIndexes,
        progress,
        signal,
        loadMode: options.loadMode,
      });
      phases.copy = Date.now() - t;
      const throttled = await throttle.stop();
      throttle = undefined;
      await group.close();
      group = undefined;

      // 4. Views, routines, triggers (after the rows, so loading fires none), events, accounts.
      t = Date.now();
      const created = objects.filter((o) => o.kind !== 'sequence');
      progress.emit({ type: 'phase', phase: 'objects', detail: describeObjects(created) });
      const ddl = await connect(joiner.endpoint, { init: ['SET SESSION sql_log_bin = 0'] });
      opened.push(ddl);
      let done = 0;
      await createObjects({
        joiner: ddl,
        flavor: joiner.facts.flavor,
        objects,
        signal,
        onCreated: () => progress.emit({ type: 'objects', done: ++done, total: created.length }),
      });
      const users = options.users
        ? await copyUsers({ donor: donor.meta, joiner: joiner.meta, journal, progress, signal })
        : 0;
      phases.objects = Date.now() - t;

      return {
        coordinates,
        lockMode,
        lockHeldMs,
        tables: copied,
        objects: objects.length,
        users,
        phases,
        loadedWith: loadedWith || undefined,
        throttle: throttled,
      };
    } finally {
      await throttle?.stop();
      group?.destroy();
      await Promise.allSettled(opened.map((s) => s.close()));
    }
  },
};

/** "2 views, 1 function, 1 trigger": what the objects phase creates. */
function describeObjects(objects: SchemaObject[]): string {
  if (objects.length === 0) return 'none';
  const counts = new Map<string, number>();
  for (const o of objects) counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1);
  return [...counts].map(([kind, n]) => `${n} ${kind}${n === 1 ? '' : 's'}`).join(', ');
}
