import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmdirSync,
  statSync,
  statfsSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, errorMessage } from '../errors.js';
import { run } from '../exec/run.js';
import { spawnStreamed } from '../exec/stream.js';
import type { StreamedChild } from '../exec/stream.js';

/**
 * Filesystem snapshots for the snapshot method: btrfs subvolumes and ZFS datasets (zfs-fuse on
 * Debian 12, pool version 23: `send -i`, `recv -F`/`-u`, clones; no resume tokens, no bookmarks).
 * A datadir is snapshotted as one volume: a btrfs subvolume, or a ZFS dataset mounted at it.
 * Snapshots are read-only; mysqld runs on a writable copy of one (a btrfs snapshot, a ZFS clone),
 * so the received snapshot stays untouched as the base of the next incremental send.
 */
export type FsKind = 'btrfs' | 'zfs';

/** A datadir's volume: a btrfs subvolume at `path`, or the ZFS dataset mounted at `path`. */
export interface Volume {
  fs: FsKind;
  path: string;
  /** ZFS: the dataset's name */
  dataset?: string | undefined;
}

/** A read-only snapshot: btrfs, the snapshot subvolume's path; ZFS, dataset@name. */
export interface Snapshot {
  fs: FsKind;
  id: string;
}

const BTRFS_MAGIC = 0x9123683e;
/** the inode number of every btrfs subvolume's root directory */
const BTRFS_SUBVOLUME_INO = 256;

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/**
 * A zfs command; one that zfs-fuse refuses as busy (a dataset just unmounted, a mount still
 * settling) is tried again for up to 5 s.
 */
async function zfs(args: string[], signal?: AbortSignal): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await run('zfs', args, signal ? { signal } : {})).stdout;
    } catch (err) {
      if (attempt >= 25 || !/busy/i.test(errorMessage(err)) || signal?.aborted) throw err;
      await sleep(200);
    }
  }
}

/** ZFS datasets by mountpoint; empty when zfs is missing or its daemon is not running. */
async function zfsMounts(signal?: AbortSignal): Promise<Map<string, string>> {
  try {
    const out = await zfs(['list', '-H', '-o', 'name,mountpoint', '-t', 'filesystem'], signal);
    const map = new Map<string, string>();
    for (const line of out.split('\n').filter(Boolean)) {
      const [name, mountpoint] = line.split('\t');
      if (name && mountpoint?.startsWith('/')) map.set(real(mountpoint), name);
    }
    return map;
  } catch {
    return new Map();
  }
}

/** The volume at `path`, or why there is none (a sentence). */
export async function volumeAt(path: string, signal?: AbortSignal): Promise<Volume | string> {
  const p = real(path);
  let type: number;
  try {
    type = statfsSync(p).type;
  } catch (err) {
    return `cannot read the filesystem of ${path}: ${errorMessage(err)}`;
  }
  if (type === BTRFS_MAGIC)
    return statSync(p).ino === BTRFS_SUBVOLUME_INO
      ? { fs: 'btrfs', path: p }
      : `${path} is on btrfs but is not a subvolume: a btrfs snapshot takes one subvolume (make the datadir one: btrfs subvolume create)`;
  const dataset = (await zfsMounts(signal)).get(p);
  if (dataset) return { fs: 'zfs', path: p, dataset };
  return `${path} is neither a btrfs subvolume nor a ZFS dataset's mountpoint: the snapshot method needs its datadir on one`;
}

/** Where the snapshots of a btrfs volume are kept: beside it, on the same filesystem. */
export function btrfsSnapshotDir(volume: Volume): string {
  return join(dirname(volume.path), `.reseed-snapshots-${basename(volume.path)}`);
}

/** The snapshot `name` of a volume would have, taken or not. */
export function snapshotId(volume: Volume, name: string): Snapshot {
  return volume.fs === 'btrfs'
    ? { fs: 'btrfs', id: join(btrfsSnapshotDir(volume), name) }
    : { fs: 'zfs', id: `${volume.dataset!}@${name}` };
}

/** A read-only snapshot of the volume, named `name` (unique among its snapshots). */
export async function takeSnapshot(volume: Volume, name: string, signal?: AbortSignal): Promise<Snapshot> {
  const s = snapshotId(volume, name);
  if (s.fs === 'btrfs') {
    mkdirSync(btrfsSnapshotDir(volume), { recursive: true, mode: 0o700 });
    await run('btrfs', ['subvolume', 'snapshot', '-r', volume.path, s.id], signal ? { signal } : {});
  } else await zfs(['snapshot', s.id], signal);
  return s;
}

