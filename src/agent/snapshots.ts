import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ReseedError, errorMessage } from '../errors.js';
import { faultActive, faultPoint } from '../fault.js';
import type { StreamedChild } from '../exec/stream.js';
import type { Logger } from '../log.js';
import { DEFAULT_READ_LOCK_POLICY } from '../mysql/read-lock.js';
import { inspect } from '../mysql/facts.js';
import { quiesce } from '../mysql/quiesce.js';
import type { QuiesceCoordinates } from '../mysql/quiesce.js';
import { connect } from '../mysql/server.js';
import {
  destroySnapshot,
  listSnapshots,
  renameSnapshot,
  snapshotId,
  sendSnapshot,
  snapshotBytes,
  snapshotExists,
  snapshotFullBytes,
  snapshotIdentity,
  takeSnapshot,
  volumeAt,
} from '../host/volumes.js';
import type { Snapshot, Volume } from '../host/volumes.js';
import type { Codec } from '../transport/codec.js';
import { SegmentDigest } from '../transport/digest.js';
import { streamFrames } from '../transport/stream.js';
import type { AgentConfig } from './config.js';
import { donorOnlyFiles } from './copies.js';
import { agentEndpoint } from './mysql.js';

export interface SnapshotReport {
  state: 'taken' | 'streaming' | 'interrupted' | 'sent' | 'failed' | 'kept' | 'closed';
  fs: 'btrfs' | 'zfs';
  /** the snapshot's name (the joiner finds the received copy by it) */
  name: string;
  /** how long commits were blocked: the read lock, held while the snapshot was taken */
  lockHeldMs: number;
  lockWaitMs: number;
  coordinates: QuiesceCoordinates;
  /** files of the datadir that are the donor's own (binary and relay logs, replication info, pid): the joiner deletes them from its copy */
  donorOnly: string[];
  /** the base this snapshot is sent against (an incremental send), or none */
  base?: string | undefined;
  /** what a full send of it carries, about (to show what an incremental send saved) */
  fullBytes?: number | undefined;
  bytes: number;
  /** kept as the replica's base under this name (after the clone stood) */
  keptAs?: string | undefined;
  error?: string | undefined;
}

interface Taken {
  id: string;
  secretHash: Buffer;
  snapshot: Snapshot;
  base: Snapshot | undefined;
  replica: string;
  idleMs: number;
  /** how long a cut stream waits to be resumed (from its last byte sent), keepalives or not */
  resumeMs: number;
  /** when the stream last handed bytes on (a socket that takes none: a silent cut) */
  lastSent: number;
  lastUsed: number;
  child?: StreamedChild | undefined;
  /** counts the streams started: a stream's end changes the state only while it is the latest */
  generation: number;
  /** streams started again from an offset after a cut */
  resumes: number;
  /** the snapshot destroyed after its stream failed (close waits for it instead of destroying it again) */
  dropped?: Promise<void> | undefined;
  report: SnapshotReport;
}

/** A resumed send whose bytes before the offset are not those the joiner received. */
class SendDiffers extends Error {
  constructor(offset: number) {
    super(
      `the snapshot's send stream was not the same when it was run again (its first ${offset} bytes differ from what the joiner received): it cannot be resumed`,
    );
  }
}

const sha = (s: string) => createHash('sha256').update(s).digest();
const BASE_PREFIX = 'reseed-base-';
const TEMP_PREFIX = 'reseed-tmp-';

/** A replica's name as a snapshot name takes it. */
function replicaTag(replica: string): string {
  return replica.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
}

/**
 * The donor half of the snapshot method. `open` holds the read lock (the full policy: a window
 * with no long query, a bounded wait, BACKUP STAGE BLOCK_COMMIT on MariaDB) only while it reads
 * the coordinates and takes a read-only snapshot of the datadir's volume, then releases it: the
 * snapshot is what a power loss at that instant would leave, which InnoDB's crash recovery on the
 * joiner makes consistent, and no commit happened between the coordinates and the snapshot. The
 * snapshot is then streamed once (`btrfs send` / `zfs send`, incremental against the replica's
 * base when asked) in checksummed frames to the agent holding its one-time credential. When the
 * joiner's clone stands, the snapshot is kept as that replica's base (`reseed-base-REPLICA`, the
 * previous base removed); otherwise, and at the agent's next start after a crash, it is destroyed.
 */
