import { rmSync } from 'node:fs';
import { ReseedError, abortError, errorMessage, isReseedError } from '../errors.js';
import type { ThrottleReport } from '../throttle/donor-throttle.js';
import { faultPoint } from '../fault.js';
import { Journal } from '../journal/journal.js';
import type { Logger } from '../log.js';
import type { Endpoint } from '../mysql/credentials.js';
import { describeEndpoint, publicEndpoint } from '../mysql/credentials.js';
import { inspect } from '../mysql/facts.js';
import { JOINER_LOCK, tryLockJoiner } from '../mysql/joiner-lock.js';
import { connect, quoteIdent } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import type { CloneContext, CloneOptions, CloneSide } from '../methods/method.js';
import { getMethod } from '../methods/registry.js';
import type { ProgressSink } from '../progress.js';
import type { Coordinates } from '../replication/coordinates.js';
import { configureReplica, parkConnection, promoteReplica, waitForCatchUp } from '../replication/replica.js';
import type { ReplicaSetup } from '../replication/replica.js';
import { verify } from '../verify/verify.js';
import type { VerifyReport } from '../verify/verify.js';
import { asideName, moveAside } from './joiner-prepare.js';
import { identity, setAsideManifest, writeManifest } from './manifest.js';
import { describePlan, preflight, replicationAddress, stagedConnectionName } from './preflight.js';
import type { ClonePlan } from './preflight.js';
import { captureState } from './state-record.js';
import { inPhase, phaseError, rollback } from './outcome.js';
import { removeOldReplication, stopJoinerReplication } from './joiner-replication.js';
import type { RecordedState } from './undo.js';

export interface CloneSummary {
  method: string;
  donor: string;
  joiner: string;
  /** the plan, as printed before anything changed */
  plan: string[];
  /** --dry-run: only the plan was made; nothing changed */
  dryRun: boolean;
  durationMs: number;
  rows: number;
  bytes: number;
  tables: number;
  objects: number;
  users: number;
  lockMode: string;
  lockHeldMs: number;
  coordinates: Coordinates | undefined;
  replication: {
    state: 'running' | 'not configured';
    from?: string;
    mode?: 'gtid' | 'file/position';
    catchUpMs?: number;
    /** replicate_wild_do_table patterns, when the copied schemas were named */
    filters?: string[];
    /** the joiner's previous replication, replaced or removed */
    removed: string[];
  };
  readOnly: boolean;
  verify: VerifyReport | undefined;
  phases: Record<string, number>;
  /** how rows entered the joiner (logical method): 'bulk-insert', 'load-data', or both, comma-separated */
  loadedWith: string | undefined;
  /** what the donor throttle did during the copy */
  throttle: ThrottleReport | undefined;
  /** joiner schemas dropped once the clone stood (the plan named them) */
  dropped: string[];
  /** joiner schemas left untouched */
  kept: string[];
  warnings: string[];
  journal: string | undefined;
  /** the CloneManifest, written once the clone completed: its presence means it did */
  manifest: string | undefined;
}

export interface CloneRequest {
  donor: Endpoint;
  joiner: Endpoint;
  options: CloneOptions;
  log: Logger;
  progress: ProgressSink;
  signal: AbortSignal;
  /** where the journal is kept (default: the state directory's journal/) */
  journalDir?: string | undefined;
  /** where the CloneManifest is written (default: the state directory's manifests/) */
  manifestDir?: string | undefined;
  /** told of the journal once it exists (an agent makes it its job's undo) */
  onJournal?: ((journal: Journal) => void) | undefined;
}

async function openSide(endpoint: Endpoint, signal: AbortSignal): Promise<CloneSide> {
  const meta = await connect(endpoint);
  try {
    return { endpoint, meta, facts: await inspect(meta, signal) };
  } catch (err) {
    meta.destroy();
    throw err;
  }
}

/**
 * resolve -> preflight -> plan -> run -> replicate -> verify -> report. Any failure (Ctrl-C
 * included) rolls the journal back, compares both servers with the state recorded before the
 * first change, and says what differs.
 */
