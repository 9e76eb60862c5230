import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ReseedError } from '../errors.js';
import { spawnStreamed } from '../exec/stream.js';
import { faultPoint } from '../fault.js';
import type { StreamedChild } from '../exec/stream.js';
import type { Logger } from '../log.js';
import { StageClock } from '../methods/mariabackup/stages.js';
import type { Codec } from '../transport/codec.js';
import { streamFrames } from '../transport/stream.js';
import type { AgentConfig } from './config.js';
import { agentEndpoint, clientOptionFile } from './mysql.js';

/** What the joiner's agent learns of a backup it pulled: how long the donor was blocked, how it ended. */
export interface BackupReport {
  state: 'opened' | 'streaming' | 'done' | 'failed' | 'closed';
  bytes: number;
  /** commits blocked (BACKUP STAGE BLOCK_COMMIT until END) */
  commitBlockedMs: number;
  /** DDL blocked (BLOCK_DDL until END) */
  ddlBlockedMs: number;
  durationMs: number;
  /** the tail of mariadb-backup's stderr, when it failed */
  error?: string | undefined;
}

interface Backup {
  id: string;
  secretHash: Buffer;
  /** the option file with the credentials and mariadb-backup's target directory live here */
  dir: string;
  parallel: number;
  idleMs: number;
  lastUsed: number;
  child?: StreamedChild | undefined;
  clock: StageClock;
  report: BackupReport;
  started: number;
}

const sha = (s: string) => createHash('sha256').update(s).digest();

/**
 * The donor half of the mariabackup method: `mariadb-backup --backup --stream=xbstream` run on
 * this host, its stdout served once as a framed stream (each frame checksummed, the whole stream's
 * digest at the end) to the agent holding the backup's one-time credential. The credentials for
 * mariadb-backup are in an option file of mode 0600 in a private directory, never on its command
 * line; the directory goes when the backup is closed, when it idles out, and at the agent's next
 * start after a crash (with any mariadb-backup still running from it).
 */
export class Backups {
  readonly #backups = new Map<string, Backup>();
  readonly #timer: NodeJS.Timeout;
  readonly root: string;

  constructor(
    readonly config: AgentConfig,
    readonly log: Logger,
  ) {
    this.root = join(config.stateDir, 'backups');
    this.#sweep();
    this.#timer = setInterval(() => this.#expire(), 1000);
    this.#timer.unref();
  }

  get count(): number {
    return this.#backups.size;
  }

