import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, sep } from 'node:path';
import { ReseedError } from '../errors.js';
import { RateGate } from '../throttle/rate-gate.js';
import { errorFrame, segmentFrames } from '../transport/send.js';
import type { Codec } from '../transport/codec.js';
import { blockSums } from '../transport/delta.js';
import { entryPath, scanTree, segmentKey, treeHash } from '../transport/tree.js';
import type { EntryMeta, TreeManifest } from '../transport/tree.js';

/**
 * A file last modified less than this before a pass listed it may be written again within the
 * same tick of the filesystem's clock without its mtime changing (git's "racy clean"): it is never
 * taken as unchanged since that pass.
 */
const RACY_MS = 2000;

/** What a closed pass leaves for the next one over the same tree (see TreeEntry.same). */
export interface PassRecord {
  manifest: TreeManifest;
  meta: EntryMeta[];
  /** when its tree was listed (before the scan began) */
  listedAt: number;
  sent: Map<string, SentSegment>;
}

/** A segment sent whole (or proven equal by its digests): its hash and length. */
interface SentSegment {
  hash: string;
  length: number;
}

interface Transfer {
  id: string;
  root: string;
  manifest: TreeManifest;
  /** SHA-256 of the one-time credential; the credential itself is only ever in the peer's hands */
  secretHash: Buffer;
  gate: RateGate;
  lastUsed: number;
  /** closed after this long without a request (the receiver's resume timeout, and a margin) */
  idleMs: number;
  /** each segment as last sent whole, by segmentKey */
  sent: Map<string, SentSegment>;
  /** each entry's inode and ctime, as listed */
  meta: EntryMeta[];
  listedAt: number;
  /** entries whose hashes in `sent` were carried over from the previous pass, until one is asked for */
  carried: Set<number>;
  /** streams open now, to be ended when the transfer is closed */
  streams: Set<AbortController>;
}

const sha = (s: string) => createHash('sha256').update(s).digest();

/** Whether `path` is `root` or inside it, after symlinks are resolved. */
export function within(path: string, roots: string[]): boolean {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return false;
  }
  return roots.some((r) => {
    let root: string;
    try {
      root = realpathSync(r);
    } catch {
      return false; // a root that does not exist holds nothing
    }
    return real === root || real.startsWith(root + sep);
  });
}

/**
 * The donor side of the data channel: trees this agent serves, each behind a credential made for
 * one transfer (32 random bytes) that the joiner's agent presents on every data request. A
 * transfer idle for longer than the receiver's resume timeout (it gave up, or could not say it
 * was done) is closed and its credential dies.
 * Only paths under the configured `serve` directories are served, and a data request names a
 * segment of the tree scanned when the transfer was opened, never a path.
 */