export async function snapshotExists(s: Snapshot, signal?: AbortSignal): Promise<boolean> {
  if (s.fs === 'btrfs') return existsSync(s.id);
  try {
    await zfs(['list', '-H', '-o', 'name', '-t', 'snapshot', s.id], signal);
    return true;
  } catch {
    return false;
  }
}

/** Removes a snapshot if it is there. */
export async function destroySnapshot(s: Snapshot, signal?: AbortSignal): Promise<void> {
  if (!(await snapshotExists(s, signal))) return;
  if (s.fs === 'btrfs') await run('btrfs', ['subvolume', 'delete', s.id], signal ? { signal } : {});
  else await zfs(['destroy', s.id], signal);
}

/** A snapshot renamed within its volume's snapshots (the base kept for a replica's next refresh). */
export async function renameSnapshot(s: Snapshot, name: string, signal?: AbortSignal): Promise<Snapshot> {
  if (s.fs === 'btrfs') {
    const to = join(dirname(s.id), name);
    renameSync(s.id, to);
    return { fs: 'btrfs', id: to };
  }
  const to = `${s.id.slice(0, s.id.indexOf('@'))}@${name}`;
  await zfs(['rename', s.id, to], signal);
  return { fs: 'zfs', id: to };
}

/** The snapshots of a volume whose names start with `prefix`. */
export async function listSnapshots(
  volume: Volume,
  prefix: string,
  signal?: AbortSignal,
): Promise<Snapshot[]> {
  if (volume.fs === 'btrfs') {
    const dir = btrfsSnapshotDir(volume);
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((n) => n.startsWith(prefix))
      .map((n) => ({ fs: 'btrfs' as const, id: join(dir, n) }));
  }
  const out = await zfs(['list', '-H', '-o', 'name', '-t', 'snapshot', '-r', volume.dataset!], signal).catch(
    () => '',
  );
  return out
    .split('\n')
    .filter((n) => n.startsWith(`${volume.dataset!}@${prefix}`))
    .map((id) => ({ fs: 'zfs' as const, id }));
}

/** What a snapshot costs on disk: the blocks only it holds (ZFS `used`; btrfs `filesystem du` exclusive). */
export async function snapshotBytes(s: Snapshot, signal?: AbortSignal): Promise<number | undefined> {
  try {
    if (s.fs === 'zfs')
      return Number((await zfs(['get', '-Hp', '-o', 'value', 'used', s.id], signal)).trim());
    const { stdout } = await run(
      'btrfs',
      ['filesystem', 'du', '-s', '--raw', s.id],
      signal ? { signal } : {},
    );
    const row = stdout.trim().split('\n').at(-1)!.trim().split(/\s+/);
    return Number(row[1]);
  } catch {
    return undefined;
  }
}

/** `btrfs send [-p base]` / `zfs send [-i base]`: the snapshot as a stream on stdout. */
export function sendSnapshot(s: Snapshot, base: Snapshot | undefined, signal?: AbortSignal): StreamedChild {
  const args =
    s.fs === 'btrfs'
      ? ['send', '-q', ...(base ? ['-p', base.id] : []), s.id]
      : ['send', ...(base ? ['-i', base.id.slice(base.id.indexOf('@'))] : []), s.id];
  return spawnStreamed(s.fs, args, { signal, tailLines: 8 });
}

/**
 * Where a joiner receives: btrfs, a directory beside its datadir (the received subvolume keeps the
 * sent snapshot's name); ZFS, a new dataset beside the datadir's, received unmounted (`-u`).
 */
export function receiveTarget(joiner: Volume, id: string): string {
  return joiner.fs === 'btrfs'
    ? join(dirname(joiner.path), `.reseed-received-${basename(joiner.path)}`)
    : `${joiner.dataset!.slice(0, joiner.dataset!.lastIndexOf('/'))}/reseed-base-${id}`;
}

/**
 * `btrfs receive DIR` / `zfs recv -u DATASET`: the stream is written to its stdin. An incremental
 * into reseed's own ZFS base is received with -F: the dataset is rolled back to its last snapshot
 * first (the base it was matched against), whatever touched it since.
 */
