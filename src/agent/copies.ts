import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ReseedError, errorMessage } from '../errors.js';
import { faultPoint } from '../fault.js';
import { serviceControl } from '../host/service-control.js';
import type { ServiceControl, ServiceSpec } from '../host/service-control.js';
import type { Logger } from '../log.js';
import { inspect } from '../mysql/facts.js';
import { DEFAULT_READ_LOCK_POLICY, acquireReadLock } from '../mysql/read-lock.js';
import { connect } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import type { AgentConfig } from './config.js';
import { agentEndpoint } from './mysql.js';
import type { Transfers } from './transfers.js';

/** The donor's coordinates at the moment its mysqld stopped. */
export interface CopyCoordinates {
  gtid: string;
  file: string;
  position: number;
  /** where the GTID came from: the binlog state mysqld wrote as it shut down, or read under the lock */
  source: 'binlog state at shutdown' | 'read under the lock';
}

export interface CopyReport {
  state: 'hot' | 'down' | 'up' | 'failed' | 'closed';
  /** the wait for a quiet window and the lock */
  lockWaitMs: number;
  /** commits blocked: from the lock until mysqld answered again */
  writesBlockedMs: number;
  /** mysqld not serving at all: from the stop until it answered again */
  downMs: number;
  coordinates?: CopyCoordinates | undefined;
  error?: string | undefined;
}

interface Copy {
  id: string;
  datadir: string;
  skip: (rel: string, isDir: boolean) => boolean;
  maxRate: number | undefined;
  idleMs: number;
  maxDowntimeMs: number;
  hot: string;
  cold?: string | undefined;
  lockedAt: number;
  stoppedAt: number;
  watchdog?: NodeJS.Timeout | undefined;
  report: CopyReport;
  lastUsed: number;
  /** the promise of a start under way (thaw, watchdog, close), so that mysqld is started once */
  starting?: Promise<void> | undefined;
}

/** What a copy that stopped mysqld writes before it does: read by the guard and the next agent start. */
interface DownRecord {
  copy: string;
  service: ServiceSpec;
  agentPid: number;
  /** the guard starts mysqld itself when the agent is gone, or at this time at the latest */
  deadline: number;
}

/**
 * The donor half of the copy method. A copy is served in two passes through the data channel: a
 * first one of the live datadir (its files change while they are read: a best-effort pass the
 * joiner uses only as a base), then mysqld is stopped cleanly (innodb_fast_shutdown=1 flushes
 * every dirty page, so the files are consistent, and no crash recovery is needed on the joiner),
 * and the second pass sends only the blocks that differ from the first, then mysqld is started
 * again. Before the stop, commits are blocked (BACKUP STAGE BLOCK_COMMIT, with the read-lock
 * policy's quiet window and bounded wait) and the coordinates read; the binlog state mysqld writes
 * as it shuts down is then read too and wins, so a commit that slipped in during the shutdown is
 * never lost to replication. mysqld is started again when the joiner says it has the second pass,
 * when the copy is closed or idles out, when `maxDowntimeMs` has passed, at the agent's next start
 * after a crash, and by a detached guard process when the agent dies while mysqld is down.
 */
export class Copies {
  readonly #copies = new Map<string, Copy>();
  readonly #timer: NodeJS.Timeout;
  readonly root: string;

  constructor(
    readonly config: AgentConfig,
    readonly log: Logger,
    readonly transfers: Transfers,
  ) {
    this.root = join(config.stateDir, 'copies');
    void this.#sweep();
    this.#timer = setInterval(() => this.#expire(), 1000);
    this.#timer.unref();
  }

  get count(): number {
    return this.#copies.size;
  }

