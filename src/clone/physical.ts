import { execFile } from 'node:child_process';
import { run as runTool } from '../exec/run.js';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { AgentClient } from '../agent/client.js';
import { ReseedError, errorMessage, isReseedError } from '../errors.js';
import { spawnStreamed } from '../exec/stream.js';
import { faultPoint } from '../fault.js';
import {
  destroySnapshot,
  moveVolume,
  protectReceived,
  lastReceived,
  makeDirectoryLike,
  receiveSnapshotCommand,
  receiveTarget,
  receivedIdentity,
  receivedSnapshot,
  removeVolume,
  volumeAt,
  writableCopy,
} from '../host/volumes.js';
import type { Snapshot, Volume } from '../host/volumes.js';
import { formatBytes, formatMs } from '../format.js';
import { captureHostState } from '../host/host-state.js';
import { hostUndo } from '../host/host-undo.js';
import type { ServiceControl } from '../host/service-control.js';
import type { Journal } from '../journal/journal.js';
import type { Logger } from '../log.js';
import { parseBinlogInfo } from '../methods/mariabackup/stages.js';
import { parseMariadbGtid } from '../replication/coordinates.js';
import type { BinlogInfo } from '../methods/mariabackup/stages.js';
import type { Endpoint } from '../mysql/credentials.js';
import { publicEndpoint } from '../mysql/credentials.js';
import { inspect } from '../mysql/facts.js';
import type { ServerFacts } from '../mysql/facts.js';
import { connect } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import { listSchemas } from '../mysql/tables.js';
import { DEFAULT_READ_LOCK_POLICY } from '../mysql/read-lock.js';
import { DEFAULT_THROTTLE } from '../throttle/donor-throttle.js';
import type { ProgressEvent } from '../progress.js';
import { checkAccountFromHere, waitForCatchUp } from '../replication/replica.js';
import type { Codec } from '../transport/codec.js';
import type { ReceiveOptions, ReceiveReport } from '../transport/receive.js';
import { receiveTreeInThread } from '../transport/receive-thread.js';
import { streamIntoChildInThread } from '../transport/stream.js';
import type { ConsumerSpec, StreamIntoReport } from '../transport/stream.js';
import { verify } from '../verify/verify.js';
import type { VerifyReport } from '../verify/verify.js';
import { asideDatadirName, datadirRefusal } from './joiner-datadir.js';
import { identity, setAsideManifest, writeManifest } from './manifest.js';
import { captureState } from './state-record.js';
import { HOST_STATE_LABEL } from './undo.js';
import { inPhase } from './outcome.js';
import type { RecordedState } from './undo.js';

const run = promisify(execFile);

export interface PhysicalOptions {
  parallel: number;
  /** the joiner holds data of its own: replace it anyway (without, such a joiner is refused) */
  force: boolean;
  /** why `force` holds when the user did not ask for it (the plan says so instead of "--force") */
  forceWhy?: string | undefined;
  /** leave the joiner writable (default: read_only=ON) */
  writable: boolean;
  /** the adaptive donor throttle for verification */
  throttle: boolean;
  compress: Codec;
  replicate: boolean;
  replicationUser: string | undefined;
  replicationPassword: string | undefined;
  /** where the joiner reaches the donor's mysqld for replication (default: the donor's address) */
  replicationHost: { host: string; port: number } | undefined;
  /** when the donor is a replica: the joiner follows the donor, or the donor's source */
  replicateFrom: 'donor' | 'source';
  catchupTimeoutMs: number;
  verify: boolean;
  dryRun: boolean;
  /** how long a stream that cannot be resumed (mariabackup) may stall before the clone fails */
  stallTimeoutMs: number;
  /** copy and snapshot: how long the data channel may be cut (no byte arriving) before the clone fails */
  resumeTimeoutMs: number;
  /** copy: the donor's mysqld is started again after this long down, whatever the pass */
  maxDowntimeMs: number;
  /** copy: the bounded wait for the donor's lock before it stops */
  lockWaitTimeoutMs: number;
  /** copy: the joiner's own datadir is an older copy of the donor's: the first pass is a delta against it */
  delta: boolean;
  /** copy: a cap on the donor agent's reads of its datadir, bytes/s */
  maxRate?: number | undefined;
  /** snapshot: the watchdog ends the donor's read lock after this */
  maxLockTimeMs: number;
  /** snapshot: this joiner's name on the donor (its base snapshot is kept under it) */
  replicaName: string;
  /**
   * snapshot, `reseed refresh`: auto takes the cheapest way (replication catching up alone, an
   * incremental send against the kept bases, else a full send); full always sends it whole
   */
  refresh?: 'auto' | 'full' | undefined;
}

export interface PhysicalCloneRequest {
  method: 'mariabackup' | 'copy' | 'snapshot';
  /** the donor's agent, which serves the backup, the copy or the snapshot */
  donorAgent: AgentClient;
  /** the donor's mysqld, from this host, with this agent's account (which the copy brings along) */
  donor: Endpoint;
  joiner: Endpoint;
  datadir: string;
  service: ServiceControl;
  options: PhysicalOptions;
  journal: Journal;
  log: Logger;
  signal: AbortSignal;
  manifestDir: string;
  emit(event: ProgressEvent | { type: string; [k: string]: unknown }): void;
  setState(state: 'preflight' | 'copying' | 'preparing' | 'swapping' | 'replicating' | 'verifying'): void;
}

export interface PhysicalSummary {
  method: string;
  plan: string[];
  dryRun: boolean;
  bytes: number;
  wireBytes: number;
  streamDigest: string;
  coordinates: BinlogInfo | undefined;
  donorCommitBlockedMs: number;
  donorDdlBlockedMs: number;
  /** copy: how long the donor's mysqld was down (stopped for the second pass) */
  donorDownMs?: number;
  /** copy: bytes of the second pass the joiner already held from the first (not sent) */
  reusedBytes?: number;
  /** copy: bytes of the first pass (the live datadir) */
  firstPassBytes?: number;
  /** copy --delta: bytes of the first pass equal in the joiner's datadir, copied from it and not sent */
  firstPassReusedBytes?: number;
  /** copy: files unchanged since the first pass (inode, size, times), not read again in the second */
  unchangedFiles?: number;
  /** snapshot: the filesystem, the snapshot sent and the donor's read lock around it */
  snapshot?: {
    fs: string;
    name: string;
    lockHeldMs: number;
    lockWaitMs: number;
    received: string;
    /** an incremental send: the base it was sent against, and what a full send would have carried */
    base?: string | undefined;
    fullBytes?: number | undefined;
    /** the name the donor keeps it under, as the base of this replica's next refresh */
    keptAs?: string | undefined;
    /** times its send was asked again from the last byte received, after a cut */
    resumes: number;
  };
  /** `reseed refresh`: the way it took, and why */
  refresh?: { mode: RefreshMode; why: string };
  replication: {
    state: 'running' | 'not configured';
    from?: string;
    catchUpMs?: number;
    /** --replicate-from source: the GTID position it started from (the donor's in its source's stream) */
    startedAt?: string;
  };
  verify: { identical: boolean; tables: number; chunks: number; rows: number } | undefined;
  phases: Record<string, number>;
  durationMs: number;
  manifest: string | undefined;
  /** the joiner's old datadir, removed once the clone stood */
  removed: string;
}

interface Sides {
  donor: Server;
  joiner: Server;
  donorFacts: ServerFacts;
  joinerFacts: ServerFacts;
}

/**
 * A whole-datadir clone with mariadb-backup, run by the joiner's agent: preflight (one line per
 * problem, nothing changed), stream the donor agent's backup into `mbstream -x` in a staging
 * directory beside the datadir, prepare it, then swap: mysqld stopped, the old datadir renamed
 * aside, the prepared one renamed in, mysqld started; then replication from the backup's GTID,
 * catch-up, verification, the journal's commit and the manifest, and only then the old datadir
 * removed. Each step is journaled before it acts: a failure, a cancel or a crash of the agent
 * puts the old datadir back and starts mysqld on it, and the joiner is compared with its state
 * before (data checksums, schemas, accounts, replication, and the host's datadir by inode).
 */