export function receiveSnapshotCommand(
  fs: FsKind,
  target: string,
  o: { rollbackFirst?: boolean } = {},
): { command: string; args: string[]; tailLines: number } {
  const args =
    fs === 'btrfs' ? ['receive', '-e', target] : ['recv', '-u', ...(o.rollbackFirst ? ['-F'] : []), target];
  return { command: fs, args, tailLines: 8 };
}

/** The snapshot a receive made: btrfs, TARGET/NAME; ZFS, TARGET@NAME. */
export function receivedSnapshot(fs: FsKind, target: string, name: string): Snapshot {
  return { fs, id: fs === 'btrfs' ? join(target, name) : `${target}@${name}` };
}

/** A received dataset kept read-only and unmounted: nothing may touch the base of the next incremental. */
export async function protectReceived(s: Snapshot, signal?: AbortSignal): Promise<void> {
  if (s.fs !== 'zfs') return;
  const dataset = s.id.slice(0, s.id.indexOf('@'));
  await zfs(['set', 'readonly=on', dataset], signal);
  await zfs(['set', 'mountpoint=none', dataset], signal);
}

/** A writable copy of a snapshot at `path` (a btrfs snapshot; a ZFS clone mounted there). */
/**
 * A new, empty directory at `path` (mode 0700) for a datadir that will replace `like`: a btrfs
 * subvolume when `like` is one, so the datadir swapped in can still be snapshot (a later
 * `--method snapshot` clone or refresh), else a plain directory. ZFS: a plain directory (a gap:
 * the swapped-in datadir then lives in the parent dataset; docs/agents.md).
 */
export async function makeDirectoryLike(like: string, path: string, signal?: AbortSignal): Promise<void> {
  let subvolume = false;
  try {
    subvolume = statfsSync(like).type === BTRFS_MAGIC && statSync(like).ino === BTRFS_SUBVOLUME_INO;
  } catch {
    // `like` unreadable: a plain directory
  }
  if (subvolume) {
    await run('btrfs', ['subvolume', 'create', path], signal ? { signal } : {});
    chmodSync(path, 0o700);
  } else mkdirSync(path, { mode: 0o700 });
}

export async function writableCopy(
  s: Snapshot,
  path: string,
  zfsName: string | undefined,
  signal?: AbortSignal,
): Promise<Volume> {
  if (s.fs === 'btrfs') {
    await run('btrfs', ['subvolume', 'snapshot', s.id, path], signal ? { signal } : {});
    return { fs: 'btrfs', path: real(path) };
  }
  await zfs(['clone', '-o', `mountpoint=${path}`, '-o', 'readonly=off', s.id, zfsName!], signal);
  return { fs: 'zfs', path: real(path), dataset: zfsName };
}

/** Moves a volume to another path on its filesystem: a rename (btrfs), a new mountpoint (ZFS). */
export async function moveVolume(v: Volume, to: string, signal?: AbortSignal): Promise<Volume> {
  if (existsSync(to) && !(statSync(to).isDirectory() && readdirSync(to).length === 0))
    throw new ReseedError('JOURNAL', `cannot move ${v.path} to ${to}: ${to} exists and is not empty`);
  if (v.fs === 'btrfs') {
    if (existsSync(to)) rmdirSync(to);
    renameSync(v.path, to);
    return { ...v, path: to };
  }
  await zfs(['set', `mountpoint=${to}`, v.dataset!], signal);
  // The old mountpoint's directory stays behind, empty: it goes too.
  try {
    if (existsSync(v.path) && readdirSync(v.path).length === 0) rmdirSync(v.path);
  } catch {
    // a mountpoint still in use: left
  }
  return { ...v, path: to };
}

/** Removes a volume and what it holds: `btrfs subvolume delete`, `zfs destroy` (unmounted first). */
export async function removeVolume(v: Volume, signal?: AbortSignal): Promise<void> {
  if (v.fs === 'btrfs') {
    if (existsSync(v.path)) await run('btrfs', ['subvolume', 'delete', v.path], signal ? { signal } : {});
    return;
  }
  if (!(await datasetExists(v.dataset!, signal))) return;
  await zfs(['umount', v.dataset!], signal).catch(() => undefined);
  await zfs(['destroy', '-r', v.dataset!], signal);
  try {
    if (existsSync(v.path) && readdirSync(v.path).length === 0) rmdirSync(v.path);
  } catch {
    // left
  }
}

export async function datasetExists(name: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await zfs(['list', '-H', '-o', 'name', name], signal);
    return true;
  } catch {
    return false;
  }
}