export async function clone(req: CloneRequest): Promise<CloneSummary> {
  const started = Date.now();
  const { options, progress, signal } = req;
  const method = getMethod(options.method);
  progress.emit({ type: 'phase', phase: 'preflight' });
  const donor = await openSide(req.donor, signal);
  let joiner: CloneSide;
  try {
    joiner = await openSide(req.joiner, signal);
  } catch (err) {
    donor.meta.destroy();
    throw err;
  }
  const journal = Journal.create(
    {
      operation: 'clone',
      donor: publicEndpoint(req.donor),
      joiner: publicEndpoint(req.joiner),
    },
    ...(req.journalDir ? [req.journalDir] : []),
  );
  req.onJournal?.(journal);
  const ctx: CloneContext = {
    donor,
    joiner,
    options,
    journal,
    log: req.log,
    progress,
    signal,
    manifestDir: req.manifestDir,
  };
  try {
    await lockJoiner(joiner.meta, signal);
    let plan: ClonePlan;
    try {
      plan = await inPhase('PREFLIGHT_FAILED', () => preflight(ctx, method));
    } finally {
      // The replication probe is journaled and undone; a refused clone leaves no journal.
      journal.discardIfClean();
    }
    options.schemas = plan.schemas;
    const lines = describePlan(plan, ctx, method);
    progress.emit({
      type: 'plan',
      lines,
      dryRun: options.dryRun,
      phases: [
        'preflight',
        ...method.phases,
        ...(options.replicate ? ['replicate'] : []),
        ...(options.verify ? ['verify'] : []),
      ],
    });
    for (const w of plan.warnings) progress.emit({ type: 'warning', message: w });
    if (options.dryRun) return dryRunSummary(ctx, plan, lines, started);
    // The joiner's metadata session writes no binlog: preflight has checked the privilege.
    for (const sql of ['SET SESSION sql_log_bin = 0', 'SET SESSION foreign_key_checks = 0'])
      await joiner.meta.query(sql, [], signal);
    const dataSchemas = [...plan.replace, ...plan.drop].map((s) => s.schema);
    const before: RecordedState = {
      donor: await captureState(donor.meta, {
        flavor: donor.facts.flavor,
        dataSchemas: [],
        schemas: false,
        accounts: false,
        signal,
      }),
      joiner: await captureState(joiner.meta, {
        flavor: joiner.facts.flavor,
        dataSchemas,
        schemas: true,
        accounts: options.users,
        signal,
      }),
      dataSchemas,
      accounts: options.users,
    };
    journal.keepState('before', before);
    return await run(ctx, plan, lines, before, started);
  } catch (thrown) {
    // After Ctrl-C, whatever failed next (a statement killed on the server, a closed session) is
    // the interrupt's doing: it is reported as the interrupt.
    const err =
      signal.aborted && !(isReseedError(thrown) && thrown.code === 'ABORTED') ? abortError(signal) : thrown;
    if (journal.finished || !journal.written) throw err;
    throw await rollback(journal, { donor: req.donor, joiner: req.joiner }, err, req.log);
  } finally {
    donor.meta.destroy();
    joiner.meta.destroy();
  }
}

function baseSummary(ctx: CloneContext, plan: ClonePlan, lines: string[]): CloneSummary {
  const { donor, joiner, options } = ctx;
  return {
    method: options.method,
    donor: describeEndpoint(donor.endpoint),
    joiner: describeEndpoint(joiner.endpoint),
    plan: lines,
    dryRun: false,
    durationMs: 0,
    rows: 0,
    bytes: 0,
    tables: 0,
    objects: 0,
    users: 0,
    lockMode: 'none',
    lockHeldMs: 0,
    coordinates: undefined,
    replication: { state: 'not configured', removed: [] },
    readOnly: joiner.facts.readOnly,
    verify: undefined,
    phases: {},
    loadedWith: undefined,
    throttle: undefined,
    dropped: [],
    kept: plan.keep,
    warnings: [...plan.warnings],
    journal: ctx.journal.path,
    manifest: undefined,
  };
}

