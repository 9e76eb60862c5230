import { existsSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { chmod, lutimes, open, rm, symlink, utimes } from 'node:fs/promises';
import { setMaxListeners } from 'node:events';
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { ReseedError, abortError, errorMessage, isReseedError } from '../errors.js';
import type { Codec } from './codec.js';
import { zstdAvailable } from './codec.js';
import { SegmentDigest } from './digest.js';
import { FRAME, FrameDecoder } from './frame.js';
import type { Frame } from './frame.js';
import { DELTA_BLOCK, blockSums, differingRuns, equalRuns } from './delta.js';
import { entryPath, joinRaw, planSegments, segmentKey, treeHash } from './tree.js';
import type { Segment, TreeManifest } from './tree.js';

/** Where a transfer is served from: the donor agent, the transfer's id and its one-time credential. */
export interface TransferSource {
  url: string;
  transfer: string;
  secret: string;
  tls?:
    | {
        ca?: string | undefined;
        cert?: string | undefined;
        key?: string | undefined;
        servername?: string | undefined;
      }
    | undefined;
}

export interface ReceiveOptions {
  source: TransferSource;
  /** a directory that does not exist yet, or an empty one (but for `marker`); with `update`, an older copy */
  dest: string;
  /**
   * Delta mode: `dest` holds an older copy of the tree (a first pass, an earlier clone). Each file
   * there is compared block by block with the donor's (digests computed on both sides, only
   * they cross) and only the blocks that differ are sent; what the donor no longer has is removed.
   */
  update?: boolean | undefined;
  /**
   * Delta mode into a new `dest`: `base` (never written) holds an older copy of the tree. A file
   * there under the same path is compared block by block with the donor's; the blocks that are
   * equal are copied from it locally, only the others cross the link.
   */
  base?: string | undefined;
  /**
   * A first pass over files that change while they are read (a live datadir): a segment that
   * cannot be sent as it was listed (the file shrank, went, changed under its digest) is left as
   * it is, counted in `skipped`, and there is no tree hash: a second pass in delta mode makes it exact.
   */
  bestEffort?: boolean | undefined;
  /**
   * The segment hashes a previous pass over the same tree left in `dest` (its report's
   * `segmentHashes`): a file the sender marks `same` whose every segment is there is not read
   * again; its hashes count as received.
   */
  previous?: SegmentHashes | undefined;
  /** return `segmentHashes` in the report, for a pass that follows this one */
  keepHashes?: boolean | undefined;
  /** a file the caller put in `dest` to prove it made it; not part of the tree, removed at the end */
  marker?: string | undefined;
  /** leave `marker` in place at the end (a caller that undoes by it until it commits) */
  keepMarker?: boolean | undefined;
  parallel: number;
  /** 'auto': none at first, then chosen from the link's measured speed (see chooseCodec) */
  codec: Codec | 'auto';
  segmentBytes?: number | undefined;
  /** how long the channel may be cut (no byte arriving on a stream) before the transfer fails */
  resumeTimeoutMs: number;
  /** no byte for this long on a stream: the stream is taken as cut and asked again from where it was */
  stallTimeoutMs?: number | undefined;
  signal: AbortSignal;
  onProgress?: ((p: ReceiveProgress) => void) | undefined;
}

export interface ReceiveProgress {
  bytes: number;
  totalBytes: number;
  wireBytes: number;
  segmentsDone: number;
  segments: number;
  resumes: number;
}

export interface ReceiveReport {
  /** the codec asked for (with 'auto': the one chosen) */
  codec: Codec;
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  /** bytes that crossed the link, frames included */
  wireBytes: number;
  /** bytes sent as holes (runs of zeros) */
  zeroBytes: number;
  resumes: number;
  /** segments sent again whole because their hash did not match */
  resent: number;
  /** delta mode: bytes the receiver already held (same digest), not sent */
  reusedBytes: number;
  /** best effort: segments left as they were (their files changed while they were read) */
  skipped: number;
  /** files the sender vouched unchanged since `previous`, not read on either side */
  unchangedFiles: number;
  /** SHA-256 over the tree (paths, kinds, modes, sizes and every segment's hash), equal on both sides */
  treeHash: string;
  durationMs: number;
  /** with `keepHashes`: every segment received and proven, by file */
  segmentHashes?: SegmentHashes | undefined;
}

/** Proven segments by file (the path as in the manifest): [offset, length, hash]. */
export type SegmentHashes = Record<string, [number, number, string][]>;

const DEFAULT_SEGMENT = 64 << 20;
const AUTO_SEGMENT = 16 << 20;
const ZEROS = Buffer.alloc(1 << 20);

/**
 * Pulls a directory tree from a donor agent into `dest`: directories and empty files first (each
 * file truncated to its size, so holes stay holes), then the segments over `parallel` streams,
 * every frame's checksum checked and every segment's digest compared with the donor's before it counts;
 * a stream that is cut asks again from its last checked byte, until the channel has been silent
 * for `resumeTimeoutMs`. Modes and times are set last, and the donor's tree hash is compared.
 * Memory stays bounded: a stream holds at most a few frames.
 */
export async function receiveTree(o: ReceiveOptions): Promise<ReceiveReport> {
  const started = Date.now();
  const { source, signal } = o;
  // Each stream's requests listen on the one abort signal.
  setMaxListeners(Math.max(64, o.parallel * 4), signal);
  const url = new URL(source.url);
  const tls = source.tls;
  const stall = o.stallTimeoutMs ?? Math.min(10_000, Math.max(1000, o.resumeTimeoutMs / 3));
  const pool = new Pool(url.origin, {
    connections: o.parallel,
    ...(url.protocol === 'https:'
      ? {
          connect: {
            ca: tls?.ca,
            cert: tls?.cert,
            key: tls?.key,
            // SNI takes host names only (an IP address there is deprecated).
            servername:
              tls?.servername ?? (isIP(url.hostname.replace(/^\[|\]$/g, '')) ? undefined : url.hostname),
            rejectUnauthorized: true,
            // A peer that accepts the connection but never answers (stopped, frozen) is a cut too.
            timeout: stall,
          },
        }
      : { connect: { timeout: stall } }),
  });
  const transferBase = `/v1/transfers/${encodeURIComponent(source.transfer)}`;
  const auth = { authorization: `Bearer ${source.secret}` };
  let begun = false;
  try {
    const manifest = (await withResume(o, () =>
      getJson(pool, `${transferBase}/manifest`, auth, stall, signal),
    )) as TreeManifest;
    begun = true;
    const root = Buffer.from(o.dest);
    prepareDest(o.dest, o.marker, o.update === true);
    const held = o.update ? await updateEntries(o.dest, manifest, o.marker) : new Map<number, number>();
    if (!o.update) await makeEntries(root, manifest);
    const base = o.base === undefined ? undefined : Buffer.from(o.base);
    if (base)
      for (const [i, e] of manifest.entries.entries()) {
        if (e.kind !== 'file' || e.size === 0) continue;
        const st = lstatSync(entryPath(base, e), { throwIfNoEntry: false });
        if (st?.isFile() && st.size > 0) held.set(i, st.size);
      }
    // With 'auto', smaller segments: the codec chosen after the measurement applies to new requests.
    const segments = planSegments(
      manifest,
      o.segmentBytes ?? (o.codec === 'auto' ? AUTO_SEGMENT : DEFAULT_SEGMENT),
    );
    const hashes = new Map<string, string>();
    const progress: ReceiveProgress = {
      bytes: 0,
      totalBytes: manifest.bytes,
      wireBytes: 0,
      segmentsDone: 0,
      segments: segments.length,
      resumes: 0,
    };
    const counts = { zeroBytes: 0, resent: 0, reusedBytes: 0, skipped: 0 };
    const codec = codecChooser(o.codec, progress);
    const unchanged = o.previous ? carriedEntries(manifest, segments, held, o.previous) : new Map();
    for (const list of unchanged.values())
      for (const [key, length, hash] of list) {
        hashes.set(key, hash);
        counts.reusedBytes += length;
        progress.bytes += length;
        progress.segmentsDone++;
      }
    const queue = segments.filter((s) => !unchanged.has(s.entry));
    const worker = async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        const job: SegmentJob = {
          pool,
          base: transferBase,
          auth,
          root,
          manifest,
          s,
          o,
          stall,
          progress,
          counts,
          codec,
          older: base,
        };
        try {
          const had = held.get(s.entry) ?? 0;
          hashes.set(segmentKey(s), had > s.offset ? await deltaSegment(job) : await fetchSegment(job));
        } catch (err) {
          // Only a segment the sender could not send as listed (its file changed) is left: a cut
          // channel or a sender that is gone fails the pass, or every segment would wait it out.
          if (!o.bestEffort || signal.aborted || !isReseedError(err) || err.code !== 'COPY_FAILED') throw err;
          counts.skipped++;
        }
        progress.segmentsDone++;
        o.onProgress?.({ ...progress });
      }
    };
    const workers = Array.from({ length: Math.max(1, Math.min(o.parallel, segments.length)) }, worker);
    const settled = await Promise.allSettled(workers);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    await finishEntries(root, manifest, o.keepMarker ? undefined : o.marker);
    const report = {
      codec: codec.chosen(),
      files: manifest.files,
      directories: manifest.entries.filter((e) => e.kind === 'dir').length,
      symlinks: manifest.entries.filter((e) => e.kind === 'symlink').length,
      bytes: progress.bytes - counts.reusedBytes,
      wireBytes: progress.wireBytes,
      zeroBytes: counts.zeroBytes,
      resumes: progress.resumes,
      resent: counts.resent,
      reusedBytes: counts.reusedBytes,
      skipped: counts.skipped,
      unchangedFiles: unchanged.size,
      ...(o.keepHashes ? { segmentHashes: byFile(manifest, segments, hashes) } : {}),
    };
    if (o.bestEffort) return { ...report, treeHash: '', durationMs: Date.now() - started };
    const mine = treeHash(manifest, hashes);
    const theirs = (await withResume(o, () =>
      getJson(pool, `${transferBase}/hash`, auth, stall, signal),
    )) as {
      treeHash: string;
    };
    if (theirs.treeHash !== mine)
      throw new ReseedError(
        'COPY_FAILED',
        `data channel: the tree hash differs (donor ${theirs.treeHash}, received ${mine})`,
      );
    return { ...report, treeHash: mine, durationMs: Date.now() - started };
  } catch (err) {
    // A credential refused once the transfer had begun: the sender restarted (and forgot it) or
    // closed it. The copy failed part-way (exit 6), as for a cut; not a refused login (exit 3).
    if (begun && isReseedError(err) && err.code === 'TRANSPORT_AUTH_FAILED')
      throw new ReseedError('TRANSPORT_FAILED', err.message, { cause: err, hints: err.hints });
    throw err;
  } finally {
    await pool.destroy().catch(() => undefined);
  }
}