export async function physicalClone(request: PhysicalCloneRequest): Promise<PhysicalSummary> {
  let req = request;
  const started = Date.now();
  const { journal, signal, options, emit } = req;
  const phases: Record<string, number> = {};
  const datadir = resolve(req.datadir);
  req.setState('preflight');
  emit({ type: 'phase', phase: 'preflight' });
  const sides = await openSides(req);
  // snapshot: the donor's snapshot kept as this replica's base once the clone stands, else removed
  let finishSnapshot: ((keep: boolean) => Promise<string | undefined>) | undefined;
  let committed = false;
  let result: PhysicalSummary | undefined;
  try {
    const refresh = options.refresh ? await chooseRefresh(req, sides, datadir) : undefined;
    if (refresh?.mode === 'catch-up') return await catchUpOnly(req, sides, refresh, started);
    // A refresh replaces a replica this donor seeded (it holds the donor's base): no --force
    // needed, unless the joiner holds schemas the donor has not (its own reports, say).
    if (refresh?.mode === 'incremental' && !options.force) {
      const donorSchemas = new Set(await listSchemas(sides.donor, signal));
      const own = (await listSchemas(sides.joiner, signal)).filter((x) => !donorSchemas.has(x));
      if (own.length === 0)
        req = {
          ...req,
          options: {
            ...options,
            force: true,
            forceWhy:
              "an incremental refresh of a replica this donor seeded (it holds only the donor's schemas)",
          },
        };
    }
    const pre = await preflightPhysical(req, sides, datadir);
    const { estimate, bufferPool, joinerVolume } = pre;
    const plan = refresh ? [`refresh: ${refresh.mode}: ${refresh.why}`, ...pre.lines] : pre.lines;
    emit({
      type: 'plan',
      lines: plan,
      dryRun: options.dryRun,
      phases: [
        'preflight',
        'copy',
        ...(req.method === 'mariabackup' ? ['prepare'] : []),
        'swap',
        ...(options.replicate ? ['replicate'] : []),
        ...(options.verify ? ['verify'] : []),
      ],
    });
    const summary: PhysicalSummary = (result = {
      method: req.method,
      plan,
      dryRun: options.dryRun,
      bytes: 0,
      wireBytes: 0,
      streamDigest: '',
      coordinates: undefined,
      donorCommitBlockedMs: 0,
      donorDdlBlockedMs: 0,
      replication: { state: 'not configured' },
      verify: undefined,
      phases,
      durationMs: 0,
      manifest: undefined,
      removed: '',
      ...(refresh ? { refresh: { mode: refresh.mode, why: refresh.why } } : {}),
    });
    if (options.dryRun) return { ...summary, durationMs: Date.now() - started };

    // The state to come back to: the joiner's schemas, tables, objects, accounts and replication,
    // and on its host the datadir (by inode), the staging path, mysqld running and answering.
    // Its rows are not checksummed (CHECKSUM TABLE reads every row: hours before a large replica's
    // clone could begin): they live in the datadir, which this clone never writes (the copy goes
    // to staging, the old datadir is renamed aside whole and renamed back), and the host state
    // proves by its inode that the datadir that comes back is that one.
    const before: RecordedState = {
      donor: await captureState(sides.donor, {
        flavor: sides.donorFacts.flavor,
        dataSchemas: [],
        schemas: false,
        accounts: false,
        signal,
      }),
      joiner: await captureState(sides.joiner, {
        flavor: sides.joinerFacts.flavor,
        dataSchemas: [],
        schemas: true,
        accounts: true,
        signal,
      }),
      dataSchemas: [],
      accounts: true,
    };
    journal.keepState('before', before);
    const staging = join(dirname(datadir), `${basename(datadir)}.reseed-new-${journal.header.id}`);
    const aside = asideDatadirName(datadir, journal.header.id);
    journal.keepState(HOST_STATE_LABEL, {
      joiner: await captureHostState(
        { paths: [datadir, staging, aside], service: req.service.spec, listen: listenOf(req.joiner) },
        signal,
      ),
    });
    sides.joiner.destroy();
    // A half-done clone must not look completed: the last clone's manifest goes aside first.
    const oldManifest = await setAsideManifest(sides.joinerFacts, journal, req.manifestDir);

    // Copy: the donor's backup stream, extracted as it arrives.
    req.setState('copying');
    emit({ type: 'phase', phase: 'copy' });
    let t = Date.now();
    const marker = `.reseed-made-${journal.header.id}`;
    if (req.method !== 'snapshot')
      await journal.apply(
        `make the staging directory ${staging}`,
        hostUndo('joiner', { kind: 'remove-made-directory', path: staging, marker }),
        async () => {
          await makeDirectoryLike(datadir, staging, signal);
          writeFileSync(join(staging, marker), `made by reseed, journal ${journal.header.id}\n`);
        },
      );
    let coordinates: BinlogInfo | undefined;
    let stagingVolume: Volume | undefined;
    if (req.method === 'snapshot') {
      const got = await inPhase('COPY_FAILED', () =>
        copySnapshot(req, staging, joinerVolume!, refresh?.base),
      );
      const { coordinates: c, volume, finish, ...rest } = got;
      finishSnapshot = finish;
      Object.assign(summary, rest);
      coordinates = c;
      stagingVolume = volume;
      phases.copy = Date.now() - t;
      faultPoint('physical-copied');
    } else if (req.method === 'copy') {
      const copied = await inPhase('COPY_FAILED', () => copyDatadir(req, staging, marker));
      const { coordinates: c, ...rest } = copied;
      Object.assign(summary, rest);
      coordinates = c;
      // The donor's mysqld was restarted: the session opened at preflight died with it.
      sides.donor.destroy();
      sides.donor = await connect(req.donor);
      phases.copy = Date.now() - t;
      faultPoint('physical-copied');
    } else {
      const copied = await inPhase('COPY_FAILED', () => copyBackup(req, staging, estimate));
      Object.assign(summary, copied);
      phases.copy = Date.now() - t;
      faultPoint('physical-copied');

      // Prepare: the redo applied, a consistent datadir.
      req.setState('preparing');
      emit({ type: 'phase', phase: 'prepare' });
      t = Date.now();
      await prepare(req, staging, bufferPool);
      const infoFile = join(staging, 'xtrabackup_binlog_info');
      coordinates = existsSync(infoFile) ? parseBinlogInfo(readFileSync(infoFile, 'utf8')) : undefined;
      phases.prepare = Date.now() - t;
      faultPoint('physical-prepared');
    }
    summary.coordinates = coordinates;
    if (options.replicate && !coordinates?.gtid)
      throw new ReseedError(
        'COPY_FAILED',
        req.method === 'copy'
          ? "the donor's agent reported no GTID position: replication cannot start from the copy"
          : 'the backup holds no GTID position (xtrabackup_binlog_info is missing or has none): replication cannot start from it',
      );
    // A binary log shipped with the backup belongs to the donor's numbering, not the joiner's.
    // (A snapshot's binary log stays for the first start's crash recovery; RESET MASTER removes it.)
    if (req.method !== 'snapshot' && coordinates?.file && existsSync(join(staging, coordinates.file)))
      rmSync(join(staging, coordinates.file));

    // Swap: the old datadir aside, the new one in, mysqld on it.
    req.setState('swapping');
    emit({ type: 'phase', phase: 'swap' });
    t = Date.now();
    const owner = statSync(datadir);
    chownTree(staging, owner.uid, owner.gid);
    chmodSync(staging, owner.mode & 0o7777);
    // mysqld started again on the old datadir takes read_only from its configuration: an undo
    // journaled before the stop runs after the restart and sets it back as it was.
    if (before.joiner.readOnly)
      await journal.apply(
        "keep the joiner's read_only=ON (set again if the clone is undone)",
        { target: 'joiner', statements: ['SET GLOBAL read_only = ON'] },
        () => Promise.resolve(),
      );
    if ((await req.service.status(signal)).running)
      await journal.apply(
        `stop the joiner's mysqld (${req.service.description})`,
        // A replica stopped by hand stays stopped when mysqld starts again on its own datadir:
        // started, it would apply what its DBA was holding back.
        hostUndo('joiner', {
          kind: 'start-service',
          service: req.service.spec,
          skipReplicaStart: !before.joiner.replication.some((r) => r.ioOn || r.sqlOn),
        }),
        () => req.service.stop(signal),
      );
    faultPoint('physical-stopped');
    await moveJournaled(req, `move the joiner's datadir aside to ${aside}`, datadir, aside, joinerVolume);
    await moveJournaled(
      req,
      `move the ${req.method === 'mariabackup' ? 'prepared ' : ''}copy into place as ${datadir}`,
      staging,
      datadir,
      stagingVolume,
    );
    faultPoint('physical-swapped');
    await journal.apply(
      `start the joiner's mysqld on the new datadir`,
      hostUndo('joiner', { kind: 'stop-service', service: req.service.spec }),
      () => req.service.start(signal),
    );
    phases.swap = Date.now() - t;
    faultPoint('physical-started');

    const joiner = await connect(req.joiner, { init: ['SET SESSION sql_log_bin = 0'] }).catch(
      (err: unknown) => {
        throw new ReseedError(
          'REPLICATION_FAILED',
          `the cloned joiner does not let this agent's account ${req.joiner.user} log in: ${errorMessage(err)}`,
          {
            cause: err,
            hints: [
              "a physical copy brings the donor's accounts: the joiner agent's mysql account must exist on the donor with the same password",
            ],
          },
        );
      },
    );
    try {
      if (options.replicate) {
        req.setState('replicating');
        emit({ type: 'phase', phase: 'replicate' });
        t = Date.now();
        summary.replication = await inPhase('REPLICATION_FAILED', () =>
          startReplication(req, sides, joiner, coordinates!),
        );
        phases.replicate = Date.now() - t;
        faultPoint('physical-caught-up');
      } else {
        // The donor's replica settings came along in mysql.gtid_slave_pos: nothing replicates.
        await joiner.query("SET GLOBAL gtid_slave_pos = ''", [], signal).catch(() => undefined);
        // A snapshot's binary log is the donor's history, kept only for the first start's recovery.
        if (req.method === 'snapshot') {
          const [lb] = await joiner.query('SELECT @@log_bin AS b', [], signal);
          if (Number(lb?.b ?? 0)) await joiner.query(sides.joinerFacts.flavor.resetBinlogSql, [], signal);
        }
      }
      if (!options.writable) await joiner.query('SET GLOBAL read_only = ON', [], signal);
      if (options.verify) {
        req.setState('verifying');
        emit({ type: 'phase', phase: 'verify' });
        t = Date.now();
        // A joiner that follows the donor's source is compared with that source (held at its
        // snapshot); compared live with the donor, both moving on, it would differ under writes.
        const fromSource = options.replicate && options.replicateFrom === 'source';
        const to = replicationTarget(req, sides.donorFacts);
        const against = fromSource ? { ...req.donor, host: to.host, port: to.port } : req.donor;
        let schemas = await listSchemas(sides.donor, signal);
        if (fromSource) {
          const source = await connect(against);
          try {
            const there = new Set(await listSchemas(source, signal));
            const donorOnly = schemas.filter((x) => !there.has(x));
            schemas = schemas.filter((x) => there.has(x));
            emit({
              type: 'note',
              message: `verify: the joiner follows the donor's source ${to.host}:${to.port}, so it is compared with that source${donorOnly.length ? `; schemas only the donor has are not compared: ${donorOnly.join(', ')}` : ''}`,
            });
          } finally {
            await source.close();
          }
        }
        const report: VerifyReport = await inPhase('VERIFY_FAILED', () =>
          verify({
            donor: against,
            joiner: req.joiner,
            schemas,
            parallel: Math.max(1, Math.min(4, options.parallel)),
            chunkRows: 100_000,
            lockMode: 'auto',
            readLock: DEFAULT_READ_LOCK_POLICY,
            catchupTimeoutMs: options.catchupTimeoutMs,
            log: req.log,
            progress: { emit },
            signal,
            journal,
            replicaConnection: undefined,
            throttle: { ...DEFAULT_THROTTLE, adaptive: options.throttle },
          }),
        );
        phases.verify = Date.now() - t;
        summary.verify = {
          identical: report.ok,
          tables: report.tables,
          chunks: report.chunks,
          rows: report.rows,
        };
        if (!report.ok)
          throw new ReseedError(
            'CHECKSUM_MISMATCH',
            `verification found ${report.differences.length} difference(s) between donor and joiner`,
            {
              hints: report.differences.slice(0, 10).map((d) => `${d.what}: ${d.detail}`),
            },
          );
        faultPoint('physical-verified');
      }
      // Proven. From here on nothing is rolled back; the old datadir goes, then the manifest is written.
      journal.commit();
      committed = true;
      rmSync(join(datadir, marker), { force: true });
      await removeAside(req, aside, joinerVolume, summary.snapshot?.received).catch((err: unknown) =>
        emit({
          type: 'warning',
          message: `the clone stands, but the old datadir ${aside} could not be removed: ${errorMessage(err)}`,
        }),
      );
      summary.removed = aside;
      summary.durationMs = Date.now() - started;
      try {
        summary.manifest = writeManifest(
          {
            format: 1,
            id: journal.header.id,
            method: req.method,
            startedAt: new Date(started).toISOString(),
            completedAt: new Date().toISOString(),
            donor: identity(publicEndpoint(req.donor), sides.donorFacts),
            joiner: identity(publicEndpoint(req.joiner), sides.joinerFacts),
            coordinates: coordinates && {
              flavor: 'mariadb',
              gtid: coordinates.gtid,
              binlog: { file: coordinates.file, position: coordinates.position },
            },
            schemas: await listSchemas(sides.donor, signal).catch(() => []),
            tables: summary.verify?.tables ?? 0,
            rows: summary.verify?.rows ?? 0,
            bytes: summary.bytes,
            lockMode:
              req.method === 'copy' ? 'shutdown' : req.method === 'snapshot' ? 'snapshot' : 'backup-stage',
            lockHeldMs: summary.donorCommitBlockedMs,
            replication: {
              state: summary.replication.state,
              from: summary.replication.from,
              mode: 'gtid',
              catchUpMs: summary.replication.catchUpMs,
              startedAt: summary.replication.startedAt,
            },
            verify: summary.verify && { ...summary.verify, position: coordinates?.gtid ?? '' },
            phases,
            durationMs: summary.durationMs,
          },
          req.manifestDir,
        );
        if (oldManifest) rmSync(oldManifest, { force: true });
      } catch (err) {
        emit({
          type: 'warning',
          message: `the clone completed, but its manifest could not be written: ${errorMessage(err)}`,
        });
      }
      return summary;
    } finally {
      await joiner.close();
    }
  } finally {
    // The summary is returned already, but not yet recorded: the base's name joins it.
    const keptAs = await finishSnapshot?.(committed);
    if (keptAs && result?.snapshot) result.snapshot.keptAs = keptAs;
    sides.donor.destroy();
    sides.joiner.destroy();
  }
}