/** The CloneManifest, written last: after the journal's commit and the joiner's last change. */
function recordManifest(ctx: CloneContext, summary: CloneSummary, started: number): string {
  const { donor, joiner, journal, options } = ctx;
  const v = summary.verify;
  return writeManifest(
    {
      format: 1,
      id: journal.header.id,
      method: options.method,
      startedAt: new Date(started).toISOString(),
      completedAt: new Date().toISOString(),
      donor: identity(publicEndpoint(donor.endpoint), donor.facts),
      joiner: identity(publicEndpoint(joiner.endpoint), joiner.facts),
      coordinates: summary.coordinates,
      schemas: options.schemas,
      tables: summary.tables,
      rows: summary.rows,
      bytes: summary.bytes,
      lockMode: summary.lockMode,
      lockHeldMs: summary.lockHeldMs,
      replication: {
        state: summary.replication.state,
        from: summary.replication.from,
        mode: summary.replication.mode,
        catchUpMs: summary.replication.catchUpMs,
      },
      verify: v && {
        identical: v.ok,
        position: v.position,
        tables: v.tables,
        chunks: v.chunks,
        rows: v.rows,
      },
      phases: summary.phases,
      durationMs: Date.now() - started,
    },
    ctx.manifestDir,
  );
}

function dryRunSummary(ctx: CloneContext, plan: ClonePlan, lines: string[], started: number): CloneSummary {
  return {
    ...baseSummary(ctx, plan, lines),
    dryRun: true,
    journal: undefined,
    durationMs: Date.now() - started,
  };
}