/**
 * The files the sender marks `same` whose every planned segment the previous pass proved, with the
 * same offsets and lengths, and that `dest` holds at their size: their segment keys and hashes.
 */
function carriedEntries(
  manifest: TreeManifest,
  segments: Segment[],
  held: Map<number, number>,
  previous: SegmentHashes,
): Map<number, [string, number, string][]> {
  const planned = new Map<number, Segment[]>();
  for (const s of segments) {
    const list = planned.get(s.entry);
    if (list) list.push(s);
    else planned.set(s.entry, [s]);
  }
  const out = new Map<number, [string, number, string][]>();
  manifest.entries.forEach((e, i) => {
    if (!e.same || held.get(i) !== e.size) return;
    const before = new Map(
      (previous[e.path] ?? []).map(([offset, length, hash]) => [offset, { length, hash }]),
    );
    const list: [string, number, string][] = [];
    for (const s of planned.get(i) ?? []) {
      const b = before.get(s.offset);
      if (!b || b.length !== s.length) return;
      list.push([segmentKey(s), s.length, b.hash]);
    }
    if (list.length) out.set(i, list);
  });
  return out;
}

function byFile(manifest: TreeManifest, segments: Segment[], hashes: Map<string, string>): SegmentHashes {
  const out: SegmentHashes = {};
  for (const s of segments) {
    const hash = hashes.get(segmentKey(s));
    if (hash === undefined) continue;
    const path = manifest.entries[s.entry]!.path;
    (out[path] ??= []).push([s.offset, s.length, hash]);
  }
  return out;
}