/** ZFS: the dataset back at `s`, the snapshots after it destroyed; nothing when `s` is gone. */
export async function rollbackTo(s: Snapshot, signal?: AbortSignal): Promise<void> {
  if (s.fs !== 'zfs' || !(await snapshotExists(s, signal))) return;
  await zfs(['rollback', '-r', s.id], signal);
}

/** Removes a received dataset (ZFS) or subvolume (btrfs) with its snapshots. */
export async function removeReceived(s: Snapshot, signal?: AbortSignal): Promise<void> {
  if (s.fs === 'btrfs') return destroySnapshot(s, signal);
  const dataset = s.id.slice(0, s.id.indexOf('@'));
  if (await datasetExists(dataset, signal)) await zfs(['destroy', '-r', dataset], signal);
}

/** A snapshot's identity, equal on both sides of a send: btrfs its UUID, ZFS its guid. */
export async function snapshotIdentity(s: Snapshot, signal?: AbortSignal): Promise<string | undefined> {
  try {
    if (s.fs === 'zfs') return (await zfs(['get', '-Hp', '-o', 'value', 'guid', s.id], signal)).trim();
    const { stdout } = await run('btrfs', ['subvolume', 'show', s.id], signal ? { signal } : {});
    return /^\s*UUID:\s*(\S+)/m.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * The identity of the snapshot a received one was sent from (btrfs: its Received UUID; ZFS: its
 * guid), and whether it is untouched since (read-only; btrfs clears the Received UUID of a
 * subvolume made writable).
 */
export async function receivedIdentity(
  s: Snapshot,
  signal?: AbortSignal,
): Promise<{ identity: string | undefined; untouched: boolean }> {
  try {
    if (s.fs === 'zfs') {
      const dataset = s.id.slice(0, s.id.indexOf('@'));
      const ro = (await zfs(['get', '-H', '-o', 'value', 'readonly', dataset], signal)).trim();
      return { identity: await snapshotIdentity(s, signal), untouched: ro === 'on' };
    }
    const { stdout } = await run('btrfs', ['subvolume', 'show', s.id], signal ? { signal } : {});
    const received = /^\s*Received UUID:\s*(\S+)/m.exec(stdout)?.[1];
    const readonly = /^\s*Flags:\s*.*readonly/m.test(stdout);
    const identity = received && received !== '-' ? received : undefined;
    return { identity, untouched: readonly && identity !== undefined };
  } catch {
    return { identity: undefined, untouched: false };
  }
}

/** The snapshot a joiner received last (the base of its next incremental), if it keeps one. */
export async function lastReceived(joiner: Volume, signal?: AbortSignal): Promise<Snapshot | undefined> {
  if (joiner.fs === 'btrfs') {
    const dir = join(dirname(joiner.path), `.reseed-received-${basename(joiner.path)}`);
    if (!existsSync(dir)) return undefined;
    const found = readdirSync(dir)
      .filter((n) => n.startsWith('reseed-tmp-'))
      .map((n) => ({ id: join(dir, n), at: statSync(join(dir, n)).mtimeMs }))
      .sort((a, b) => a.at - b.at);
    return found.length ? { fs: 'btrfs', id: found.at(-1)!.id } : undefined;
  }
  const parent = joiner.dataset!.slice(0, joiner.dataset!.lastIndexOf('/'));
  const out = await zfs(
    ['list', '-H', '-o', 'name', '-t', 'snapshot', '-s', 'creation', '-r', parent],
    signal,
  ).catch(() => '');
  const snaps = out.split('\n').filter((n) => /\/reseed-base-[^/@]+@reseed-tmp-/.test(n));
  return snaps.length ? { fs: 'zfs', id: snaps.at(-1)! } : undefined;
}

/** What a full send of a snapshot carries, about (btrfs: its files' total; ZFS: referenced). */
export async function snapshotFullBytes(s: Snapshot, signal?: AbortSignal): Promise<number | undefined> {
  try {
    if (s.fs === 'zfs')
      return Number((await zfs(['get', '-Hp', '-o', 'value', 'referenced', s.id], signal)).trim());
    const { stdout } = await run(
      'btrfs',
      ['filesystem', 'du', '-s', '--raw', s.id],
      signal ? { signal } : {},
    );
    return Number(stdout.trim().split('\n').at(-1)!.trim().split(/\s+/)[0]);
  } catch {
    return undefined;
  }
}