  #service(): ServiceControl {
    if (!this.config.datadir || !this.config.service)
      throw new ReseedError(
        'PREFLIGHT_FAILED',
        `agent ${this.config.name} cannot serve --method copy: it needs datadir and service in its configuration (it stops and starts its mysqld)`,
      );
    return serviceControl(this.config.service);
  }

  /** The first pass: the live datadir, opened as a transfer (without the files that stay the donor's). */
  async open(o: {
    maxRate?: number | undefined;
    idleTimeoutMs: number;
    maxDowntimeMs: number;
  }): Promise<{ id: string; hot: { id: string; secret: string; files: number; bytes: number } }> {
    const service = this.#service();
    if (!(await service.status()).running)
      throw new ReseedError(
        'PREFLIGHT_FAILED',
        `the donor's mysqld (${service.description}) is not running: --method copy reads its coordinates before it stops it`,
      );
    if ([...this.#copies.values()].some((c) => c.report.state === 'down'))
      throw new ReseedError('PREFLIGHT_FAILED', "another copy holds this donor's mysqld stopped");
    const datadir = resolve(this.config.datadir!);
    const server = await connect(agentEndpoint(this.config));
    let skip: Copy['skip'];
    try {
      skip = await donorOnlyFiles(server, datadir);
    } finally {
      await server.close();
    }
    const id = this.transfers.open(datadir, o.maxRate, o.idleTimeoutMs, { skip });
    const c: Copy = {
      id: id.id,
      datadir,
      skip,
      maxRate: o.maxRate,
      idleMs: o.idleTimeoutMs,
      maxDowntimeMs: o.maxDowntimeMs,
      hot: id.id,
      lockedAt: 0,
      stoppedAt: 0,
      report: { state: 'hot', lockWaitMs: 0, writesBlockedMs: 0, downMs: 0 },
      lastUsed: Date.now(),
    };
    this.#copies.set(c.id, c);
    return { id: c.id, hot: id };
  }

  /**
   * Commits blocked, the coordinates read, mysqld stopped cleanly, its binlog state read, and the
   * second pass opened on the stopped datadir. From here mysqld is down until `thaw` (or a bound).
   */
  async freeze(
    id: string,
    o: { lockWaitTimeoutMs: number },
  ): Promise<{
    cold: { id: string; secret: string; files: number; bytes: number; same: number };
    report: CopyReport;
  }> {
    const c = this.#get(id);
    if (c.report.state !== 'hot')
      throw new ReseedError('USAGE', `copy ${id} is ${c.report.state}: its mysqld was stopped once already`);
    const service = this.#service();
    // The first pass's listing and digests: its files unchanged since need not be read again.
    const firstPass = this.transfers.retire(c.hot);
    const endpoint = agentEndpoint(this.config);
    const lockConnection = await connect(endpoint);
    const monitor = await connect(endpoint).catch((err: unknown) => {
      lockConnection.destroy();
      throw err;
    });
    const started = Date.now();
    let record: string | undefined;
    try {
      const facts = await inspect(monitor);
      const mode = facts.flavor.name === 'mariadb' ? 'backup-stage' : 'ftwrl';
      await acquireReadLock({
        lockConnection,
        monitor,
        flavor: facts.flavor,
        mode,
        // The lock ends with mysqld; the downtime bound is the copy's own, not the lock watchdog's.
        policy: {
          ...DEFAULT_READ_LOCK_POLICY,
          lockWaitTimeoutMs: o.lockWaitTimeoutMs,
          maxLockTimeMs: c.maxDowntimeMs,
        },
        log: this.log,
      });
      c.lockedAt = Date.now();
      c.report.lockWaitMs = c.lockedAt - started;
      const [pos] = await monitor.query(
        'SELECT @@GLOBAL.gtid_binlog_pos AS gtid, @@GLOBAL.log_bin_basename AS base',
      );
      const [status] = await monitor.query('SHOW MASTER STATUS').catch(() => [undefined]);
      c.report.coordinates = {
        gtid: String(pos?.gtid ?? ''),
        file: String(status?.File ?? ''),
        position: Number(status?.Position ?? 0),
        source: 'read under the lock',
      };
      const base = pos?.base ? String(pos.base) : undefined;
      // Written before the stop: whoever finds it (the guard, the next agent start) starts mysqld.
      mkdirSync(this.root, { recursive: true, mode: 0o700 });
      record = join(this.root, `${c.id}.json`);
      const down: DownRecord = {
        copy: c.id,
        service: this.config.service!,
        agentPid: process.pid,
        deadline: c.lockedAt + c.maxDowntimeMs + 30_000,
      };
      writeFileSync(record, JSON.stringify(down), { mode: 0o600 });
      startGuard(record, this.log);
      c.report.state = 'down';
      c.stoppedAt = Date.now();
      c.watchdog = setTimeout(
        () => {
          c.report.error = `the donor's mysqld was down for ${Math.round(c.maxDowntimeMs / 1000)} s (--max-downtime): started again, the copy abandoned`;
          this.log.error({ copy: c.id }, c.report.error);
          void this.#startAgain(c, 'failed');
        },
        Math.max(0, c.lockedAt + c.maxDowntimeMs - Date.now()),
      );
      c.watchdog.unref();
      faultPoint('copy-locked');
      await service.stop();
      lockConnection.destroy();
      monitor.destroy();
      faultPoint('copy-stopped');
      // The GTID state mysqld saved as it shut down: exact, whatever committed during the stop.
      const state = base && existsSync(`${base}.state`) ? readFileSync(`${base}.state`, 'utf8') : '';
      const atShutdown = gtidPosFromState(state);
      if (atShutdown) {
        if (atShutdown !== c.report.coordinates.gtid)
          this.log.warn(
            { underLock: c.report.coordinates.gtid, atShutdown },
            'the binlog state at shutdown differs from the position read under the lock: it is used',
          );
        c.report.coordinates = {
          ...c.report.coordinates,
          gtid: atShutdown,
          source: 'binlog state at shutdown',
        };
      }
      const cold = this.transfers.open(c.datadir, c.maxRate, c.idleMs, { skip: c.skip, previous: firstPass });
      c.cold = cold.id;
      c.lastUsed = Date.now();
      return { cold, report: { ...c.report } };
    } catch (err) {
      lockConnection.destroy();
      monitor.destroy();
      c.report.error = errorMessage(err);
      if (record) await this.#startAgain(c, 'failed');
      else c.report.state = 'failed';
      throw err;
    }
  }

  /** The second pass is done (or abandoned): mysqld started again; the report says for how long it was down. */
  async thaw(id: string): Promise<CopyReport> {
    const c = this.#get(id);
    if (c.report.state === 'down') await this.#startAgain(c, 'up');
    else if (c.starting) await c.starting;
    return { ...c.report };
  }

  report(id: string): CopyReport {
    const c = this.#get(id);
    c.lastUsed = Date.now();
    return { ...c.report };
  }

  async close(id: string): Promise<void> {
    const c = this.#copies.get(id);
    if (!c) return;
    this.transfers.close(c.hot);
    if (c.cold) this.transfers.close(c.cold);
    if (c.report.state === 'down') await this.#startAgain(c, 'closed');
    else if (c.starting) await c.starting;
    if (c.report.state === 'hot') c.report.state = 'closed';
    this.#copies.delete(id);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.allSettled([...this.#copies.keys()].map((id) => this.close(id)));
  }

  #startAgain(c: Copy, state: CopyReport['state']): Promise<void> {
    c.starting ??= (async () => {
      clearTimeout(c.watchdog);
      if (c.cold) this.transfers.close(c.cold);
      // The record goes first: the guard, seeing it gone, exits and never starts mysqld twice.
      rmSync(join(this.root, `${c.id}.json`), { force: true });
      try {
        const service = serviceControl(this.config.service!);
        if (!(await service.status()).running) await service.start();
        c.report.state = state;
      } catch (err) {
        c.report.state = 'failed';
        c.report.error = `${c.report.error ? `${c.report.error}; ` : ''}the donor's mysqld could not be started again: ${errorMessage(err)}`;
        this.log.error({ copy: c.id, err }, "the donor's mysqld could not be started again");
      } finally {
        const now = Date.now();
        if (c.lockedAt) c.report.writesBlockedMs = now - c.lockedAt;
        if (c.stoppedAt) c.report.downMs = now - c.stoppedAt;
        this.log.info({ copy: c.id, ...c.report }, 'copy: mysqld started again');
      }
    })();
    return c.starting;
  }

  #get(id: string): Copy {
    const c = this.#copies.get(id);
    if (!c)
      throw new ReseedError('NOT_FOUND', `no copy ${id} on this agent (closed, or the agent restarted)`);
    c.lastUsed = Date.now();
    return c;
  }

  /** A first pass nobody reads any more (its transfer idled out) is closed; a stopped mysqld has its own bound. */
  #expire(): void {
    const now = Date.now();
    for (const c of this.#copies.values()) {
      if (c.report.state !== 'down') {
        if (now - c.lastUsed > c.idleMs + 5000) void this.close(c.id);
        continue;
      }
      // Down: the joiner asks for the second pass's digests and blocks all along, then thaws. A
      // joiner that stops asking (its agent killed, its host gone) must not keep the donor's
      // mysqld down until --max-downtime: after the idle bound it is started again.
      const used = Math.max(c.lastUsed, (c.cold && this.transfers.lastUsed(c.cold)) || 0);
      if (now - used <= c.idleMs + 5000 || c.starting) continue;
      c.report.error = `the joiner stopped asking for the second pass (nothing for ${Math.round((now - used) / 1000)} s): the donor's mysqld was started again, the copy abandoned`;
      this.log.error({ copy: c.id }, c.report.error);
      void this.#startAgain(c, 'failed');
    }
  }

  /** A copy left by a killed agent: its mysqld is started again (unless the guard did) and its record removed. */
  async #sweep(): Promise<void> {
    if (!existsSync(this.root)) return;
    for (const name of readdirSync(this.root)) {
      const file = join(this.root, name);
      try {
        // A record a guard took is its to act on while the guard lives; one left by a dead guard is ours.
        if (name.endsWith('.json')) renameSync(file, `${file}.taken`);
        else if (!name.endsWith('.taken')) continue;
        const taken = name.endsWith('.json') ? `${file}.taken` : file;
        const down = JSON.parse(readFileSync(taken, 'utf8')) as DownRecord;
        const service = serviceControl(down.service);
        if (!(await service.status()).running) {
          this.log.warn(
            { copy: down.copy },
            "starting the donor's mysqld a killed agent's copy left stopped",
          );
          await service.start();
        }
        rmSync(taken, { force: true });
      } catch (err) {
        this.log.error(
          { err, file },
          "could not start the donor's mysqld a killed agent's copy left stopped",
        );
      }
    }
  }
}