/** The destination must be new or empty: a transfer never writes over anything (but in delta mode). */
function prepareDest(dest: string, marker: string | undefined, update: boolean): void {
  if (update && existsSync(dest) && lstatSync(dest).isDirectory()) return;
  if (existsSync(dest)) {
    if (!lstatSync(dest).isDirectory() || readdirSync(dest).some((n) => n !== marker))
      throw new ReseedError(
        'USAGE',
        `${dest} exists and is not an empty directory: a transfer never writes over anything`,
      );
  } else mkdirSync(dest, { mode: 0o700 });
}

async function makeEntries(root: Buffer, manifest: TreeManifest): Promise<void> {
  for (const e of manifest.entries) {
    const p = entryPath(root, e);
    if (e.kind === 'dir') mkdirSync(p, { mode: 0o700 });
    else if (e.kind === 'symlink') await symlink(Buffer.from(e.target ?? '', 'base64'), p);
    else {
      const f = await open(p, 'wx', 0o600);
      try {
        await f.truncate(e.size);
      } finally {
        await f.close();
      }
    }
  }
}

/**
 * Delta mode: the older copy in `dest` made to hold the donor's entries. What the donor does not
 * have (or has as another kind) is removed; a file kept is cut or extended to its new size. The
 * files kept, with their old sizes, are returned: their blocks are compared, not sent whole.
 */
