import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, sep } from 'node:path';
import { ReseedError } from '../errors.js';
import { RateGate } from '../throttle/rate-gate.js';
import { errorFrame, segmentFrames } from '../transport/send.js';
import type { Codec } from '../transport/codec.js';
import { blockSums } from '../transport/delta.js';
import { entryPath, scanTree, segmentKey, treeHash } from '../transport/tree.js';
import type { TreeManifest } from '../transport/tree.js';

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
  /** the hash of each segment as last sent whole */
  sent: Map<string, string>;
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
    /** the copy method's own passes over this host's datadir: not a `serve` path, files skipped */
    own?: { skip: (rel: string, isDir: boolean) => boolean },
  ): { id: string; secret: string; files: number; bytes: number } {
    if (!isAbsolute(path)) throw new ReseedError('USAGE', `${path} is not an absolute path`);
    if (!existsSync(path)) throw new ReseedError('USAGE', `${path} does not exist on this host`);
    if (!statSync(path).isDirectory())
      throw new ReseedError('USAGE', `${path} is not a directory: a transfer sends a directory tree`);
    if (!own && !within(path, this.roots))
      throw new ReseedError(
        'USAGE',
        `${path} is not under a directory this agent serves (serve: ${this.roots.join(', ') || 'none'})`,
      );
    const manifest = scanTree(path, own?.skip);
    const id = randomBytes(12).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    this.#transfers.set(id, {
      id,
      root: path,
      manifest,
      secretHash: sha(secret),
      gate: new RateGate(maxRate ?? Infinity),
      lastUsed: Date.now(),
      idleMs,
      sent: new Map(),
      streams: new Set(),
    });
    return { id, secret, files: manifest.files, bytes: manifest.bytes };
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
        onDigest: (hex) => (q.part ? undefined : t.sent.set(segmentKey(q), hex)),
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
    const { digest, blocks } = await blockSums(
      entryPath(Buffer.from(t.root), e),
      q.offset,
      q.length,
      q.block,
    );
    t.sent.set(segmentKey(q), digest);
    t.lastUsed = Date.now();
    return { digest, blocks };
  }

  treeHash(t: Transfer): string {
    return treeHash(t.manifest, t.sent);
  }

  close(id: string): void {
    const t = this.#transfers.get(id);
    if (!t) return;
    for (const s of t.streams) s.abort();
    this.#transfers.delete(id);
  }

  get count(): number {
    return this.#transfers.size;
  }

  #expire(): void {
    const now = Date.now();
    for (const t of this.#transfers.values())
      if (now - t.lastUsed > t.idleMs && t.streams.size === 0) this.close(t.id);
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const id of [...this.#transfers.keys()]) this.close(id);
  }
}