export class Snapshots {
  readonly #taken = new Map<string, Taken>();
  readonly #timer: NodeJS.Timeout;
  readonly root: string;

  constructor(
    readonly config: AgentConfig,
    readonly log: Logger,
  ) {
    this.root = join(config.stateDir, 'snapshots');
    void this.#sweep();
    this.#timer = setInterval(() => this.#expire(), 1000);
    this.#timer.unref();
  }

  get count(): number {
    return this.#taken.size;
  }

  /** The datadir's volume, or why this agent cannot serve the snapshot method. */
  async volume(): Promise<Volume | string> {
    if (!this.config.datadir || !this.config.mysql)
      return `agent ${this.config.name} has no datadir in its configuration`;
    return volumeAt(resolve(this.config.datadir));
  }

  async open(o: {
    replica: string;
    incremental: boolean;
    idleTimeoutMs: number;
    /** a stream cut and not asked for again within this long: the snapshot goes */
    resumeTimeoutMs?: number | undefined;
    lockWaitTimeoutMs: number;
    maxLockTimeMs: number;
    /** the joiner went away: the lock is no longer waited for */
    signal?: AbortSignal | undefined;
  }): Promise<{ id: string; secret: string; report: SnapshotReport }> {
    const volume = await this.volume();
    if (typeof volume === 'string') throw new ReseedError('PREFLIGHT_FAILED', volume);
    const endpoint = agentEndpoint(this.config);
    const server = await connect(endpoint);
    let donorOnly: string[];
    try {
      // The binary log stays for the joiner's first start: a transaction prepared in InnoDB but
      // not committed at the snapshot (its commit waited for the lock) is resolved by mysqld's
      // crash recovery from the binary log (rolled back: it is not in it); without the log mysqld
      // refuses to start. The joiner's RESET MASTER removes it before replication starts.
      const skip = await donorOnlyFiles(server, volume.path, { keepBinlogs: true });
      donorOnly = listFiles(volume.path).filter((rel) => skip(rel, false));
    } finally {
      await server.close();
    }
    const tag = replicaTag(o.replica);
    const base = o.incremental
      ? (await listSnapshots(volume, `${BASE_PREFIX}${tag}`)).find((s) =>
          s.id.endsWith(`${BASE_PREFIX}${tag}`),
        )
      : undefined;
    if (o.incremental && !base)
      throw new ReseedError(
        'PREFLIGHT_FAILED',
        `the donor keeps no base snapshot for ${o.replica}: an incremental send needs the one sent last (do a full clone)`,
      );
    const id = randomBytes(12).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const name = `${TEMP_PREFIX}${tag}-${id}`;
    // Recorded before the snapshot exists: a crash between the two leaves nothing the sweep misses.
    const planned = snapshotId(volume, name);
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    const record = join(this.root, `${id}.json`);
    writeFileSync(record, JSON.stringify(planned), { mode: 0o600 });
    const started = Date.now();
    let q: Awaited<ReturnType<typeof quiesce>>;
    try {
      q = await quiesce(endpoint, {
        mode: 'auto',
        policy: {
          ...DEFAULT_READ_LOCK_POLICY,
          lockWaitTimeoutMs: o.lockWaitTimeoutMs,
          maxLockTimeMs: o.maxLockTimeMs,
        },
        log: this.log,
        signal: o.signal,
        // A donor that replicates: its applier waits for the snapshot. The record says so first,
        // so that the next start of an agent killed meanwhile starts it again.
        pauseApplier: {
          before: () =>
            writeFileSync(record, JSON.stringify({ ...planned, resumeApplier: true }), { mode: 0o600 }),
          after: () => writeFileSync(record, JSON.stringify(planned), { mode: 0o600 }),
        },
      });
    } catch (err) {
      rmSync(record, { force: true });
      throw err;
    }
    const lockedAt = Date.now();
    let snapshot: Snapshot | undefined;
    let failure: unknown;
    try {
      faultPoint('snapshot-locked');
      snapshot = await takeSnapshot(volume, name);
      // The watchdog ended the lock before the snapshot was taken: it may hold later commits.
      q.lock.assertHeld();
    } catch (err) {
      failure = err;
    }
    const heldMs = await q.release().catch(() => Date.now() - lockedAt);
    if (failure !== undefined || !snapshot) {
      await destroySnapshot(planned).catch(() => undefined);
      rmSync(record, { force: true });
      throw new ReseedError('COPY_FAILED', `the donor's snapshot failed: ${errorMessage(failure)}`, {
        cause: failure,
      });
    }
    faultPoint('snapshot-taken');
    const report: SnapshotReport = {
      fullBytes: await snapshotFullBytes(snapshot),
      state: 'taken',
      fs: volume.fs,
      name,
      lockHeldMs: heldMs,
      lockWaitMs: lockedAt - started,
      coordinates: q.coordinates,
      donorOnly,
      base: base?.id,
      bytes: 0,
    };
    this.#taken.set(id, {
      id,
      secretHash: sha(secret),
      snapshot,
      base,
      replica: tag,
      idleMs: o.idleTimeoutMs,
      resumeMs: o.resumeTimeoutMs ?? 30_000,
      lastSent: Date.now(),
      lastUsed: Date.now(),
      generation: 0,
      resumes: 0,
      report,
    });
    this.log.info({ snapshot: snapshot.id, lockHeldMs: heldMs }, 'snapshot taken');
    return { id, secret, report };
  }

  authorize(id: string, authorization: string | undefined): Taken {
    const t = this.#taken.get(id);
    const given = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    if (!t || !given || !timingSafeEqual(sha(given), t.secretHash))
      throw new ReseedError('TRANSPORT_AUTH_FAILED', 'unknown snapshot or wrong credential');
    t.lastUsed = Date.now();
    return t;
  }

  report(id: string): SnapshotReport {
    const t = this.#get(id);
    t.lastUsed = Date.now();
    return { ...t.report };
  }

  /**
   * `btrfs send` / `zfs send` of the snapshot, framed. `from`: a resume after a cut. The send is
   * run again (the snapshot is read-only and its send stream the same each time: checked, not
   * assumed), its first `offset` bytes are read and hashed but not sent, and the rest follows
   * once their digest equals the one the joiner holds for what it received. A send still running
   * for a connection the joiner gave up on is stopped first. A stream the donor wrote to its end
   * may still have been cut on its way ('sent' says only that the socket took every byte).
   */
  stream(t: Taken, codec: Codec, from?: { offset: number; digest: string }): AsyncGenerator<Buffer> {
    if (
      from === undefined
        ? t.child || t.report.state !== 'taken'
        : !['streaming', 'interrupted', 'sent'].includes(t.report.state)
    )
      throw new ReseedError(
        'AGENT',
        from === undefined
          ? 'this snapshot was streamed already: a resume names the offset and digest it goes on from'
          : `this snapshot's stream cannot be resumed: it is ${t.report.state}${t.report.error ? ` (${t.report.error})` : ''}`,
      );
    t.child?.kill();
    const generation = ++t.generation;
    const current = () => t.generation === generation;
    t.report.state = 'streaming';
    t.report.error = undefined;
    t.lastSent = Date.now();
    if (from) t.resumes++;
    const child = sendSnapshot(t.snapshot, t.base);
    t.child = child;
    const log = this.log;
    const drop = async () => {
      await destroySnapshot(t.snapshot).catch((err: unknown) =>
        log.error({ err, snapshot: t.snapshot.id }, 'a snapshot whose stream failed could not be removed'),
      );
      rmSync(join(this.root, `${t.id}.json`), { force: true });
    };
    const hash = new SegmentDigest();
    let skip = from?.offset ?? 0;
    let read = 0;
    async function* output(): AsyncGenerator<Buffer> {
      for await (const chunk of child.stdout! as AsyncIterable<Buffer>) {
        if (read === 0) faultPoint('snapshot-streaming');
        read += chunk.length;
        if (current()) t.lastUsed = Date.now();
        let rest = chunk;
        if (skip > 0) {
          const before = rest.subarray(0, Math.min(skip, rest.length));
          hash.update(before);
          skip -= before.length;
          rest = rest.subarray(before.length);
          if (skip > 0) continue;
          // Test-only: a send that is not the same the second time.
          if (faultActive('send-differs')) hash.update(Buffer.from('x'));
          if (hash.digest() !== from!.digest) throw new SendDiffers(from!.offset);
        }
        if (rest.length === 0) continue;
        if (current()) {
          t.report.bytes = read;
          t.lastSent = Date.now();
        }
        yield rest;
      }
      await child.done;
      // A stream shorter than the offset the joiner holds cannot be the same stream.
      if (skip > 0) throw new SendDiffers(from!.offset);
    }
    async function* framed(): AsyncGenerator<Buffer> {
      let ok = false;
      let failed: string | undefined;
      try {
        for await (const f of streamFrames(
          output(),
          codec,
          (err) => {
            failed =
              err instanceof SendDiffers
                ? err.message
                : child.stderrTail().slice(-6).join('\n') || String(err);
            return err instanceof SendDiffers
              ? failed
              : `${t.snapshot.fs} send failed on the donor: ${failed}`;
          },
          hash,
        ))
          yield f;
        ok = failed === undefined;
      } finally {
        child.kill();
        await child.done.catch(() => undefined);
        if (current()) {
          t.child = undefined;
          log.info({ snapshot: t.snapshot.id, bytes: read, ok, resumes: t.resumes }, 'snapshot stream ended');
          if (ok) t.report.state = 'sent';
          else if (failed === undefined) {
            // The joiner stopped reading (a cut, most likely): kept, for it to resume, until the
            // snapshot's idle timeout.
            t.report.state = 'interrupted';
          } else {
            t.report.state = 'failed';
            t.report.error = failed;
            // A snapshot whose send failed serves nobody any more.
            t.dropped = drop();
          }
        }
      }
    }
    return framed();
  }

  /**
   * The joiner is done with the snapshot. `keep`: its clone stands, so the snapshot becomes the
   * replica's base for the next refresh (the previous base goes); otherwise it is destroyed.
   */
  async close(id: string, keep: boolean): Promise<SnapshotReport | undefined> {
    const t = this.#taken.get(id);
    if (!t) return undefined;
    this.#taken.delete(id);
    // A stream still running ends without touching the snapshot: it is removed (or kept) here.
    t.generation++;
    t.child?.kill();
    await t.child?.done.catch(() => undefined);
    const record = join(this.root, `${id}.json`);
    try {
      if (keep && t.report.state === 'sent') {
        const name = `${BASE_PREFIX}${t.replica}`;
        const volume = await this.volume();
        if (typeof volume !== 'string')
          for (const old of await listSnapshots(volume, name))
            if (old.id.endsWith(name)) await destroySnapshot(old);
        const kept = await renameSnapshot(t.snapshot, name);
        t.report.state = 'kept';
        t.report.keptAs = name;
        this.log.info({ base: kept.id }, "snapshot kept as the replica's base");
      } else {
        if (t.dropped) await t.dropped;
        else await destroySnapshot(t.snapshot);
        t.report.state = 'closed';
      }
    } catch (err) {
      t.report.error = `the snapshot ${t.snapshot.id} could not be ${keep ? 'kept' : 'removed'}: ${errorMessage(err)}`;
      this.log.error({ err, snapshot: t.snapshot.id }, t.report.error);
    } finally {
      rmSync(record, { force: true });
    }
    return { ...t.report };
  }

  /** The bases kept for replicas, with what each costs on disk. */
  async bases(): Promise<
    { replica: string; snapshot: string; bytes: number | undefined; identity: string | undefined }[]
  > {
    const volume = await this.volume();
    if (typeof volume === 'string') return [];
    const out = [];
    for (const s of await listSnapshots(volume, BASE_PREFIX)) {
      const at = s.id.lastIndexOf(BASE_PREFIX);
      out.push({
        replica: s.id.slice(at + BASE_PREFIX.length),
        snapshot: s.id,
        /** the blocks only it holds: what keeping it costs */
        bytes: await snapshotBytes(s),
        /** btrfs UUID / ZFS guid: the joiner's received copy carries the same */
        identity: await snapshotIdentity(s),
      });
    }
    return out;
  }

  /** Removes the base kept for a replica (its next refresh is a full send). */
  async dropBase(replica: string): Promise<boolean> {
    const volume = await this.volume();
    if (typeof volume === 'string') return false;
    const name = `${BASE_PREFIX}${replicaTag(replica)}`;
    const found = (await listSnapshots(volume, name)).filter((s) => s.id.endsWith(name));
    const inUse = [...this.#taken.values()].find((t) => found.some((s) => s.id === t.base?.id));
    if (inUse)
      throw new ReseedError(
        'AGENT',
        `the base kept for ${replica} is in use: an incremental send against it (snapshot ${inUse.report.name}, ${inUse.report.state}) has not ended; remove it once that refresh is over`,
      );
    for (const s of found) await destroySnapshot(s);
    return found.length > 0;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.allSettled([...this.#taken.keys()].map((id) => this.close(id, false)));
  }

  #get(id: string): Taken {
    const t = this.#taken.get(id);
    if (!t)
      throw new ReseedError('NOT_FOUND', `no snapshot ${id} on this agent (closed, or the agent restarted)`);
    return t;
  }

  #expire(): void {
    const now = Date.now();
    for (const t of this.#taken.values())
      if (t.report.state !== 'streaming' && now - t.lastUsed > t.idleMs) {
        this.log.warn(
          { snapshot: t.snapshot.id },
          'snapshot removed: nobody asked for it within its idle timeout',
        );
        void this.close(t.id, false);
      } else if (
        (t.report.state === 'streaming' || t.report.state === 'interrupted') &&
        now - t.lastSent > t.resumeMs + 5000
      ) {
        // Nothing sent for longer than the joiner waits to resume: it gave up. Its agent asks
        // after the snapshot while its clone lives, but a joiner whose agent was killed never
        // resumes, and a silent link (the socket takes nothing, no error for minutes) never ends.
        this.log.warn(
          { snapshot: t.snapshot.id, state: t.report.state },
          'snapshot removed: its stream sent nothing for longer than the resume timeout',
        );
        void this.close(t.id, false);
      }
  }

  /** The applier an agent killed during a snapshot's lock had paused: started again, unless it runs. */
  async #resumeApplier(): Promise<void> {
    const server = await connect(agentEndpoint(this.config));
    try {
      const facts = await inspect(server);
      if (facts.replica && !facts.replica.sqlRunning) {
        await server.query(facts.flavor.startReplicaSqlThreadSql);
        this.log.warn(
          "started the replica's applier again: an earlier agent process paused it for a snapshot",
        );
      }
    } finally {
      await server.close();
    }
  }

  /**
   * Temporary snapshots a previous agent process left (it was killed): destroyed; a replica's
   * applier it had paused for the lock: started again (the record stays until that worked).
   */
  async #sweep(): Promise<void> {
    if (!existsSync(this.root)) return;
    for (const name of readdirSync(this.root).filter((n) => n.endsWith('.json'))) {
      const file = join(this.root, name);
      try {
        const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot & { resumeApplier?: boolean };
        if (s.id && (await snapshotExists(s))) {
          await destroySnapshot(s);
          this.log.warn({ snapshot: s.id }, 'removed a snapshot left by an earlier agent process');
        }
        if (s.resumeApplier) await this.#resumeApplier();
        rmSync(file, { force: true });
      } catch (err) {
        this.log.error(
          { err, record: file },
          'a snapshot left by an earlier agent process could not be removed',
        );
      }
    }
  }
}

/** Every file under `root`, relative, without descending into other mounts' snapshot folders. */
function listFiles(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(root, r));
    else out.push(r);
  }
  return out;
}