async function updateEntries(dest: string, manifest: TreeManifest, marker: string | undefined) {
  const root = Buffer.from(dest);
  const wanted = new Map(manifest.entries.map((e) => [e.path, e.kind]));
  const prune = (rel: Buffer) => {
    for (const name of readdirSync(joinRaw(root, rel), { encoding: 'buffer' })) {
      const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      if (!rel.length && marker && name.toString() === marker) continue;
      const st = lstatSync(joinRaw(root, r));
      const kind = st.isDirectory()
        ? 'dir'
        : st.isFile()
          ? 'file'
          : st.isSymbolicLink()
            ? 'symlink'
            : 'other';
      if (wanted.get(r.toString('base64')) !== kind)
        rmSync(joinRaw(root, r), { recursive: true, force: true });
      else if (kind === 'dir') prune(r);
    }
  };
  prune(Buffer.alloc(0));
  const held = new Map<number, number>();
  for (const [i, e] of manifest.entries.entries()) {
    const p = entryPath(root, e);
    if (e.kind === 'dir') {
      if (!existsSync(p)) mkdirSync(p, { mode: 0o700 });
    } else if (e.kind === 'symlink') {
      await rm(p, { force: true });
      await symlink(Buffer.from(e.target ?? '', 'base64'), p);
    } else {
      const had = existsSync(p) ? lstatSync(p).size : -1;
      const f = await open(p, had >= 0 ? 'r+' : 'wx', 0o600);
      try {
        await f.truncate(e.size);
      } finally {
        await f.close();
      }
      if (had > 0) held.set(i, had);
    }
  }
  return held;
}

/**
 * A segment of a file the receiver holds an older copy of: the donor's block digests are asked
 * for, compared with this copy's, and only the runs that differ are fetched; the whole segment is
 * then checked against the donor's digest, and sent whole if it still differs.
 */
