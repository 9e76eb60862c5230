import { ReseedError, errorMessage, isReseedError } from '../errors.js';
import { Journal } from '../journal/journal.js';
import type { RollbackReport, Target } from '../journal/journal.js';
import type { Logger } from '../log.js';
import type { Endpoint } from '../mysql/credentials.js';
import { describeEndpoint, publicEndpoint } from '../mysql/credentials.js';
import { inspect } from '../mysql/facts.js';
import { connect, quoteIdent } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import type { CloneContext, CloneOptions, CloneSide, TransferResult } from '../methods/method.js';
import { getMethod } from '../methods/registry.js';
import type { ProgressSink } from '../progress.js';
import type { Coordinates } from '../replication/coordinates.js';
import { configureReplica, waitForCatchUp } from '../replication/replica.js';
import { verify } from '../verify/verify.js';
import type { VerifyReport } from '../verify/verify.js';
import { asideName, moveAside } from './joiner-prepare.js';
import { preflight } from './preflight.js';

export interface CloneSummary {
  method: string;
  donor: string;
  joiner: string;
  durationMs: number;
  rows: number;
  bytes: number;
  tables: number;
  objects: number;
  users: number;
  lockMode: string;
  lockHeldMs: number;
  coordinates: Coordinates;
  replication: {
    state: 'running' | 'not configured';
    from?: string;
    mode?: 'gtid' | 'file/position';
    catchUpMs?: number;
  };
  readOnly: boolean;
  verify: VerifyReport | undefined;
  phases: Record<string, number>;
  /** how rows entered the joiner (logical method): 'bulk-insert', 'load-data', or both, comma-separated */
  loadedWith: string | undefined;
  warnings: string[];
  journal: string;
}

export interface CloneRequest {
  donor: Endpoint;
  joiner: Endpoint;
  options: CloneOptions;
  log: Logger;
  progress: ProgressSink;
  signal: AbortSignal;
}

async function openSide(endpoint: Endpoint, init: string[], signal: AbortSignal): Promise<CloneSide> {
  const meta = await connect(endpoint, { init });
  try {
    return { endpoint, meta, facts: await inspect(meta, signal) };
  } catch (err) {
    meta.destroy();
    throw err;
  }
}

/**
 * resolve -> preflight -> plan -> run -> replicate -> verify -> report. Any failure (Ctrl-C
 * included) rolls the journal back and says what state each server is in.
 */
export async function clone(req: CloneRequest): Promise<CloneSummary> {
  const started = Date.now();
  const { options, log, progress, signal } = req;
  const method = getMethod(options.method);
  progress.emit({ type: 'phase', phase: 'preflight' });
  const donor = await openSide(req.donor, [], signal);
  let joiner: CloneSide;
  try {
    joiner = await openSide(
      req.joiner,
      ['SET SESSION sql_log_bin = 0', 'SET SESSION foreign_key_checks = 0'],
      signal,
    );
  } catch (err) {
    donor.meta.destroy();
    throw err;
  }
  const journal = Journal.create({
    operation: 'clone',
    donor: publicEndpoint(req.donor),
    joiner: publicEndpoint(req.joiner),
  });
  const ctx: CloneContext = { donor, joiner, options, journal, log, progress, signal };
  try {
    const plan = await preflight(ctx, method);
    options.schemas = plan.schemas;
    for (const w of plan.warnings) progress.emit({ type: 'warning', message: w });

    // Make room on the joiner: stop its replication, move its data aside (--force) or drop the
    // empty schemas that have the donor's names.
    const flavor = joiner.facts.flavor;
    if (joiner.facts.replica) {
      const running = joiner.facts.replica.ioRunning || joiner.facts.replica.sqlRunning;
      await journal.apply(
        "stop the joiner's replication",
        { target: 'joiner', statements: running ? [flavor.startReplicaSql] : [] },
        () => joiner.meta.query(flavor.stopReplicaSql, [], signal),
      );
    }
    const asides: string[] = [];
    for (const [i, c] of plan.conflicts.entries()) {
      if (c.objects > 0) {
        const aside = asideName(journal.header.id, i);
        await moveAside({ meta: joiner.meta, schema: c.schema, aside, journal, signal });
        asides.push(aside);
      } else {
        const [db] = await joiner.meta.query(`SHOW CREATE DATABASE ${quoteIdent(c.schema)}`, [], signal);
        await journal.apply(
          `drop the joiner's empty schema ${c.schema}`,
          {
            target: 'joiner',
            statements: [
              String(db?.['Create Database']).replace(/^CREATE DATABASE /, 'CREATE DATABASE IF NOT EXISTS '),
            ],
          },
          () => joiner.meta.query(`DROP DATABASE ${quoteIdent(c.schema)}`, [], signal),
        );
      }
    }

    const result = await method.run(ctx);
    // Once the clone stands, what was moved aside is no longer needed.
    const dropAsides = async () => {
      for (const aside of asides)
        await joiner.meta.query(`DROP DATABASE IF EXISTS ${quoteIdent(aside)}`, [], signal);
    };
    let summary: CloneSummary;
    try {
      summary = await finish(ctx, result, started);
    } catch (err) {
      // A catch-up timeout keeps the (complete) clone and commits the journal: drop them too.
      if (journal.finished) await dropAsides();
      throw err;
    }
    await dropAsides();
    journal.commit();
    summary.warnings.push(...plan.warnings);
    return summary;
  } catch (err) {
    if (journal.finished) throw err;
    throw await rollback(journal, req, err, log);
  } finally {
    donor.meta.destroy();
    joiner.meta.destroy();
  }
}