async function openSides(req: PhysicalCloneRequest): Promise<Sides> {
  const donor = await connect(req.donor).catch((err: unknown) => {
    if (/ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND/.test(errorMessage(err)))
      throw new ReseedError(
        'CONNECT_FAILED',
        `the donor's mysqld does not answer at ${req.donor.host}:${req.donor.port}: ${errorMessage(err)}; nothing was changed`,
        { cause: err, hints: ['is it running? (its agent answers, so the host is up)'] },
      );
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `this agent cannot log in to the donor's mysqld at ${req.donor.host}:${req.donor.port} as ${req.donor.user}: ${errorMessage(err)}`,
      {
        cause: err,
        hints: [
          "a physical copy brings the donor's accounts to the joiner: the joiner agent's mysql account must exist on the donor, with the same password, and be allowed from the joiner's host",
        ],
      },
    );
  });
  try {
    const joiner = await connect(req.joiner);
    try {
      return {
        donor,
        joiner,
        donorFacts: await inspect(donor, req.signal),
        joinerFacts: await inspect(joiner, req.signal),
      };
    } catch (err) {
      joiner.destroy();
      throw err;
    }
  } catch (err) {
    donor.destroy();
    throw err;
  }
}

async function variables(s: Server, names: string[], signal: AbortSignal): Promise<Record<string, string>> {
  const rows = await s.query(
    `SELECT VARIABLE_NAME AS n, VARIABLE_VALUE AS v FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME IN (${names.map(() => '?').join(', ')})`,
    names.map((n) => n.toUpperCase()),
    signal,
  );
  return Object.fromEntries(rows.map((r) => [String(r.n).toLowerCase(), String(r.v ?? '')]));
}

/** A tool's version as it prints it (mariadb-backup on stderr; mbstream only in --help), or undefined when it is missing. */
async function toolVersion(tool: string, arg = '--version'): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await run(tool, [arg]);
    const text = `${stdout}\n${stderr}`;
    return /(\d+\.\d+\.\d+)-MariaDB/.exec(text)?.[1] ?? /Ver\s+(\S+)/.exec(text)?.[1] ?? text.trim();
  } catch {
    return undefined;
  }
}

const series = (v: string) => v.split('.').slice(0, 2).join('.');