async function deltaSegment(j: SegmentJob): Promise<string> {
  const { s, o } = j;
  const path = entryPath(j.root, j.manifest.entries[s.entry]!);
  const query = new URLSearchParams({
    entry: String(s.entry),
    offset: String(s.offset),
    length: String(s.length),
    block: String(DELTA_BLOCK),
  });
  const theirs = (await withResume(o, () =>
    getJson(j.pool, `${j.base}/sums?${query.toString()}`, j.auth, Math.max(j.stall, 60_000), o.signal),
  )) as { digest: string; blocks: string[] };
  const older = j.older && entryPath(j.older, j.manifest.entries[s.entry]!);
  const mine = await blockSums(older ?? path, s.offset, s.length, DELTA_BLOCK, older !== undefined);
  const differ = differingRuns(mine.blocks, theirs.blocks, s.offset, s.length, DELTA_BLOCK);
  if (older) await copyRuns(older, path, equalRuns(differ, s.offset, s.length));
  let fetched = 0;
  for (const run of differ) {
    await fetchSegment({ ...j, s: { entry: s.entry, ...run }, part: true });
    fetched += run.length;
  }
  j.counts.reusedBytes += s.length - fetched;
  j.progress.bytes += s.length - fetched;
  const now =
    fetched || older ? (await blockSums(path, s.offset, s.length, DELTA_BLOCK)).digest : mine.digest;
  if (now === theirs.digest) {
    if (fetched || older) await syncFile(path);
    return now;
  }
  // The file changed on the donor between the digests and the blocks: the segment, whole.
  j.counts.resent++;
  j.counts.reusedBytes -= s.length - fetched;
  j.progress.bytes -= s.length - fetched;
  return fetchSegment(j);
}

/** The ranges of the older copy that equal the donor's, copied into the new tree. */
async function copyRuns(from: Buffer, to: Buffer, runs: { offset: number; length: number }[]): Promise<void> {
  if (!runs.length) return;
  const src = await open(from, 'r');
  const dst = await open(to, 'r+');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (const r of runs)
      for (let done = 0; done < r.length;) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, r.length - done), r.offset + done);
        if (bytesRead === 0) break; // the base changed under us: the segment's final check catches it
        // The new file reads as zeros already: a hole in the base stays a hole.
        for (let b = 0; b < bytesRead; b += DELTA_BLOCK) {
          const n = Math.min(DELTA_BLOCK, bytesRead - b);
          if (!buf.subarray(b, b + n).equals(ZEROS.subarray(0, n)))
            await dst.write(buf, b, n, r.offset + done + b);
        }
        done += bytesRead;
      }
  } finally {
    await Promise.allSettled([src.close(), dst.close()]);
  }
}

async function syncFile(path: Buffer): Promise<void> {
  const f = await open(path, 'r+');
  try {
    await f.sync();
  } finally {
    await f.close();
  }
}

/** Modes and modification times as on the donor; directories last and deepest first. */
async function finishEntries(
  root: Buffer,
  manifest: TreeManifest,
  marker: string | undefined,
): Promise<void> {
  for (const e of manifest.entries) {
    const p = entryPath(root, e);
    const t = e.mtimeMs / 1000;
    if (e.kind === 'file') {
      await chmod(p, e.mode);
      await utimes(p, t, t);
    } else if (e.kind === 'symlink') await lutimes(p, t, t);
  }
  for (const e of [...manifest.entries].reverse())
    if (e.kind === 'dir') {
      const p = entryPath(root, e);
      await chmod(p, e.mode);
      await utimes(p, e.mtimeMs / 1000, e.mtimeMs / 1000);
    }
  // The root last, once the caller's marker is gone (removing it would change the root's time).
  if (marker) await rm(Buffer.concat([root, Buffer.from('/' + marker)]), { force: true });
  await chmod(root, manifest.root.mode);
  await utimes(root, manifest.root.mtimeMs / 1000, manifest.root.mtimeMs / 1000);
}