async function finish(ctx: CloneContext, result: TransferResult, started: number): Promise<CloneSummary> {
  const { donor, joiner, options, journal, progress, signal } = ctx;
  const flavor = joiner.facts.flavor;
  const phases = { ...result.phases };
  const summary: CloneSummary = {
    method: options.method,
    donor: describeEndpoint(donor.endpoint),
    joiner: describeEndpoint(joiner.endpoint),
    durationMs: 0,
    rows: result.tables.reduce((a, t) => a + t.rows, 0),
    bytes: result.tables.reduce((a, t) => a + t.bytes, 0),
    tables: result.tables.length,
    objects: result.objects,
    users: result.users,
    lockMode: result.lockMode,
    lockHeldMs: result.lockHeldMs,
    coordinates: result.coordinates,
    replication: { state: 'not configured' },
    readOnly: joiner.facts.readOnly,
    verify: undefined,
    phases,
    loadedWith: result.loadedWith,
    warnings: [],
    journal: journal.path,
  };
  if (options.replicate) {
    progress.emit({ type: 'phase', phase: 'replicate' });
    const t = Date.now();
    const c = result.coordinates;
    const fromSource = options.replicateFrom === 'source' && c.source;
    const host = fromSource ? c.source!.host : (options.replicationHost?.host ?? donor.endpoint.host);
    const port = fromSource ? c.source!.port : (options.replicationHost?.port ?? donor.endpoint.port);
    await configureReplica({
      joiner: joiner.meta,
      flavor,
      journal,
      signal,
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
    });
    summary.replication = {
      state: 'running',
      from: `${host}:${port}`,
      mode: options.gtid ? 'gtid' : 'file/position',
    };
    if (!options.writable) await setReadOnly(ctx);
    summary.readOnly = !options.writable || joiner.facts.readOnly;
    try {
      // Catch up with whom the joiner follows: the donor, or the donor's source.
      const source = fromSource ? await connect({ ...donor.endpoint, host, port }) : donor.meta;
      try {
        const waited = await waitForCatchUp({
          replica: joiner.meta,
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
        journal.commit();
        throw new ReseedError(err.code, err.message, {
          cause: err,
          hints: [
            'the clone itself completed; the joiner is a running replica that is still behind',
            ...err.hints,
          ],
        });
      }
      throw err;
    }
    phases.replicate = Date.now() - t;
  } else if (!options.writable) {
    await setReadOnly(ctx);
    summary.readOnly = true;
  }
  if (options.verify) {
    progress.emit({ type: 'phase', phase: 'verify' });
    const t = Date.now();
    summary.verify = await verify({
      donor: donor.endpoint,
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
    });
    phases.verify = Date.now() - t;
    if (!summary.verify.ok) {
      throw new ReseedError(
        'CHECKSUM_MISMATCH',
        `verification found ${summary.verify.differences.length} difference(s) between donor and joiner`,
        {
          hints: summary.verify.differences.slice(0, 10).map((d) => `${d.what}: ${d.detail}`),
        },
      );
    }
  }
  summary.durationMs = Date.now() - started;
  return summary;
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

/** Runs a journal's undo against fresh sessions (the operation's own may be broken). */
export async function rollbackJournal(
  journal: Journal,
  endpoints: Record<Target, Endpoint>,
): Promise<RollbackReport> {
  const sessions = new Map<Target, Server>();
  try {
    return await journal.rollback(async (target, sql) => {
      let s = sessions.get(target);
      if (!s) {
        s = await connect(endpoints[target], {
          init: target === 'joiner' ? ['SET SESSION sql_log_bin = 0'] : [],
        });
        sessions.set(target, s);
      }
      await s.query(sql);
    });
  } finally {
    for (const s of sessions.values()) await s.close();
  }
}

async function rollback(journal: Journal, req: CloneRequest, err: unknown, log: Logger): Promise<Error> {
  const original = isReseedError(err) ? err : new ReseedError('INTERNAL', errorMessage(err), { cause: err });
  const hadSteps = journal.pending().length > 0;
  let report: RollbackReport;
  try {
    report = await rollbackJournal(journal, { donor: req.donor, joiner: req.joiner });
  } catch (rollbackError) {
    log.error({ err: rollbackError }, 'rollback could not run');
    return new AggregateError([original, rollbackError], original.message);
  }
  const state: string[] = [];
  if (report.failed.length === 0) {
    state.push(
      hadSteps
        ? `every change was undone (${report.undone.length} step(s)): donor and joiner are as they were`
        : 'nothing had been changed on either server',
    );
    return new ReseedError(original.code, original.message, {
      cause: original,
      retryable: original.retryable,
      hints: [...original.hints, ...state],
    });
  }
  state.push(`rollback incomplete: ${report.failed.length} step(s) could not be undone:`);
  for (const f of report.failed) state.push(`  ${f.title}: ${f.error}`);
  state.push(`journal: ${journal.path} (retry with: reseed recover)`);
  const rollbackError = new ReseedError('JOURNAL', state.join('\n'));
  return Object.assign(new AggregateError([original, rollbackError], original.message), {
    code: original.code,
    hints: [...original.hints, ...state],
  });
}