/** Every problem on its own line, before anything changes; the plan when there is none. */
async function preflightPhysical(
  req: PhysicalCloneRequest,
  s: Sides,
  datadir: string,
): Promise<{ lines: string[]; estimate: number; bufferPool: number; joinerVolume: Volume | undefined }> {
  const { signal, options } = req;
  const problems: string[] = [];
  const d = s.donorFacts;
  const j = s.joinerFacts;
  if (d.flavor.name !== 'mariadb' || j.flavor.name !== 'mariadb')
    problems.push(
      `--method ${req.method} needs MariaDB on both sides (donor ${d.version.text}, joiner ${j.version.text})`,
    );
  if (series(d.version.text) !== series(j.version.text))
    problems.push(
      `the donor runs ${d.version.text} and the joiner ${j.version.text}: a physical copy needs the same series (use --method logical across versions)`,
    );
  if (d.serverId === j.serverId && d.hostname === j.hostname && d.port === j.port)
    problems.push('the donor and the joiner are the same server');
  else if (d.serverId === j.serverId)
    problems.push(
      `the donor and the joiner have the same server_id ${d.serverId}: replication needs them to differ`,
    );
  if (req.method === 'mariabackup') {
    const tool = await toolVersion('mariadb-backup');
    if (!tool)
      problems.push(
        "mariadb-backup is not installed on the joiner's host (Debian: apt install mariadb-backup)",
      );
    else if (series(tool) !== series(d.version.text))
      problems.push(
        `the joiner's mariadb-backup is ${tool}; it cannot prepare a backup of ${d.version.text}: install the same series`,
      );
    if (!(await toolVersion('mbstream', '--help')))
      problems.push("mbstream is not installed on the joiner's host (it comes with mariadb-backup)");
  } else if (req.method === 'copy') {
    const health = await req.donorAgent
      .call<{ name: string; servesCopy?: boolean }>('GET', '/v1/health', undefined, signal)
      .catch((err: unknown) => ({ name: 'the donor', servesCopy: undefined, error: errorMessage(err) }));
    if (!health.servesCopy)
      problems.push(
        `the donor's agent ${health.name} cannot serve --method copy: it stops and starts its mysqld, so it needs datadir and service in its configuration`,
      );
  }
  let joinerVolume: Volume | undefined;
  if (req.method === 'snapshot') {
    const health = await req.donorAgent
      .call<{
        name: string;
        snapshot?: { fs: 'btrfs' | 'zfs' | null; refusal: string | null };
      }>('GET', '/v1/health', undefined, signal)
      .catch(() => ({ name: 'the donor', snapshot: undefined }));
    const donorFs = health.snapshot?.fs;
    if (!health.snapshot)
      problems.push(`the donor's agent ${health.name} cannot serve --method snapshot (an earlier version)`);
    else if (!donorFs)
      problems.push(
        `the donor's agent ${health.name} cannot serve --method snapshot: ${health.snapshot.refusal ?? ''}`,
      );
    const v = await volumeAt(datadir, signal);
    if (typeof v === 'string') problems.push(`the joiner: ${v}`);
    else {
      joinerVolume = v;
      if (donorFs && v.fs !== donorFs)
        problems.push(
          `the donor's datadir is on ${donorFs} and the joiner's on ${v.fs}: a snapshot stream is received by the same filesystem`,
        );
      if (v.fs === 'zfs' && !v.dataset!.includes('/'))
        problems.push(
          `the joiner's datadir is the root dataset of pool ${v.dataset}: reseed keeps the received snapshot and the new datadir beside it, so it must be a dataset of its own (zfs create ${v.dataset}/data)`,
        );
    }
  }
  const names = [
    'innodb_page_size',
    'lower_case_table_names',
    'innodb_data_home_dir',
    'innodb_log_group_home_dir',
    'innodb_undo_directory',
    'innodb_encrypt_tables',
    'innodb_buffer_pool_size',
    'binlog_expire_logs_seconds',
    'innodb_undo_tablespaces',
    'datadir',
  ];
  const dv = await variables(s.donor, names, signal);
  const jv = await variables(s.joiner, names, signal);
  for (const v of [
    'innodb_page_size',
    'lower_case_table_names',
    ...(req.method !== 'mariabackup' ? ['innodb_undo_tablespaces'] : []),
  ])
    if (dv[v] !== jv[v]) problems.push(`${v} differs: donor ${dv[v]}, joiner ${jv[v]}`);
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  const innodbDirs = ['innodb_data_home_dir', 'innodb_log_group_home_dir', 'innodb_undo_directory'];
  const outside = (dir: string, value: string | undefined) =>
    Boolean(value) && value !== './' && value !== '.' && !real(resolve(dir, value!)).startsWith(real(dir));
  // The copy and the snapshot send the donor's datadir only: InnoDB files kept elsewhere would be missing.
  if (req.method !== 'mariabackup')
    for (const v of innodbDirs.filter((v) => outside(dv.datadir ?? d.datadir, dv[v])))
      problems.push(
        `the donor keeps InnoDB files outside its datadir (${v} = ${dv[v]}): --method ${req.method} sends the datadir only (use --method mariabackup)`,
      );
  if ((dv.innodb_encrypt_tables ?? 'OFF') !== 'OFF')
    problems.push(
      `the donor encrypts InnoDB tables: reseed does not yet carry the key management ${req.method === 'copy' ? 'the joiner would need to read them' : 'a prepare needs'} (use --method logical)`,
    );
  if (real(j.datadir) !== real(datadir))
    problems.push(
      `the joiner's mysqld uses the datadir ${j.datadir}, but this agent's configuration says ${datadir}`,
    );
  for (const v of innodbDirs.filter((v) => outside(j.datadir, jv[v])))
    problems.push(
      `the joiner keeps InnoDB files outside its datadir (${v} = ${jv[v]}): reseed swaps the datadir only`,
    );
  // A ZFS dataset is moved by its mountpoint: the snapshot method's datadir is one.
  const refusal = joinerVolume?.fs === 'zfs' ? undefined : datadirRefusal(datadir);
  if (refusal) problems.push(refusal);
  // Room for the copy beside the datadir (staging, then the swap is a rename).
  const [size] = await s.donor.query(
    "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH + DATA_FREE), 0) AS b FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'",
    [],
    signal,
  );
  const need = Number(size?.b ?? 0) * 1.2 + 512 * 1024 * 1024;
  // btrfs frees a deleted subvolume's blocks in the background (the last clone's old datadir and
  // base): wait for that (bounded) before reading the free space.
  if (joinerVolume?.fs === 'btrfs')
    await runTool('btrfs', ['subvolume', 'sync', dirname(datadir)], {
      signal: AbortSignal.any([signal, AbortSignal.timeout(60_000)]),
    }).catch(() => undefined);
  try {
    const fs = statfsSync(dirname(datadir));
    const free = fs.bavail * fs.bsize;
    if (free < need)
      problems.push(
        `${dirname(datadir)} has ${gib(free)} free; the copy needs about ${gib(need)} beside the joiner's datadir`,
      );
  } catch (err) {
    problems.push(`cannot read the free space of ${dirname(datadir)}: ${errorMessage(err)}`);
  }
  // A whole-datadir copy drops everything the joiner holds: only with --force, and the plan names it.
  const own = await s.joiner.query(
    `SELECT TABLE_SCHEMA AS s, COUNT(*) AS n FROM information_schema.TABLES
      WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
      GROUP BY TABLE_SCHEMA ORDER BY 1`,
    [],
    signal,
  );
  const held = own.map((r) => `${String(r.s)} (${Number(r.n)} tables)`);
  if (held.length && !options.force)
    problems.push(
      `the joiner holds data of its own, in ${held.join(', ')}: a physical copy replaces its whole datadir; use --force to replace it (the old datadir is kept until the clone is proven, then removed)`,
    );
  if (options.replicate && options.replicateFrom === 'source' && !d.replica)
    problems.push('--replicate-from source: the donor is not a replica, so it has no source to follow');
  if (options.replicate && options.replicateFrom === 'donor' && d.replica && !d.logSlaveUpdates)
    problems.push(
      'the donor is a replica without log_slave_updates: what it replicates would never reach the joiner; use --replicate-from source or enable log_slave_updates',
    );
  if (options.replicate && options.replicateFrom === 'source' && d.replica) {
    // This agent waits for the joiner to catch up with the source: its account must log in there.
    const at = replicationTarget(req, d);
    const probe = await connect(
      { ...req.donor, host: at.host, port: at.port },
      { connectTimeoutMs: 5000 },
    ).catch((err: unknown) => errorMessage(err));
    if (typeof probe === 'string')
      problems.push(
        `--replicate-from source: this agent's account ${req.donor.user} cannot log in to the donor's source ${at.host}:${at.port} (${probe}); it waits there for the joiner to catch up`,
      );
    else probe.destroy();
  }
  if (options.replicate) {
    if (!d.logBin && options.replicateFrom === 'donor')
      problems.push(
        'the donor does not write a binary log (log_bin is OFF): the joiner could not replicate from it (or pass --no-replicate)',
      );
    const expire = Number(dv.binlog_expire_logs_seconds ?? 0);
    // A backup streamed at 50 MB/s, prepared and caught up: the donor's binlogs must outlive that.
    const expected = need / 50e6 + options.catchupTimeoutMs / 1000;
    if (options.replicateFrom === 'donor' && expire > 0 && expire < expected * 2)
      problems.push(
        `the donor purges its binary logs after ${expire} s (binlog_expire_logs_seconds), less than twice the expected copy and catch-up time (${Math.round(expected)} s): the joiner could find its GTID purged`,
      );
    // `refresh --plan` shows the way it would take without the replication account.
    const planOnly = options.refresh !== undefined && options.dryRun;
    if (!options.replicationUser) {
      if (!planOnly)
        problems.push(
          'replication needs --replication-user (an account on the donor with REPLICATION SLAVE)',
        );
    } else if (options.replicationPassword === undefined) {
      if (!planOnly)
        problems.push(
          `no password for the replication account ${options.replicationUser}: set RESEED_REPLICATION_PASSWORD or pass --replication-defaults-file`,
        );
    } else {
      const where = replicationTarget(req, d);
      const check = await checkAccountFromHere(
        {
          host: where.host,
          port: where.port,
          user: options.replicationUser,
          password: options.replicationPassword,
        },
        undefined,
        signal,
      ).catch((err: unknown): { problem?: string; warning?: string } => ({ problem: errorMessage(err) }));
      if (check.problem) problems.push(check.problem);
      // This agent runs on the joiner's host: what it cannot reach, the joiner's replication cannot.
      else if (check.warning)
        problems.push(
          `the joiner cannot replicate from ${where.host}:${where.port}: ${check.warning.replace(/^the replication account could not be checked from this host \(/, '').replace(/\); the joiner already replicates from there$/, '')}`,
        );
    }
  }
  if (problems.length)
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `${problems.length} problem(s) forbid this clone; nothing was changed`,
      { hints: problems },
    );
  const to = replicationTarget(req, d);
  const estimate = Number(size?.b ?? 0);
  const how =
    req.method === 'snapshot'
      ? [
          `method snapshot: a read-only ${joinerVolume?.fs ?? ''} snapshot of the donor ${d.hostname}:${d.port} (${d.version.text})'s datadir, taken under a read lock (commits blocked, at most ${Math.round(options.maxLockTimeMs)} ms: --max-lock-time), sent to the joiner's agent (${joinerVolume?.fs === 'zfs' ? 'zfs send | zfs recv' : 'btrfs send | btrfs receive'}) and kept there read-only as the base of a later refresh`,
          "mysqld starts on a writable copy of it: InnoDB's crash recovery makes it consistent, as after a power cut at the snapshot's instant",
          `the donor keeps the snapshot as ${options.replicaName}'s base (reseed-base-${options.replicaName}, the previous one removed); the donor's relay logs and replication settings are removed from the joiner's copy, and its binary log, needed by the first start's crash recovery, is emptied by RESET MASTER before replication starts`,
        ]
      : req.method === 'copy'
        ? [
            `method copy: the donor ${d.hostname}:${d.port} (${d.version.text})'s datadir sent twice to the joiner's agent, beside the joiner's datadir: first while it serves (a base, not consistent), then after a clean shutdown only the blocks that changed`,
            `THE DONOR'S MYSQLD IS STOPPED for the second pass (no reads, no writes): commits are blocked from the lock before the stop until it answers again, at most ${Math.round(options.maxDowntimeMs / 1000)} s (--max-downtime; then it is started again and the clone fails); the times are reported`,
            "the donor's binary and relay logs, replication settings, pid file and logs stay on the donor",
          ]
        : [
            `method mariabackup: a hot physical copy of the donor ${d.hostname}:${d.port} (${d.version.text}) streamed to the joiner's agent, extracted beside the datadir and prepared there`,
            'the donor keeps serving: DDL is blocked from BACKUP STAGE BLOCK_DDL and commits during BLOCK_COMMIT only (the times are reported)',
          ];
  const lines = [
    ...how,
    `it replaces the joiner's whole datadir ${datadir}: its accounts and passwords, system tables and replication state become the donor's`,
    `the joiner's mysqld (${req.service.description}) is stopped for the swap; the old datadir is kept as ${basename(asideDatadirName(datadir, req.journal.header.id))} and comes back on failure, removed only once the clone is proven`,
    options.replicate
      ? options.replicateFrom === 'source'
        ? `replicate from the donor's source ${to.host}:${to.port} as ${options.replicationUser}, from the donor's position in its stream as the copy holds it (mysql.gtid_slave_pos; MASTER_USE_GTID=slave_pos)`
        : `replicate from ${to.host}:${to.port} as ${options.replicationUser} from the ${req.method === 'mariabackup' ? "backup's" : `${req.method}'s`} GTID position (MASTER_USE_GTID=slave_pos)`
      : 'no replication (--no-replicate): the copy stands alone',
    options.verify
      ? 'verify: every table checksummed on both sides once caught up'
      : 'no verification (--no-verify)',
    options.writable
      ? 'the joiner is left writable (--writable)'
      : 'the joiner is left read-only (read_only=ON)',
    ...(held.length
      ? [`${options.forceWhy ?? '--force'}: the joiner's own data is replaced: ${held.join(', ')}`]
      : []),
  ];
  return { lines, estimate, bufferPool: Number(jv.innodb_buffer_pool_size ?? 0), joinerVolume };
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