interface SegmentJob {
  /** the codec to ask for now */
  codec: () => Codec;
  pool: Pool;
  base: string;
  auth: Record<string, string>;
  root: Buffer;
  manifest: TreeManifest;
  s: Segment;
  o: ReceiveOptions;
  stall: number;
  progress: ReceiveProgress;
  counts: { zeroBytes: number; resent: number; reusedBytes: number; skipped: number };
  /** a part of a segment (delta mode's differing blocks): the donor does not record it */
  part?: boolean | undefined;
  /** delta mode into a new tree: the older copy's root, read for equal blocks */
  older?: Buffer | undefined;
}

/** Fetches one segment, resuming after cuts; resolves to its checked SHA-256. */
async function fetchSegment(j: SegmentJob): Promise<string> {
  const { s, o, progress } = j;
  const entry = j.manifest.entries[s.entry]!;
  let received = 0;
  let hash = new SegmentDigest();
  let hashFailures = 0;
  let lastProgress = Date.now();
  const file = await open(entryPath(j.root, entry), 'r+');
  try {
    for (;;) {
      if (o.signal.aborted) throw abortError(o.signal);
      try {
        const query = new URLSearchParams({
          entry: String(s.entry),
          offset: String(s.offset),
          length: String(s.length),
          from: String(received),
          codec: j.codec(),
          ...(j.part ? { part: '1' } : {}),
          // A file written to while it is sent fails its segment; a best-effort pass (a live
          // datadir, made exact by a second pass) takes what it read.
          ...(o.bestEffort ? {} : { unchanged: '1' }),
        });
        const res = await j.pool.request({
          path: `${j.base}/segment?${query.toString()}`,
          method: 'GET',
          headers: j.auth,
          signal: o.signal,
          headersTimeout: j.stall,
          bodyTimeout: j.stall,
        });
        if (res.statusCode !== 200) throw await httpError(res.statusCode, res.body);
        const decoder = new FrameDecoder();
        res.body.on('error', (err) => decoder.destroy(err));
        res.body.pipe(decoder);
        let ended: Buffer | undefined;
        // Read to the body's end (nothing follows END): a body left paused after a break kept
        // its request, and its listener on the abort signal, alive; one per segment piled up.
        for await (const frame of decoder as AsyncIterable<Frame>) {
          lastProgress = Date.now();
          if (ended) throw new ReseedError('COPY_FAILED', 'data channel: a frame after the end of a segment');
          progress.wireBytes += frame.wireBytes;
          if (frame.type === FRAME.DATA) {
            await file.writev(frame.parts, s.offset + received);
            for (const part of frame.parts) hash.update(part);
          } else if (frame.type === FRAME.ZERO) {
            for (let left = frame.rawLength; left > 0; left -= ZEROS.length)
              hash.update(ZEROS.subarray(0, Math.min(left, ZEROS.length)));
            j.counts.zeroBytes += frame.rawLength;
          } else if (frame.type === FRAME.END) {
            ended = frame.payload;
            continue;
          } else throw new ReseedError('COPY_FAILED', `the donor agent: ${frame.payload.toString('utf8')}`);
          received += frame.rawLength;
          progress.bytes += frame.rawLength;
          // The job throttles what it reports: a large segment shows progress as it goes.
          o.onProgress?.({ ...progress });
        }
        if (!ended)
          throw new ReseedError('COPY_FAILED', 'data channel: the stream ended before the segment did', {
            retryable: true,
          });
        const mine = hash.digest();
        if (received !== s.length || mine !== ended.toString('utf8')) {
          // Never kept: the segment is asked for again, whole, once; a second mismatch fails.
          if (++hashFailures > 1)
            throw new ReseedError(
              'COPY_FAILED',
              `hash mismatch for ${entry.name} at ${s.offset} (sent twice): the file may be changing on the donor`,
            );
          j.counts.resent++;
          progress.bytes -= received;
          received = 0;
          hash = new SegmentDigest();
          continue;
        }
        if (!j.part && (s.offset + s.length === entry.size || s.length === 0)) await file.sync();
        return mine;
      } catch (err) {
        if (o.signal.aborted) throw abortError(o.signal);
        if (!retryable(err)) throw err;
        if (Date.now() - lastProgress > o.resumeTimeoutMs) throw cutTooLong(o, err);
        progress.resumes++;
        await sleep(Math.min(1000, 100 * progress.resumes), undefined, { signal: o.signal }).catch(
          () => undefined,
        );
      }
    }
  } finally {
    await file.close();
  }
}