async function run(
  ctx: CloneContext,
  plan: ClonePlan,
  lines: string[],
  before: RecordedState,
  started: number,
): Promise<CloneSummary> {
  const { donor, joiner, options, journal, progress, signal } = ctx;
  const flavor = joiner.facts.flavor;
  const summary = baseSummary(ctx, plan, lines);

  // Make room on the joiner: stop its replication (every connection that runs, each thread as it
  // was, restarted by the undo), move aside what the plan replaces, drop same-name empty schemas.
  const stopped = await stopJoinerReplication(ctx, before.joiner.replication);
  if (plan.park !== undefined)
    await parkConnection({ joiner: joiner.meta, flavor, connection: plan.park, journal, signal });
  faultPoint('replication-stopped');
  const oldManifest = await setAsideManifest(joiner.facts, journal, ctx.manifestDir);
  const moved = [...plan.replace, ...plan.drop].map((s, i) => ({
    schema: s.schema,
    aside: asideName(journal.header.id, i),
  }));
  await inPhase('COPY_FAILED', () => moveAside({ meta: joiner.meta, schemas: moved, journal, signal }));
  for (const schema of plan.emptied) {
    const [db] = await joiner.meta.query(`SHOW CREATE DATABASE ${quoteIdent(schema)}`, [], signal);
    await journal.apply(
      `drop the joiner's empty schema ${schema}`,
      {
        target: 'joiner',
        statements: [
          String(db?.['Create Database']).replace(/^CREATE DATABASE /, 'CREATE DATABASE IF NOT EXISTS '),
        ],
      },
      () => joiner.meta.query(`DROP DATABASE ${quoteIdent(schema)}`, [], signal),
    );
  }

  faultPoint('joiner-prepared');
  const result = await inPhase('COPY_FAILED', () => getMethod(options.method).run(ctx));
  faultPoint('copied');
  Object.assign(summary, {
    rows: result.tables.reduce((a, t) => a + t.rows, 0),
    bytes: result.tables.reduce((a, t) => a + t.bytes, 0),
    tables: result.tables.length,
    objects: result.objects,
    users: result.users,
    lockMode: result.lockMode,
    lockHeldMs: result.lockHeldMs,
    coordinates: result.coordinates,
    phases: { ...result.phases },
    loadedWith: result.loadedWith,
    throttle: result.throttle,
  });

  /**
   * Once the clone stands (copied, caught up, verified), the journal is committed first: from then
   * on nothing is rolled back, and a crash or Ctrl-C cannot undo a good clone. Then, without the
   * abort signal (these few statements are not worth stopping half-way): the staged replication
   * replaces the joiner's previous one, older connections go, and so do the moved-aside schemas.
   */
  const commit = async (control: Server | undefined, promote: (() => Promise<void>) | undefined) => {
    journal.commit();
    summary.dropped = plan.drop.map((s) => s.schema);
    try {
      await promote?.();
      summary.replication.removed = await removeOldReplication(
        ctx,
        before.joiner.replication,
        stopped,
        control,
      );
      for (const { aside } of moved) await joiner.meta.query(`DROP DATABASE IF EXISTS ${quoteIdent(aside)}`);
    } catch (err) {
      throw new ReseedError(
        'REPLICATION_FAILED',
        `the clone is complete (its journal is committed), but finishing it failed: ${errorMessage(err)}`,
        {
          cause: err,
          hints: [
            'check SHOW ALL SLAVES STATUS on the joiner: until the new replication is on the default connection it runs on a connection named reseed_staged_...',
            ...moved.map(
              (m) =>
                `the moved-aside copy of ${m.schema} may still be in ${m.aside}: drop it when you no longer need it`,
            ),
          ],
        },
      );
    }
    try {
      summary.manifest = recordManifest(ctx, summary, started);
      if (oldManifest) rmSync(oldManifest, { force: true });
    } catch (err) {
      summary.warnings.push(
        `the clone completed, but its manifest could not be written: ${errorMessage(err)}`,
      );
    }
  };

  if (!options.replicate) {
    if (!options.writable) await setReadOnly(ctx);
    summary.readOnly = !options.writable || joiner.facts.readOnly;
    if (options.verify) await runVerify(ctx, summary, undefined);
    await commit(undefined, undefined);
    summary.durationMs = Date.now() - started;
    return summary;
  }

  progress.emit({ type: 'phase', phase: 'replicate' });
  const t = Date.now();
  if (plan.resetBinlog !== undefined) {
    journal.recordIrreversible(
      `delete the joiner's binary logs (RESET MASTER; they held GTID ${plan.resetBinlog})`,
    );
    await joiner.meta.query(flavor.resetBinlogSql, [], signal);
  }
  const c = result.coordinates;
  const fromSource = options.replicateFrom === 'source' && c.source !== undefined;
  const { host, port } = replicationAddress(ctx);
  const setup: ReplicaSetup = {
    target: {
      host,
      port,
      user: options.replicationUser!,
      password: options.replicationPassword ?? '',
      useGtid: options.gtid,
      gtid: fromSource ? c.source!.gtid : c.gtid,
      binlog: fromSource ? c.source!.binlog : c.binlog,
      ssl: options.replicationSsl,
    },
    filters: plan.filters,
  };
  // A session of its own for replication: its replica statements act on the staged connection.
  const control = await connect(joiner.endpoint, { init: ['SET SESSION sql_log_bin = 0'] });
  try {
    const staged = flavor.useReplicaConnectionSql('')
      ? stagedConnectionName(journal.header.id, 'staged')
      : undefined;
    await inPhase('REPLICATION_FAILED', () =>
      configureReplica({ joiner: control, flavor, setup, connection: staged, journal, signal }),
    );
    summary.replication = {
      state: 'running',
      from: `${host}:${port}`,
      mode: options.gtid ? 'gtid' : 'file/position',
      removed: [],
      ...(plan.filters ? { filters: plan.filters } : {}),
    };
    if (!options.writable) await setReadOnly(ctx);
    summary.readOnly = !options.writable || joiner.facts.readOnly;
    const promote = staged
      ? () => promoteReplica({ joiner: control, flavor, setup, connection: staged })
      : undefined;
    try {
      // Catch up with whom the joiner follows: the donor, or the donor's source.
      const source = fromSource ? await connect({ ...donor.endpoint, host, port }) : donor.meta;
      try {
        const waited = await waitForCatchUp({
          replica: control,
          source,
          flavor,
          useGtid: options.gtid,
          timeoutMs: options.catchupTimeoutMs,
          progress,
          signal,
        });
        summary.replication.catchUpMs = waited.waitedMs;
      } finally {
        if (source !== donor.meta) await source.close();
      }
    } catch (err) {
      if (isReseedError(err) && err.code === 'CATCHUP_TIMEOUT') {
        // The copy is good and replication runs: keep it, and say so.
        await commit(control, promote);
        throw new ReseedError(err.code, err.message, {
          cause: err,
          hints: [
            'the clone itself completed; the joiner is a running replica that is still behind',
            ...err.hints,
          ],
        });
      }
      throw phaseError(err, 'REPLICATION_FAILED');
    }
    summary.phases.replicate = Date.now() - t;
    faultPoint('caught-up');
    if (options.verify) await runVerify(ctx, summary, staged);
    faultPoint('verified');
    // Proven: the joiner's previous replication settings may now be replaced.
    await commit(control, promote);
  } finally {
    await control.close();
  }
  summary.durationMs = Date.now() - started;
  return summary;
}