function listenOf(e: Endpoint): { host: string; port: number } | { socketPath: string } {
  return e.socketPath ? { socketPath: e.socketPath } : { host: e.host, port: e.port };
}

/** The donor agent's backup, through the data channel, into `mbstream -x` as it arrives. */
async function copyBackup(req: PhysicalCloneRequest, staging: string, estimate: number) {
  const { signal, options } = req;
  const opened = await req.donorAgent.call<{ id: string; secret: string }>(
    'POST',
    '/v1/backups',
    { parallel: options.parallel, idleTimeoutMs: options.stallTimeoutMs * 3 },
    signal,
  );
  try {
    const extract = {
      command: 'mbstream',
      args: ['-x', '-C', staging, '-p', String(Math.max(1, options.parallel))],
    };
    const received = await pullInto(req, 'backups', opened, extract, (bytes, wireBytes) => {
      // The total is the donor's tables as information_schema sizes them: an estimate.
      req.emit({ type: 'progress', phase: 'copy', bytes, wireBytes, totalBytes: Math.max(estimate, bytes) });
      faultPoint('physical-streaming');
    });
    const report = await req.donorAgent.call<{
      commitBlockedMs: number;
      ddlBlockedMs: number;
      state: string;
      error?: string;
    }>('GET', `/v1/backups/${opened.id}`, undefined, signal);
    if (report.state !== 'done')
      throw new ReseedError('COPY_FAILED', `the donor's backup ended ${report.state}: ${report.error ?? ''}`);
    req.emit({
      type: 'progress',
      phase: 'copy',
      bytes: received.bytes,
      wireBytes: received.wireBytes,
      donorCommitBlockedMs: report.commitBlockedMs,
    });
    return {
      bytes: received.bytes,
      wireBytes: received.wireBytes,
      streamDigest: received.digest,
      donorCommitBlockedMs: report.commitBlockedMs,
      donorDdlBlockedMs: report.ddlBlockedMs,
    };
  } finally {
    await req.donorAgent.call('DELETE', `/v1/backups/${opened.id}`).catch(() => undefined);
  }
}

/**
 * The copy method's two passes, served by the donor's agent: the live datadir first (best effort:
 * files change as they are read), then, with the donor's mysqld stopped cleanly, only the blocks
 * that differ; then the donor's mysqld is started again. Consistent without crash recovery: a
 * clean shutdown (innodb_fast_shutdown=1) has flushed every page and checkpointed the redo log,
 * and the second pass makes every file equal to the stopped donor's (proven by the tree hash).
 */
async function copyDatadir(req: PhysicalCloneRequest, staging: string, marker: string) {
  const { signal, options } = req;
  // The donor keeps the copy while a cut may still be resumed.
  const idleTimeoutMs = Math.max(options.stallTimeoutMs * 4, 60_000, options.resumeTimeoutMs + 10_000);
  const opened = await req.donorAgent.call<{
    id: string;
    hot: { id: string; secret: string; bytes: number };
  }>(
    'POST',
    '/v1/copies',
    {
      idleTimeoutMs,
      maxDowntimeMs: options.maxDowntimeMs,
      ...(options.maxRate !== undefined ? { maxRate: options.maxRate } : {}),
    },
    signal,
  );
  const source = (t: { id: string; secret: string }) => donorSource(req, t);
  let last = 0;
  const progress = (pass: 1 | 2) => (p: { bytes: number; totalBytes: number; wireBytes: number }) => {
    if (Date.now() - last < 500) return;
    last = Date.now();
    req.emit({
      type: 'progress',
      phase: 'copy',
      pass,
      bytes: p.bytes,
      totalBytes: p.totalBytes,
      wireBytes: p.wireBytes,
    });
    faultPoint(pass === 1 ? 'copy-first-pass' : 'copy-second-pass');
  };
  let frozen:
    | {
        cold: { id: string; secret: string };
        report: { coordinates?: { gtid: string; file: string; position: number; source: string } };
      }
    | undefined;
  let freezing = false;
  let thawed = false;
  try {
    const first = await receiveTreeInThread({
      source: source(opened.hot),
      dest: staging,
      marker,
      keepMarker: true,
      parallel: options.parallel,
      codec: options.compress,
      resumeTimeoutMs: options.resumeTimeoutMs,
      bestEffort: true,
      // The second pass need not read again what has not changed since.
      keepHashes: true,
      // --delta: blocks equal in the joiner's own datadir are copied from it (read only).
      base: options.delta ? resolve(req.datadir) : undefined,
      signal,
      onProgress: progress(1),
    });
    req.emit({
      type: 'note',
      message: `first pass done: ${formatBytes(first.bytes)}${first.skipped ? `, ${first.skipped} segment(s) changed while read (the second pass sends them)` : ''}; the donor's mysqld stops now for the second pass`,
    });
    // From here the donor's mysqld may be down, whatever the answer (its agent may die answering).
    freezing = true;
    frozen = await req.donorAgent
      .call<{
        cold: { id: string; secret: string };
        report: { coordinates?: { gtid: string; file: string; position: number; source: string } };
      }>('POST', `/v1/copies/${opened.id}/freeze`, { lockWaitTimeoutMs: options.lockWaitTimeoutMs }, signal)
      .catch((err: unknown) => {
        throw isReseedError(err) && err.code === 'CONNECT_FAILED'
          ? donorAgentGone('while it stopped its mysqld', err)
          : err;
      });
    const second = await receiveTreeOr(req, opened.id, {
      source: source(frozen.cold),
      dest: staging,
      marker,
      keepMarker: true,
      parallel: options.parallel,
      codec: options.compress,
      resumeTimeoutMs: options.resumeTimeoutMs,
      update: true,
      previous: first.segmentHashes,
      signal,
      onProgress: progress(2),
    });
    if (second.unchangedFiles)
      req.emit({
        type: 'note',
        message: `second pass: ${second.unchangedFiles} file(s) unchanged since the first pass (same inode, size and times) were not read again`,
      });
    const report = await req.donorAgent.call<{
      state: string;
      writesBlockedMs: number;
      downMs: number;
      error?: string;
    }>('POST', `/v1/copies/${opened.id}/thaw`, undefined, signal);
    thawed = true;
    if (report.state !== 'up')
      throw new ReseedError('COPY_FAILED', `the donor's copy ended ${report.state}: ${report.error ?? ''}`);
    req.emit({
      type: 'progress',
      phase: 'copy',
      pass: 2,
      bytes: second.bytes + second.reusedBytes,
      wireBytes: second.wireBytes,
      donorWritesBlockedMs: report.writesBlockedMs,
      donorDownMs: report.downMs,
    });
    const c = frozen.report.coordinates;
    return {
      bytes: first.bytes + second.bytes,
      wireBytes: first.wireBytes + second.wireBytes,
      firstPassBytes: first.bytes,
      firstPassReusedBytes: first.reusedBytes,
      reusedBytes: second.reusedBytes,
      unchangedFiles: second.unchangedFiles,
      streamDigest: second.treeHash,
      donorCommitBlockedMs: report.writesBlockedMs,
      donorDdlBlockedMs: report.writesBlockedMs,
      donorDownMs: report.downMs,
      coordinates: c ? { gtid: c.gtid, file: c.file, position: c.position } : undefined,
    };
  } finally {
    // A failure or a cancel after the freeze: the donor's mysqld is started again (thaw) and the
    // user told for how long it was down. When its agent is gone, the agent's guard starts it:
    // the rollback's comparison waits for it a while.
    const after =
      freezing && !thawed
        ? await req.donorAgent
            .call<{ downMs: number; writesBlockedMs: number; state: string }>(
              'POST',
              `/v1/copies/${opened.id}/thaw`,
            )
            .catch(() => undefined)
        : undefined;
    if (after && after.writesBlockedMs > 0)
      req.emit({
        type: 'warning',
        message:
          after.downMs > 0
            ? `the donor's mysqld was started again (${after.state}): it was down ${formatMs(after.downMs)}, writes blocked ${formatMs(after.writesBlockedMs)}`
            : `the donor's writes were blocked ${formatMs(after.writesBlockedMs)}; its mysqld was never stopped`,
      });
    const closed = await req.donorAgent.call('DELETE', `/v1/copies/${opened.id}`).then(
      () => true,
      () => false,
    );
    if (!closed && freezing && !after) await waitForDonor(req, 60_000);
  }
}