export class Transfers {
  readonly #transfers = new Map<string, Transfer>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    readonly roots: string[],
    readonly idleMs: number,
  ) {
    this.#timer = setInterval(() => this.#expire(), 1000);
    this.#timer.unref();
  }

  open(
    path: string,
    maxRate: number | undefined,
    idleMs = this.idleMs,
    /**
     * the copy method's own passes over this host's datadir: not a `serve` path, files skipped;
     * `previous`: the first pass, whose files unchanged since are marked `same`
     */
    own?: { skip: (rel: string, isDir: boolean) => boolean; previous?: PassRecord | undefined },
  ): { id: string; secret: string; files: number; bytes: number; same: number } {
    if (!isAbsolute(path)) throw new ReseedError('USAGE', `${path} is not an absolute path`);
    if (!existsSync(path)) throw new ReseedError('USAGE', `${path} does not exist on this host`);
    if (!statSync(path).isDirectory())
      throw new ReseedError('USAGE', `${path} is not a directory: a transfer sends a directory tree`);
    if (!own && !within(path, this.roots))
      throw new ReseedError(
        'USAGE',
        `${path} is not under a directory this agent serves (serve: ${this.roots.join(', ') || 'none'})`,
      );
    const listedAt = Date.now();
    const meta: EntryMeta[] = [];
    const manifest = scanTree(path, own?.skip, meta);
    const id = randomBytes(12).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const t: Transfer = {
      id,
      root: path,
      manifest,
      secretHash: sha(secret),
      gate: new RateGate(maxRate ?? Infinity),
      lastUsed: Date.now(),
      idleMs,
      sent: new Map(),
      meta,
      listedAt,
      carried: new Set(),
      streams: new Set(),
    };
    if (own?.previous) carryOver(t, own.previous);
    this.#transfers.set(id, t);
    return { id, secret, files: manifest.files, bytes: manifest.bytes, same: t.carried.size };
  }

  /** Closes a transfer and returns what the next pass over the same tree needs of it. */
  retire(id: string): PassRecord | undefined {
    const t = this.#transfers.get(id);
    this.close(id);
    return (
      t && {
        manifest: t.manifest,
        meta: t.meta,
        listedAt: t.listedAt,
        sent: t.sent,
      }
    );
  }

  /** An entry asked for again: the hashes carried over for it give way to what is sent now. */
  #uncarry(t: Transfer, entry: number): void {
    if (!t.carried.delete(entry)) return;
    for (const key of [...t.sent.keys()]) if (key.startsWith(`${entry}:`)) t.sent.delete(key);
  }

  /** The transfer, if `secret` is its credential; otherwise 401, saying nothing about which part failed. */
  authorize(id: string, authorization: string | undefined): Transfer {
    const t = this.#transfers.get(id);
    const given = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    if (!t || !given || !timingSafeEqual(sha(given), t.secretHash))
      throw new ReseedError('TRANSPORT_AUTH_FAILED', 'unknown transfer or wrong credential');
    t.lastUsed = Date.now();
    return t;
  }

  manifest(t: Transfer): TreeManifest {
    return t.manifest;
  }

  /** The frames of one segment, checked against the manifest; the END frame's hash is kept. */
  async *segment(
    t: Transfer,
    q: {
      entry: number;
      offset: number;
      length: number;
      from: number;
      codec: Codec;
      part?: boolean | undefined;
      /** fail the segment if its file changed since the transfer listed it */
      unchanged?: boolean | undefined;
    },
  ): AsyncGenerator<Buffer> {
    const e = t.manifest.entries[q.entry];
    if (
      !e ||
      e.kind !== 'file' ||
      q.offset < 0 ||
      q.length < 0 ||
      q.offset + q.length > e.size ||
      q.from > q.length
    )
      throw new ReseedError('USAGE', 'no such segment in this transfer');
    this.#uncarry(t, q.entry);
    const ac = new AbortController();
    t.streams.add(ac);
    try {
      const frames = segmentFrames({
        path: entryPath(Buffer.from(t.root), e),
        offset: q.offset,
        length: q.length,
        from: q.from,
        codec: q.codec,
        gate: t.gate,
        signal: ac.signal,
        // A part of a segment (the blocks a delta asks for) is not a segment of the tree.
        onDigest: (hex) => {
          if (q.part) return;
          t.sent.set(segmentKey(q), { hash: hex, length: q.length });
        },
        unchanged: q.unchanged ? { size: e.size, mtimeMs: e.mtimeMs } : undefined,
      });
      for await (const chunk of frames) {
        t.lastUsed = Date.now();
        yield chunk;
      }
    } catch (err) {
      // The receiver reads the reason; the HTTP status is long sent.
      yield errorFrame(err instanceof Error ? err.message : String(err));
    } finally {
      t.streams.delete(ac);
    }
  }

  /**
   * For a receiver that holds an older copy (delta mode): the digest of each `block` bytes of a
   * segment, and of the whole segment, which counts as sent (the receiver proves it holds the
   * same bytes by the tree hash). Read here, never sent: only the blocks that differ cross.
   */
  async sums(
    t: Transfer,
    q: { entry: number; offset: number; length: number; block: number },
  ): Promise<{ digest: string; blocks: string[] }> {
    const e = t.manifest.entries[q.entry];
    if (!e || e.kind !== 'file' || q.offset < 0 || q.length < 0 || q.offset + q.length > e.size)
      throw new ReseedError('USAGE', 'no such segment in this transfer');
    this.#uncarry(t, q.entry);
    const { digest, blocks } = await blockSums(
      entryPath(Buffer.from(t.root), e),
      q.offset,
      q.length,
      q.block,
    );
    t.sent.set(segmentKey(q), { hash: digest, length: q.length });
    t.lastUsed = Date.now();
    return { digest, blocks };
  }

  treeHash(t: Transfer): string {
    return treeHash(t.manifest, new Map([...t.sent].map(([key, s]) => [key, s.hash])));
  }

  close(id: string, why = 'the transfer was closed'): void {
    const t = this.#transfers.get(id);
    if (!t) return;
    // The receiver reads this in the error frame of each stream still open.
    for (const s of t.streams)
      s.abort(new ReseedError('ABORTED', `the sending agent ended this stream: ${why}`));
    this.#transfers.delete(id);
  }

  /** When a transfer was last asked for something (a stream writing counts), or undefined when closed. */
  lastUsed(id: string): number | undefined {
    const t = this.#transfers.get(id);
    if (!t) return undefined;
    return t.streams.size > 0 ? Date.now() : t.lastUsed;
  }

  get count(): number {
    return this.#transfers.size;
  }

  #expire(): void {
    const now = Date.now();
    for (const t of this.#transfers.values())
      if (now - t.lastUsed > t.idleMs && t.streams.size === 0) this.close(t.id, 'it idled out');
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const id of [...this.#transfers.keys()]) this.close(id, 'the agent is stopping');
  }
}