/** Network trouble and retryable channel errors are resumed; refusals and our own errors are not. */
function retryable(err: unknown): boolean {
  if (isReseedError(err)) return err.retryable;
  const code = (err as { code?: string }).code ?? '';
  return /^(UND_ERR|ECONN|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTCONN|ERR_STREAM_PREMATURE_CLOSE|EAI_AGAIN)/.test(
    code,
  );
}

async function httpError(
  status: number,
  body: AsyncIterable<Buffer> & { text(): Promise<string> },
): Promise<ReseedError> {
  let message = `HTTP ${status}`;
  try {
    const parsed = JSON.parse(await body.text()) as { code?: string; message?: string };
    message = `${parsed.code ?? status}: ${parsed.message ?? ''}`;
  } catch {
    // not JSON: the status says enough
  }
  if (status === 401 || status === 403)
    return new ReseedError(
      'TRANSPORT_AUTH_FAILED',
      `the donor agent no longer knows this transfer (${message}): it restarted, or closed the transfer after the resume timeout; run the transfer again`,
    );
  return new ReseedError('TRANSPORT_FAILED', `the donor agent answered ${message}`, {
    retryable: status >= 500,
  });
}

async function getJson(
  pool: Pool,
  path: string,
  headers: Record<string, string>,
  timeout: number,
  signal: AbortSignal,
): Promise<unknown> {
  const res = await pool.request({
    path,
    method: 'GET',
    headers,
    signal,
    headersTimeout: timeout,
    bodyTimeout: timeout,
  });
  if (res.statusCode !== 200) throw await httpError(res.statusCode, res.body);
  return res.body.json();
}

async function withResume<T>(o: ReceiveOptions, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (o.signal.aborted) throw abortError(o.signal);
      if (!retryable(err)) throw err;
      if (Date.now() - started > o.resumeTimeoutMs) throw cutTooLong(o, err);
      await sleep(Math.min(1000, 100 * attempt));
    }
  }
}

/** A cut that outlasted --resume-timeout (trees and resumable streams alike). */
export function cutTooLong(o: { resumeTimeoutMs: number }, err: unknown): ReseedError {
  return new ReseedError(
    'TRANSPORT_FAILED',
    `the data channel was cut for more than ${Math.round(o.resumeTimeoutMs / 1000)} s (--resume-timeout): ${errorMessage(err)}`,
    { cause: err },
  );
}

/** How long 'auto' measures the link, uncompressed, before it chooses. */
const AUTO_MEASURE_MS = 2000;

/**
 * The codec for the next request. With 'auto', frames go uncompressed for the first two seconds
 * while the link's speed is measured; then a slow link (under 100 MB/s: a WAN, a shared 1 Gbit
 * link) gets zstd level 1, whose ratio pays for its CPU, a middling one (under 300 MB/s) lz4,
 * and a fast one none. What does not compress is sent as it is either way (see compress()).
 */
export function chooseCodec(bytesPerSecond: number, zstd = zstdAvailable()): Codec {
  if (bytesPerSecond < 100e6) return zstd ? 'zstd' : 'lz4';
  if (bytesPerSecond < 300e6) return 'lz4';
  return 'none';
}

function codecChooser(asked: Codec | 'auto', progress: ReceiveProgress): { (): Codec; chosen(): Codec } {
  if (asked !== 'auto') return Object.assign(() => asked, { chosen: () => asked });
  const started = Date.now();
  let choice: Codec | undefined;
  const current = () => {
    if (choice) return choice;
    const elapsed = Date.now() - started;
    if (elapsed < AUTO_MEASURE_MS) return 'none';
    choice = chooseCodec((progress.wireBytes / elapsed) * 1000);
    return choice;
  };
  return Object.assign(current, { chosen: () => choice ?? 'none' });
}