/** The donor's mysqld answering again (its agent's guard starts it when the agent died), or the time is up. */
async function waitForDonor(req: PhysicalCloneRequest, ms: number): Promise<void> {
  const answers = async () => {
    const s = await connect(req.donor, { connectTimeoutMs: 2000 }).catch(() => undefined);
    s?.destroy();
    return s !== undefined;
  };
  // The freeze may never have reached the agent: a mysqld that answers was not stopped.
  if (await answers()) return;
  req.emit({
    type: 'warning',
    message: `the donor's agent is gone and its mysqld does not answer: waiting up to ${ms / 1000} s for the agent's guard to start it`,
  });
  for (const until = Date.now() + ms; Date.now() < until; await sleep(500)) if (await answers()) return;
}

/** The donor's agent died (or its host went away) while its mysqld may be stopped. */
function donorAgentGone(when: string, err: unknown): ReseedError {
  return new ReseedError(
    'COPY_FAILED',
    `the donor's agent stopped answering ${when} (${errorMessage(err)})`,
    {
      cause: err,
      hints: [
        "its guard starts the donor's mysqld again on its own; start the donor's agent again too (a sandbox: reseed sandbox up NAME --agent)",
      ],
    },
  );
}

/** The second pass; when it fails, the donor agent's reason (its --max-downtime bound, a failed stop) is the error. */
async function receiveTreeOr(
  req: PhysicalCloneRequest,
  copy: string,
  o: ReceiveOptions,
): Promise<ReceiveReport> {
  try {
    return await receiveTreeInThread(o);
  } catch (err) {
    const report = await req.donorAgent
      .call<{ error?: string }>('GET', `/v1/copies/${copy}`)
      .catch(() => undefined);
    if (!report) throw donorAgentGone('during the second pass', err);
    if (report.error)
      throw new ReseedError('COPY_FAILED', `the donor's agent: ${report.error}`, { cause: err });
    throw err;
  }
}

export type RefreshMode = 'catch-up' | 'incremental' | 'full';

interface RefreshChoice {
  mode: RefreshMode;
  why: string;
  /** catch-up: the joiner's replication is stopped (without an error) and is started */
  start?: boolean | undefined;
  /** incremental: the snapshot this joiner received last, which the donor keeps too */
  base?: Snapshot | undefined;
}

/**
 * `reseed refresh` takes the cheapest way that works (Galera's IST before SST): replication
 * catching up alone when the joiner replicates from the donor without an error (the donor's
 * binary logs still hold its position: its I/O thread is connected); else an incremental send
 * when the donor keeps this replica's base and the joiner holds the same snapshot untouched; else
 * a full send. A base that differs or was made writable is refused unless --full.
 */
async function chooseRefresh(req: PhysicalCloneRequest, s: Sides, datadir: string): Promise<RefreshChoice> {
  const { signal, options } = req;
  if (options.refresh === 'full') return { mode: 'full', why: '--full: the whole snapshot is sent' };
  const flavor = s.joinerFacts.flavor;
  const to = replicationTarget(req, s.donorFacts);
  const link = (await s.joiner.query(flavor.allReplicaStatusSql, [], signal))
    .map((r) => flavor.parseReplicaStatus(r))
    .find((r) => r.connection === '');
  const fromDonor =
    link !== undefined &&
    link.sourcePort === to.port &&
    (link.sourceHost === to.host || link.sourceServerId === s.donorFacts.serverId);
  if (fromDonor && link.ioRunning && link.sqlRunning && !link.lastIoErrno && !link.lastSqlErrno)
    return {
      mode: 'catch-up',
      why: `the joiner replicates from ${to.host}:${to.port} without an error (${link.secondsBehind ?? '?'} s behind): replication catches up alone, nothing is sent`,
    };
  // Stopped (by hand, say) without an error: catching up is enough if the donor's binary logs
  // still hold every transaction since the joiner's position (Galera's IST before SST).
  let gap: string | undefined;
  if (fromDonor && !link.lastIoErrno && !link.lastSqlErrno) {
    gap = await binlogGap(s, signal);
    if (gap === undefined)
      return {
        mode: 'catch-up',
        start: true,
        why: `the joiner's replication from ${to.host}:${to.port} is stopped without an error, and the donor's binary logs still hold every transaction since the joiner's position: replication is started and catches up, nothing is sent`,
      };
  }
  const stopped = !link
    ? 'the joiner does not replicate'
    : !fromDonor
      ? `the joiner replicates from ${link.sourceHost}:${link.sourcePort}, not from the donor`
      : link.lastIoErrno || link.lastSqlErrno
        ? `the joiner's replication failed (${link.lastIoErrno ? `I/O ${link.lastIoErrno}: ${link.lastIoError}` : `SQL ${link.lastSqlErrno}: ${link.lastSqlError}`})`
        : `the joiner's replication is stopped${gap ? ` and ${gap}` : ''}`;
  const volume = await volumeAt(datadir, signal);
  if (typeof volume === 'string') return { mode: 'full', why: `${stopped}; ${volume}` };
  const received = await lastReceived(volume, signal);
  const { bases } = await req.donorAgent.call<{ bases: { replica: string; identity?: string | null }[] }>(
    'GET',
    '/v1/snapshot-bases',
    undefined,
    signal,
  );
  const donorBase = bases.find((b) => b.replica === options.replicaName.replace(/[^A-Za-z0-9_.-]/g, '_'));
  if (!donorBase || !received)
    return {
      mode: 'full',
      why: `${stopped}, and ${!donorBase ? `the donor keeps no base for ${options.replicaName}` : 'the joiner holds no snapshot it received'}: the whole snapshot is sent`,
    };
  const mine = await receivedIdentity(received, signal);
  if (!mine.untouched || mine.identity !== donorBase.identity)
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      !mine.untouched
        ? `the snapshot the joiner received last (${received.id}) is no longer read-only, or was made writable since it was received (btrfs then drops its Received UUID): it may have changed, so an incremental send onto it could be refused or wrong; nothing was changed`
        : `the snapshot the joiner received last (${received.id}) is not the donor's base for it: they diverged (another donor, or a base replaced); nothing was changed`,
      {
        hints: [
          'reseed refresh --full --force sends the whole snapshot over the joiner (and keeps it as the new base)',
        ],
      },
    );
  return {
    mode: 'incremental',
    why: `${stopped}; the donor keeps ${options.replicaName}'s base and the joiner holds the same snapshot, untouched: only what changed since is sent`,
    base: received,
  };
}

/**
 * Why the donor's binary logs cannot bring the joiner up to date (its position, gtid_slave_pos,
 * is behind what the oldest binary log starts from in some domain: purged), or undefined when
 * they can. MariaDB: the oldest log's Gtid_list event holds the state before it. Elsewhere, or
 * when it cannot be read, a reason too: refresh then sends a snapshot rather than guess.
 */