/**
 * Marks the files of `t` unchanged since `previous` (same inode, size, mtime and ctime, modified
 * RACY_MS or more before `previous` was listed, and every byte of them sent whole by it) and
 * carries their segment hashes over: the receiver that skips them and this transfer then compute
 * the same tree hash. A write after that listing sets the mtime to at least the time of the
 * write, later than the one recorded, so it cannot go unseen.
 */
function carryOver(t: Transfer, previous: PassRecord): void {
  const before = new Map(previous.manifest.entries.map((e, i) => [e.path, i]));
  const segments = new Map<number, [number, number, string][]>();
  for (const [key, { hash, length }] of previous.sent) {
    const [entry, offset] = key.split(':').map(Number) as [number, number];
    const list = segments.get(entry) ?? [];
    list.push([offset, length, hash]);
    segments.set(entry, list);
  }
  const settled = previous.listedAt - RACY_MS;
  t.manifest.entries.forEach((e, i) => {
    const j = before.get(e.path);
    if (e.kind !== 'file' || e.size === 0 || j === undefined) return;
    const p = previous.manifest.entries[j]!;
    const [pm, m] = [previous.meta[j], t.meta[i]];
    if (!pm || !m || p.kind !== 'file' || p.size !== e.size || p.mtimeMs !== e.mtimeMs) return;
    // A write sets both times to its own; only an mtime already as late as the listing's tick
    // could stay the same through one.
    if (pm.ino !== m.ino || pm.ctimeMs !== m.ctimeMs || !(p.mtimeMs < settled)) return;
    // Every byte sent whole in the previous pass, in segments that follow each other.
    const list = (segments.get(j) ?? []).sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [offset, length] of list) {
      if (offset !== at || length <= 0) return;
      at += length;
    }
    if (at !== e.size) return;
    for (const [offset, length, hash] of list) {
      t.sent.set(`${i}:${offset}`, { hash, length });
    }
    t.carried.add(i);
    e.same = true;
  });
}
