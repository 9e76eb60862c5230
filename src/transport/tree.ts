import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { ReseedError } from '../errors.js';

/**
 * A directory tree as the data channel sends it. File names are bytes on Linux (not always valid
 * UTF-8), so paths travel as base64 of their raw bytes; `name` is only for messages.
 */
export interface TreeEntry {
  /** base64 of the path's bytes, relative to the root, '/'-separated */
  path: string;
  name: string;
  kind: 'dir' | 'file' | 'symlink';
  mode: number;
  mtimeMs: number;
  size: number;
  /** a symlink's target, base64 of its bytes */
  target?: string | undefined;
  /**
   * The sender vouches that this file has not changed since the pass this transfer follows (the
   * copy method's second pass after its first): same inode, size, mtime and ctime, and last
   * modified well before that pass listed it. A receiver that holds that pass's digests for every
   * segment of it need not read it again (rsync's quick check, made safe against same-tick writes).
   */
  same?: boolean | undefined;
}

/** What scanTree also notes of each entry, kept by the sender only (see TreeEntry.same). */
export interface EntryMeta {
  ino: number;
  ctimeMs: number;
}

export interface TreeManifest {
  /** the root directory's own mode and time */
  root: { mode: number; mtimeMs: number };
  entries: TreeEntry[];
  files: number;
  bytes: number;
}

/** One request's worth of a file: [offset, offset + length). */
export interface Segment {
  /** index into the manifest's entries */
  entry: number;
  offset: number;
  length: number;
}

const SLASH = Buffer.from('/');

export function joinRaw(root: Buffer, rel: Buffer): Buffer {
  return rel.length === 0 ? root : Buffer.concat([root, SLASH, rel]);
}

export function entryPath(root: Buffer, entry: Pick<TreeEntry, 'path'>): Buffer {
  return joinRaw(root, Buffer.from(entry.path, 'base64'));
}

/**
 * Every directory, regular file and symlink under `root` (which is not itself listed), parents
 * before children. Anything else (a socket, a FIFO, a device) is refused by name: a datadir holds
 * none, and silently leaving one out would make the copy differ.
 */
export function scanTree(
  root: string,
  skip?: (rel: string, isDir: boolean) => boolean,
  /** filled with each entry's inode and ctime, in the order of `entries` */
  meta?: EntryMeta[],
): TreeManifest {
  const entries: TreeEntry[] = [];
  const rootRaw = Buffer.from(root);
  const walk = (rel: Buffer) => {
    const names = readdirSync(joinRaw(rootRaw, rel), { encoding: 'buffer' }).sort(Buffer.compare);
    for (const name of names) {
      const r = rel.length ? Buffer.concat([rel, SLASH, name]) : name;
      const abs = joinRaw(rootRaw, r);
      const st = lstatSync(abs);
      if (skip?.(r.toString('utf8'), st.isDirectory())) continue;
      meta?.push({ ino: st.ino, ctimeMs: st.ctimeMs });
      const base = {
        path: r.toString('base64'),
        name: r.toString('utf8'),
        mode: st.mode & 0o7777,
        mtimeMs: st.mtimeMs,
      };
      if (st.isDirectory()) {
        entries.push({ ...base, kind: 'dir', size: 0 });
        walk(r);
      } else if (st.isFile()) entries.push({ ...base, kind: 'file', size: st.size });
      else if (st.isSymbolicLink())
        entries.push({
          ...base,
          kind: 'symlink',
          size: 0,
          target: readlinkSync(abs, { encoding: 'buffer' }).toString('base64'),
        });
      else
        // Refused while the tree is listed, before anything is made: a usage error (exit 2).
        throw new ReseedError(
          'USAGE',
          `${abs.toString()} is neither a file, a directory nor a symlink: not sent`,
        );
    }
  };
  walk(Buffer.alloc(0));
  const files = entries.filter((e) => e.kind === 'file');
  const st = lstatSync(rootRaw);
  return {
    root: { mode: st.mode & 0o7777, mtimeMs: st.mtimeMs },
    entries,
    files: files.length,
    bytes: files.reduce((a, e) => a + e.size, 0),
  };
}

/**
 * Files cut into segments of at most `segmentBytes`, largest first so that parallel streams end
 * together (one big ibdata1 would otherwise finish alone). An empty file has one empty segment:
 * it too is proven by its END frame.
 */
export function planSegments(manifest: TreeManifest, segmentBytes: number): Segment[] {
  const out: Segment[] = [];
  manifest.entries.forEach((e, entry) => {
    if (e.kind !== 'file') return;
    if (e.size === 0) out.push({ entry, offset: 0, length: 0 });
    for (let offset = 0; offset < e.size; offset += segmentBytes)
      out.push({ entry, offset, length: Math.min(segmentBytes, e.size - offset) });
  });
  return out.sort((a, b) => b.length - a.length || a.entry - b.entry || a.offset - b.offset);
}

/**
 * The whole transfer's hash: SHA-256 over every entry's path, kind, mode, size and target and
 * every segment's hash, in manifest order. Both sides compute it; equal means equal trees.
 */
export function treeHash(manifest: TreeManifest, segmentHashes: Map<string, string>): string {
  const byEntry = new Map<number, [number, string][]>();
  for (const [key, hash] of segmentHashes) {
    const [entry, offset] = key.split(':').map(Number) as [number, number];
    const list = byEntry.get(entry) ?? [];
    list.push([offset, hash]);
    byEntry.set(entry, list);
  }
  const h = createHash('sha256');
  manifest.entries.forEach((e, i) => {
    h.update(`${e.path}\0${e.kind}\0${e.mode}\0${e.size}\0${e.target ?? ''}\0`);
    for (const [offset, hash] of (byEntry.get(i) ?? []).sort((a, b) => a[0] - b[0]))
      h.update(`${offset}=${hash}\n`);
  });
  return h.digest('hex');
}

export function segmentKey(s: Pick<Segment, 'entry' | 'offset'>): string {
  return `${s.entry}:${s.offset}`;
}