  open(o: { parallel: number; idleTimeoutMs: number }): { id: string; secret: string } {
    const endpoint = agentEndpoint(this.config);
    const id = randomBytes(12).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const dir = join(this.root, id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'client.cnf'), clientOptionFile(endpoint), { mode: 0o600 });
    mkdirSync(join(dir, 'target'), { mode: 0o700 });
    this.#backups.set(id, {
      id,
      secretHash: sha(secret),
      dir,
      parallel: o.parallel,
      idleMs: o.idleTimeoutMs,
      lastUsed: Date.now(),
      clock: new StageClock(),
      report: { state: 'opened', bytes: 0, commitBlockedMs: 0, ddlBlockedMs: 0, durationMs: 0 },
      started: 0,
    });
    return { id, secret };
  }

  authorize(id: string, authorization: string | undefined): Backup {
    const b = this.#backups.get(id);
    const given = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    if (!b || !given || !timingSafeEqual(sha(given), b.secretHash))
      throw new ReseedError('TRANSPORT_AUTH_FAILED', 'unknown backup or wrong credential');
    b.lastUsed = Date.now();
    return b;
  }

  report(id: string): BackupReport {
    const b = this.#get(id);
    b.lastUsed = Date.now();
    return { ...b.report, durationMs: b.started ? b.report.durationMs || Date.now() - b.started : 0 };
  }

  /** Starts mariadb-backup and yields its stream's frames; a backup is streamed once. */
  stream(b: Backup, codec: Codec): AsyncGenerator<Buffer> {
    if (b.child || b.report.state !== 'opened')
      throw new ReseedError(
        'AGENT',
        'this backup was streamed already: a mariadb-backup stream cannot be resumed, the clone starts again',
      );
    b.started = Date.now();
    b.report.state = 'streaming';
    const child = spawnStreamed(
      'mariadb-backup',
      [
        `--defaults-extra-file=${join(b.dir, 'client.cnf')}`,
        '--backup',
        '--stream=xbstream',
        `--target-dir=${join(b.dir, 'target')}`,
        `--parallel=${b.parallel}`,
        // Never wait forever for a LOCK TABLES holder before BACKUP STAGE START.
        '--startup-wait-timeout=60',
      ],
      {
        onStderrLine: (line) => {
          b.clock.line(line);
          this.log.debug({ backup: b.id, line }, 'mariadb-backup');
        },
        tailLines: 12,
      },
    );
    b.child = child;
    writeFileSync(join(b.dir, 'pid'), String(child.pid));
    const log = this.log;
    async function* output(): AsyncGenerator<Buffer> {
      for await (const chunk of child.stdout! as AsyncIterable<Buffer>) {
        if (b.report.bytes === 0) faultPoint('backup-streaming');
        b.report.bytes += chunk.length;
        b.lastUsed = Date.now();
        yield chunk;
      }
      await child.done;
    }
    async function* framed(): AsyncGenerator<Buffer> {
      let ok = false;
      try {
        for await (const f of streamFrames(output(), codec, (err) => {
          b.report.error = child.stderrTail().slice(-6).join('\n') || String(err);
          return `mariadb-backup failed on the donor: ${b.report.error}`;
        }))
          yield f;
        ok = b.report.error === undefined;
      } finally {
        child.kill();
        await child.done.catch(() => undefined);
        b.report.state = ok ? 'done' : 'failed';
        b.report.durationMs = Date.now() - b.started;
        b.report.commitBlockedMs = b.clock.commitBlockedMs;
        b.report.ddlBlockedMs = b.clock.ddlBlockedMs;
        if (!ok && b.report.error === undefined) b.report.error = 'the stream was not read to its end';
        // A stream is served once: its option file (the credentials) and directory go now; the
        // report stays in memory for the joiner's agent until it closes the backup.
        rmSync(b.dir, { recursive: true, force: true });
        log.info({ backup: b.id, ...b.report }, 'backup stream ended');
      }
    }
    return framed();
  }

  close(id: string): void {
    const b = this.#backups.get(id);
    if (!b) return;
    this.#backups.delete(id);
    b.child?.kill();
    if (b.report.state === 'opened' || b.report.state === 'streaming') b.report.state = 'closed';
    const done = b.child?.done.catch(() => undefined) ?? Promise.resolve();
    void done.then(() => rmSync(b.dir, { recursive: true, force: true }));
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const id of [...this.#backups.keys()]) this.close(id);
  }

  #get(id: string): Backup {
    const b = this.#backups.get(id);
    if (!b)
      throw new ReseedError('NOT_FOUND', `no backup ${id} on this agent (closed, or the agent restarted)`);
    return b;
  }

  #expire(): void {
    const now = Date.now();
    for (const b of this.#backups.values())
      if (b.report.state !== 'streaming' && now - b.lastUsed > b.idleMs) {
        this.log.warn({ backup: b.id }, 'backup closed: nobody asked for it within its idle timeout');
        this.close(b.id);
      }
  }

  /**
   * What a previous agent process left (it was killed): a mariadb-backup still running from one of
   * the directories is stopped, and the directories (option files included) are removed.
   */
  #sweep(): void {
    if (!existsSync(this.root)) return;
    for (const id of readdirSync(this.root)) {
      const dir = join(this.root, id);
      try {
        const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmdline.includes(dir)) {
          process.kill(-pid, 'SIGKILL');
          this.log.warn({ pid }, 'stopped a mariadb-backup left running by an earlier agent process');
        }
      } catch {
        // no pid file, or the process is gone: nothing runs
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