async function runVerify(ctx: CloneContext, summary: CloneSummary, replicaConnection: string | undefined) {
  const { donor, joiner, options, journal, progress, signal } = ctx;
  progress.emit({ type: 'phase', phase: 'verify' });
  const t = Date.now();
  // A joiner that follows the donor's source is compared with that source, held at its snapshot:
  // compared live with the donor (both moving on) it would differ under writes.
  const fromSource = options.replicate && options.replicateFrom === 'source' && donor.facts.replica;
  const to = replicationAddress(ctx);
  if (fromSource)
    progress.emit({
      type: 'note',
      message: `verify: the joiner follows the donor's source ${to.host}:${to.port}, so it is compared with that source`,
    });
  summary.verify = await inPhase('VERIFY_FAILED', () =>
    verify({
      donor: fromSource ? { ...donor.endpoint, host: to.host, port: to.port } : donor.endpoint,
      joiner: joiner.endpoint,
      schemas: options.schemas,
      parallel: options.parallel,
      chunkRows: options.chunkRows,
      lockMode: options.lockMode,
      readLock: options.readLock,
      catchupTimeoutMs: options.catchupTimeoutMs,
      log: ctx.log,
      progress,
      signal,
      journal,
      replicaConnection,
      throttle: options.throttle,
    }),
  );
  summary.phases.verify = Date.now() - t;
  if (!summary.verify.ok) {
    throw new ReseedError(
      'CHECKSUM_MISMATCH',
      `verification found ${summary.verify.differences.length} difference(s) between donor and joiner`,
      { hints: summary.verify.differences.slice(0, 10).map((d) => `${d.what}: ${d.detail}`) },
    );
  }
}

async function setReadOnly(ctx: CloneContext): Promise<void> {
  const { joiner, journal, signal } = ctx;
  const [row] = await joiner.meta.query('SELECT @@GLOBAL.read_only AS ro', [], signal);
  const before = Number(row?.ro ?? 0) ? 'ON' : 'OFF';
  await journal.apply(
    'make the joiner read-only',
    { target: 'joiner', statements: [`SET GLOBAL read_only = ${before}`] },
    () => joiner.meta.query('SET GLOBAL read_only = ON', [], signal),
  );
}

/**
 * Two clones onto one joiner would move each other's data aside and drop it: the joiner's metadata
 * session holds the joiner's reseed lock for the whole clone, and a second operation is refused at
 * once, naming the session that holds it.
 */
async function lockJoiner(meta: Server, signal: AbortSignal): Promise<void> {
  const lock = await tryLockJoiner(meta, signal);
  if (!lock.got)
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `another reseed operation is working on the joiner (its session ${lock.holder} holds the lock ${JOINER_LOCK}); nothing was changed`,
      { hints: ['wait for it to finish (or stop it: Ctrl-C undoes its changes), then run this again'] },
    );
}