/**
 * The GTID position (the last GTID of each domain) in the binlog state file mysqld writes as it
 * shuts down: one `domain-server-seqno` line per domain and server, each domain's last GTID last.
 */
export function gtidPosFromState(text: string): string {
  const last = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\d+)-(\d+)-(\d+)$/.exec(line.trim());
    if (m) last.set(m[1]!, line.trim());
  }
  return [...last.values()].join(',');
}

/**
 * The files of a datadir that are the donor's own and never copied: its binary and relay logs and
 * their indexes and state, replication info files, its pid file, socket and logs, and InnoDB's
 * temporary tablespace (made again at every start). The joiner makes
 * its own; a replica's settings would make the joiner replicate from the donor's source.
 */
export async function donorOnlyFiles(
  server: Server,
  datadir: string,
  o: { keepBinlogs?: boolean } = {},
): Promise<(rel: string, isDir: boolean) => boolean> {
  const [v] = await server.query(
    `SELECT @@log_bin_basename AS binlog, @@relay_log_basename AS relay, @@pid_file AS pid, @@socket AS sock,
            @@log_error AS err, @@general_log_file AS general, @@slow_query_log_file AS slow,
            @@relay_log_info_file AS relayInfo, @@innodb_temp_data_file_path AS temp`,
  );
  // InnoDB's temporary tablespace (ibtmp1): removed and made again at every start.
  const temp = String(v?.temp ?? '')
    .split(';')
    .map((f) => f.split(':')[0]!)
    .filter(Boolean);
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  const dir = real(datadir);
  const inDir = (p: unknown): string | undefined => {
    if (!p) return undefined;
    const abs = isAbsolute(String(p)) ? String(p) : join(dir, String(p));
    const r = relative(dir, resolve(real(dirname(abs)), basename(abs)));
    return r.startsWith('..') || isAbsolute(r) ? undefined : r;
  };
  const exact = new Set(
    [v?.pid, v?.sock, v?.err, v?.general, v?.slow, v?.relayInfo, 'master.info', 'multi-master.info', ...temp]
      .map(inDir)
      .filter((r): r is string => r !== undefined),
  );
  const prefixes = [o.keepBinlogs ? undefined : v?.binlog, v?.relay]
    .map(inDir)
    .filter((r): r is string => r !== undefined)
    .map((r) => `${r}.`);
  return (rel, isDir) =>
    !isDir &&
    (exact.has(rel) ||
      prefixes.some((p) => rel.startsWith(p)) ||
      /^(master|relay-log)-.+\.info$/.test(rel) ||
      /\.(pid|sock)$/.test(rel));
}

/**
 * A detached process that outlives this agent: while the record exists it checks, every half
 * second, that the agent lives; when it is gone (killed) or the deadline has passed, it starts
 * mysqld and removes the record. It never stops anything.
 */
function startGuard(record: string, log: Logger): void {
  const script = fileURLToPath(new URL('./copy-guard.js', import.meta.url));
  try {
    const child = spawn(process.execPath, [script, record], {
      detached: true,
      stdio: 'ignore',
      env: process.env,
    });
    child.unref();
  } catch (err) {
    log.warn(
      { err },
      'the copy guard could not be started: a killed agent restarts mysqld at its next start only',
    );
  }
}