async function binlogGap(s: Sides, signal: AbortSignal): Promise<string | undefined> {
  if (s.donorFacts.flavor.name !== 'mariadb' || s.joinerFacts.flavor.name !== 'mariadb')
    return 'the donor is not MariaDB: whether its binary logs cover the joiner is not checked';
  try {
    const logs = await s.donor.query('SHOW BINARY LOGS', [], signal);
    const oldest = logs[0]?.Log_name;
    if (!oldest) return 'the donor has no binary log';
    const events = await s.donor.query('SHOW BINLOG EVENTS IN ? LIMIT 4', [String(oldest)], signal);
    const list = events.find((e) => e.Event_type === 'Gtid_list');
    const before = parseMariadbGtid(String(list?.Info ?? '').replace(/[[\]\s]/g, ''));
    const [p] = await s.joiner.query('SELECT @@GLOBAL.gtid_slave_pos AS p', [], signal);
    const have = parseMariadbGtid(String(p?.p ?? ''));
    for (const [domain, g] of before) {
      const mine = have.get(domain);
      if (!mine || mine.seq < g.seq)
        return `the donor's oldest binary log (${String(oldest)}) starts after ${domain}-${g.serverId}-${g.seq}, past the joiner's position (${mine ? `${domain}-${mine.serverId}-${mine.seq}` : `nothing in domain ${domain}`}): those transactions are purged`;
    }
    return undefined;
  } catch (err) {
    return `the donor's binary logs could not be read (${errorMessage(err)})`;
  }
}

/**
 * A refresh that replication alone does: the joiner's replication started when it was stopped
 * (journaled: undone if the catch-up fails), then waited for until it has caught up with the donor.
 */
async function catchUpOnly(
  req: PhysicalCloneRequest,
  s: Sides,
  refresh: RefreshChoice,
  started: number,
): Promise<PhysicalSummary> {
  const plan = [`refresh: ${refresh.mode}: ${refresh.why}`];
  req.emit({ type: 'plan', lines: plan, dryRun: req.options.dryRun, phases: ['preflight', 'replicate'] });
  const summary: PhysicalSummary = {
    method: req.method,
    plan,
    dryRun: req.options.dryRun,
    bytes: 0,
    wireBytes: 0,
    streamDigest: '',
    coordinates: undefined,
    donorCommitBlockedMs: 0,
    donorDdlBlockedMs: 0,
    replication: {
      state: 'running',
      from: `${replicationTarget(req, s.donorFacts).host}:${replicationTarget(req, s.donorFacts).port}`,
    },
    verify: undefined,
    phases: {},
    durationMs: 0,
    manifest: undefined,
    removed: '',
    refresh: { mode: refresh.mode, why: refresh.why },
  };
  if (req.options.dryRun) return { ...summary, durationMs: Date.now() - started };
  req.setState('replicating');
  req.emit({ type: 'phase', phase: 'replicate' });
  const flavor = s.joinerFacts.flavor;
  const startSeq = refresh.start
    ? req.journal.record("start the joiner's replication", {
        target: 'joiner',
        statements: [flavor.stopReplicaSql],
      })
    : undefined;
  if (refresh.start) await s.joiner.query(flavor.startReplicaSql, [], req.signal);
  const waited = await inPhase('REPLICATION_FAILED', () =>
    waitForCatchUp({
      replica: s.joiner,
      source: s.donor,
      flavor: s.joinerFacts.flavor,
      useGtid: true,
      timeoutMs: req.options.catchupTimeoutMs,
      progress: { emit: req.emit },
      signal: req.signal,
    }),
  );
  if (startSeq !== undefined) req.journal.resolve(startSeq);
  summary.replication.catchUpMs = waited.waitedMs;
  summary.phases.replicate = waited.waitedMs;
  return { ...summary, durationMs: Date.now() - started };
}

/** The donor agent's report of its snapshot (src/agent/snapshots.ts). */
interface SnapshotReport {
  state: string;
  fs: 'btrfs' | 'zfs';
  name: string;
  lockHeldMs: number;
  lockWaitMs: number;
  coordinates: { gtid: string; binlog?: { file: string; position: number } };
  donorOnly: string[];
  bytes: number;
  fullBytes?: number;
  error?: string;
}

/**
 * The snapshot method's copy: the donor's agent takes a read-only snapshot of its datadir under a
 * read lock of milliseconds and sends it (btrfs send / zfs send) through the data channel; this
 * agent receives it beside its datadir (btrfs receive / zfs recv), keeps the received snapshot
 * read-only (the base of a later refresh) and makes a writable copy of it as the staging datadir,
 * without the donor's own files (binary and relay logs, replication settings, pid file). mysqld
 * started on it later runs InnoDB's crash recovery, which makes it consistent.
 */
async function copySnapshot(req: PhysicalCloneRequest, staging: string, joiner: Volume, base?: Snapshot) {
  const { signal, options, journal } = req;
  const opened = await req.donorAgent.call<{ id: string; secret: string; report: SnapshotReport }>(
    'POST',
    '/v1/snapshots',
    {
      replica: options.replicaName,
      incremental: base !== undefined,
      // Kept while this agent asks after it (every 20 s, through the swap, the catch-up and the
      // verification); a joiner that died leaves it to go after 2 minutes.
      idleTimeoutMs: 120_000,
      resumeTimeoutMs: options.resumeTimeoutMs,
      lockWaitTimeoutMs: options.lockWaitTimeoutMs,
      maxLockTimeMs: options.maxLockTimeMs,
    },
    signal,
  );
  const r = opened.report;
  const keepalive = setInterval(() => {
    void req.donorAgent.call('GET', `/v1/snapshots/${opened.id}`).catch(() => undefined);
  }, 20_000);
  keepalive.unref();
  /** The donor's snapshot kept as this replica's base, or removed; the base's name when kept. */
  const close = async (keep: boolean): Promise<string | undefined> => {
    clearInterval(keepalive);
    // On a failure the donor may be out of reach (the cut that failed the clone): asked briefly,
    // since its agent removes a snapshot nobody asks after by itself.
    const closed = await req.donorAgent
      .call<{ state: string; keptAs?: string; error?: string }>(
        'DELETE',
        `/v1/snapshots/${opened.id}?keep=${keep ? 1 : 0}`,
        undefined,
        keep ? undefined : AbortSignal.timeout(5000),
      )
      .catch((err: unknown) => ({ state: 'unknown', keptAs: undefined, error: errorMessage(err) }));
    if (closed.error)
      req.emit({
        type: 'warning',
        message:
          closed.state === 'unknown' && !keep
            ? `the donor's agent could not be told to remove its snapshot (${closed.error}): it removes it by itself once nobody asks after it (the resume timeout, and 5 s)`
            : `the donor's agent: ${closed.error}`,
      });
    return closed.keptAs;
  };
  try {
    req.emit({
      type: 'note',
      message: `the donor's ${r.fs} snapshot ${r.name} is taken: its commits were blocked ${formatMs(r.lockHeldMs)} (after ${formatMs(r.lockWaitMs)} waiting for a quiet window)`,
    });
    // An incremental send is received where its base is (btrfs: its folder; ZFS: its dataset).
    const target = base
      ? base.fs === 'btrfs'
        ? dirname(base.id)
        : base.id.slice(0, base.id.indexOf('@'))
      : receiveTarget(joiner, journal.header.id);
    const received = receivedSnapshot(joiner.fs, target, r.name);
    if (joiner.fs === 'btrfs' && !existsSync(target)) {
      const marker = `.reseed-made-${journal.header.id}`;
      await journal.apply(
        `make the directory of received snapshots ${target}`,
        hostUndo('joiner', { kind: 'remove-made-directory', path: target, marker }),
        () => {
          mkdirSync(target, { mode: 0o700 });
          writeFileSync(join(target, marker), `made by reseed, journal ${journal.header.id}\n`);
          return Promise.resolve();
        },
      );
    }
    const got = await journal.apply(
      `receive the donor's snapshot as ${received.id}`,
      // Undone: the new snapshot only when the dataset holds the base too (an incremental on ZFS).
      // An incremental on ZFS wrote the base dataset itself: it is rolled back to the base.
      base && joiner.fs === 'zfs'
        ? hostUndo('joiner', { kind: 'rollback-to', snapshot: base })
        : hostUndo('joiner', { kind: 'remove-received', snapshot: received }),
      async () => {
        const receiver = receiveSnapshotCommand(joiner.fs, target, { rollbackFirst: base !== undefined });
        return pullInto(req, 'snapshots', opened, receiver, (bytes, wireBytes) => {
          req.emit({ type: 'progress', phase: 'copy', bytes, wireBytes });
          faultPoint('snapshot-receiving');
        });
      },
    );
    await protectReceived(received, signal);
    faultPoint('snapshot-received');
    const dataset =
      joiner.fs === 'zfs' ? `${parentDataset(joiner.dataset!)}/reseed-data-${journal.header.id}` : undefined;
    const volume = await journal.apply(
      `make a writable copy of ${received.id} at ${staging}`,
      hostUndo('joiner', {
        kind: 'remove-volume',
        volume: { fs: joiner.fs, path: staging, dataset },
      }),
      () => writableCopy(received, staging, dataset, signal),
    );
    // The donor's own files: its binary log would number the joiner's, its replica settings make it follow the donor's source.
    for (const rel of r.donorOnly) rmSync(join(staging, rel), { force: true });
    return {
      /** the donor keeps what it sent as this replica's base once the clone stands; else it goes */
      finish: close,
      bytes: got.bytes,
      wireBytes: got.wireBytes,
      streamDigest: got.digest,
      donorCommitBlockedMs: r.lockHeldMs,
      donorDdlBlockedMs: r.lockHeldMs,
      snapshot: {
        fs: r.fs,
        name: r.name,
        lockHeldMs: r.lockHeldMs,
        lockWaitMs: r.lockWaitMs,
        received: received.id,
        base: base?.id,
        fullBytes: r.fullBytes,
        resumes: got.resumes,
      },
      coordinates: {
        gtid: r.coordinates.gtid,
        file: r.coordinates.binlog?.file ?? '',
        position: r.coordinates.binlog?.position ?? 0,
      },
      volume,
    };
  } catch (err) {
    await close(false);
    throw err;
  }
}

function parentDataset(dataset: string): string {
  return dataset.slice(0, dataset.lastIndexOf('/'));
}

/**
 * After the commit: the old datadir goes (a directory, a btrfs subvolume or a ZFS dataset), and
 * with it the snapshots this joiner received before (only the one it runs on now is kept).
 */
async function removeAside(
  req: PhysicalCloneRequest,
  aside: string,
  joiner: Volume | undefined,
  received: string | undefined,
): Promise<void> {
  if (!joiner) {
    rmSync(aside, { recursive: true, force: true });
    return;
  }
  await removeVolume({ ...joiner, path: aside }, req.signal);
  if (!received) return;
  const keep: Snapshot = { fs: joiner.fs, id: received };
  if (joiner.fs === 'btrfs') {
    const dir = dirname(received);
    for (const name of readdirSync(dir))
      if (name.startsWith('.reseed-made-')) rmSync(join(dir, name), { force: true });
      else if (join(dir, name) !== received && name.startsWith('reseed-tmp-'))
        await destroySnapshot({ fs: 'btrfs', id: join(dir, name) }, req.signal);
  } else {
    const { stdout } = await runTool('zfs', [
      'list',
      '-H',
      '-o',
      'name',
      '-t',
      'filesystem',
      '-r',
      parentDataset(joiner.dataset!),
    ]);
    const keepDataset = keep.id.slice(0, keep.id.indexOf('@'));
    // After an incremental the dataset holds the older snapshots too: only the new one stays.
    const snaps = await runTool('zfs', ['list', '-H', '-o', 'name', '-t', 'snapshot', '-r', keepDataset]);
    for (const snap of snaps.stdout.split('\n').filter(Boolean))
      if (snap !== keep.id) await destroySnapshot({ fs: 'zfs', id: snap }, req.signal).catch(() => undefined);
    for (const name of stdout.split('\n'))
      if (/\/reseed-base-[A-Za-z0-9_.:-]+$/.test(name) && name !== keepDataset)
        await removeVolume({ fs: 'zfs', path: '', dataset: name }, req.signal).catch(() => undefined);
  }
}

/**
 * A datadir moved from `from` to `to`, journaled with the move back as its undo: a ZFS dataset by
 * its mountpoint, a directory or a btrfs subvolume by a rename.
 */
function moveJournaled(
  req: PhysicalCloneRequest,
  title: string,
  from: string,
  to: string,
  volume: Volume | undefined,
): Promise<void> {
  const zfs = volume?.fs === 'zfs' ? volume : undefined;
  return req.journal.apply(
    title,
    zfs
      ? hostUndo('joiner', { kind: 'move-volume', volume: { ...zfs, path: to }, to: from })
      : hostUndo('joiner', { kind: 'move-back', from: to, to: from }),
    async () => {
      if (zfs) await moveVolume(zfs, to, req.signal);
      else renameSync(from, to);
    },
  );
}

/** Where this agent pulls a stream or transfer the donor's agent opened for it. */
function donorSource(req: PhysicalCloneRequest, t: { id: string; secret: string }) {
  return { url: req.donorAgent.address.url, transfer: t.id, secret: t.secret, tls: req.donorAgent.address };
}

/**
 * A donor agent's stream (`what`: a backup, a snapshot) into a consumer child (mbstream -x,
 * btrfs receive, zfs recv), both on a worker thread (streamIntoChildInThread), progress at most
 * every 500 ms; done when the child is.
 */
async function pullInto(
  req: PhysicalCloneRequest,
  what: 'backups' | 'snapshots',
  opened: { id: string; secret: string },
  consumer: ConsumerSpec,
  onProgress: (bytes: number, wireBytes: number) => void,
): Promise<StreamIntoReport> {
  let last = 0;
  return streamIntoChildInThread(consumer, {
    source: donorSource(req, opened),
    path: `/v1/${what}/${opened.id}/stream?codec=${req.options.compress}`,
    stallTimeoutMs: req.options.stallTimeoutMs,
    // A snapshot is read-only: its send can be run again and resumed from an offset after a cut.
    // A backup is made as it streams, and is never the same twice.
    resumeTimeoutMs: what === 'snapshots' ? req.options.resumeTimeoutMs : undefined,
    signal: req.signal,
    onProgress: (bytes, wireBytes) => {
      if (Date.now() - last < 500) return;
      last = Date.now();
      onProgress(bytes, wireBytes);
    },
  });
}

/** `mariadb-backup --prepare`, with the joiner's buffer pool size as its memory (Galera's choice). */
async function prepare(req: PhysicalCloneRequest, staging: string, bufferPool: number): Promise<void> {
  const memory = Math.max(96 * 2 ** 20, Math.min(bufferPool, 4 * 2 ** 30));
  const child = spawnStreamed(
    'mariadb-backup',
    ['--prepare', `--target-dir=${staging}`, `--use-memory=${memory}`],
    {
      stdout: 'ignore',
      signal: req.signal,
      tailLines: 12,
      onStderrLine: (line) => req.log.debug({ line }, 'mariadb-backup --prepare'),
    },
  );
  await child.done;
}

function chownTree(root: string, uid: number, gid: number): void {
  chownSync(root, uid, gid);
  for (const e of readdirSync(root, { withFileTypes: true })) {
    const p = join(root, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid);
    else if (!lstatSync(p).isSymbolicLink()) chownSync(p, uid, gid);
  }
}

/**
 * The copy carries the donor's replica settings in mysql.gtid_slave_pos and none of its own
 * binary logs: replication is reset, the joiner's binary log emptied (its GTID state must not
 * conflict with the donor's), the backup's position set, and replication started from the donor.
 */
async function startReplication(
  req: PhysicalCloneRequest,
  s: Sides,
  joiner: Server,
  c: BinlogInfo,
): Promise<PhysicalSummary['replication']> {
  const { signal, options } = req;
  const flavor = s.joinerFacts.flavor;
  const to = replicationTarget(req, s.donorFacts);
  const fromSource = options.replicateFrom === 'source';
  // A copy of a replica holds its position in its source's stream, consistent with its data:
  // mysql.gtid_slave_pos (InnoDB), loaded by the joiner's mysqld as it started on the copy.
  const [sp] = fromSource ? await joiner.query('SELECT @@GLOBAL.gtid_slave_pos AS p', [], signal) : [];
  const gtid = fromSource ? String(sp?.p ?? '') : c.gtid;
  if (fromSource && !gtid)
    throw new ReseedError(
      'REPLICATION_FAILED',
      "the copy holds no position in the donor's source's stream (its mysql.gtid_slave_pos is empty)",
    );
  await joiner.query('STOP ALL SLAVES', [], signal);
  await joiner.query(flavor.resetReplicaAllSql, [], signal);
  const [lb] = await joiner.query('SELECT @@log_bin AS b', [], signal);
  if (Number(lb?.b ?? 0)) await joiner.query(flavor.resetBinlogSql, [], signal);
  for (const sql of flavor.setGtidPositionSql(gtid)) await joiner.query(sql, [], signal);
  const change = flavor.changeSourceSql(
    {
      host: to.host,
      port: to.port,
      user: options.replicationUser!,
      gtid: true,
      binlog: undefined,
      ssl: undefined,
    },
    options.replicationPassword ?? '',
  );
  await joiner.query(change.sql, change.params, signal);
  await joiner.query(flavor.startReplicaSql, [], signal);
  // Caught up with whom it follows: the donor, or the donor's source (this agent's account there).
  const source = fromSource ? await connect({ ...req.donor, host: to.host, port: to.port }) : s.donor;
  try {
    const waited = await waitForCatchUp({
      replica: joiner,
      source,
      flavor,
      useGtid: true,
      timeoutMs: options.catchupTimeoutMs,
      progress: { emit: req.emit },
      signal,
    });
    return {
      state: 'running',
      from: `${to.host}:${to.port}`,
      catchUpMs: waited.waitedMs,
      ...(fromSource ? { startedAt: gtid } : {}),
    };
  } finally {
    if (source !== s.donor) await source.close();
  }
}

/** Where the joiner's replication connects: the donor's source (--replicate-from source), --replication-host, or the donor. */
function replicationTarget(req: PhysicalCloneRequest, d: ServerFacts): { host: string; port: number } {
  if (req.options.replicateFrom === 'source' && d.replica)
    return { host: d.replica.sourceHost, port: d.replica.sourcePort };
  return req.options.replicationHost ?? { host: req.donor.host, port: req.donor.port };
}
