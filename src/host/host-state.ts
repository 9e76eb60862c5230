import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import type { HostId } from './host-id.js';
import { thisHost } from './host-id.js';
import { answers, serviceControl } from './service-control.js';
import type { ListenAddress, ServiceSpec } from './service-control.js';

/** One path an operation may change, as it was. */
export interface PathState {
  exists: boolean;
  /** device:inode: the very same directory, not a copy with the same name */
  id?: string;
  kind?: 'directory' | 'file' | 'other';
  /** a directory's subdirectories (a datadir's schemas), sorted */
  subdirectories?: string[];
}

/**
 * The host side of a StateRecord: what an operation may change on a database host, captured
 * before its first change and compared after any rollback. Files a running mysqld rewrites on its
 * own (logs, ib_buffer_pool, a new binary log at each start) are left out: a datadir is
 * identified by its inode and its schemas' directories.
 */
export interface HostState {
  host: HostId;
  paths: Record<string, PathState>;
  /** mount points at or under the watched paths */
  mounts: string[];
  service?: { spec: ServiceSpec; running: boolean } | undefined;
  /** whether mysqld answers where it listens */
  listening?: { address: ListenAddress; answers: boolean } | undefined;
}

export interface HostWatch {
  paths: string[];
  service?: ServiceSpec | undefined;
  listen?: ListenAddress | undefined;
}

function pathState(path: string): PathState {
  if (!existsSync(path)) return { exists: false };
  const st = statSync(path);
  const kind = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
  // A ZFS dataset (zfs-fuse) gets a new device number at every mount: the dataset's name says
  // which volume it is (a dataset mounted back after a rollback is the same one).
  const zfs = zfsMountSource(resolve(path));
  const state: PathState = { exists: true, id: zfs ? `zfs ${zfs}:${st.ino}` : `${st.dev}:${st.ino}`, kind };
  if (kind === 'directory')
    state.subdirectories = readdirSync(path, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  return state;
}

/** The dataset mounted at `path` when it is a ZFS mount point (zfs-fuse or kernel ZFS). */
function zfsMountSource(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  const decode = (t: string) =>
    t.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  let found: string | undefined;
  for (const line of text.split('\n').filter(Boolean)) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    const [fstype, source] = [fields[dash + 1] ?? '', fields[dash + 2] ?? ''];
    // The last mount at a path is the one seen there.
    if (decode(fields[4] ?? '') === path)
      found = fstype === 'zfs' || fstype === 'fuse.zfs' ? decode(source) : undefined;
  }
  return found;
}

/** Mount points (from /proc/self/mountinfo, octal escapes decoded) at or under one of `roots`. */
export function mountsUnder(roots: string[]): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const points = text
    .split('\n')
    .filter(Boolean)
    .map((line) =>
      line.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    );
  const under = (p: string) => roots.some((r) => p === resolve(r) || p.startsWith(resolve(r) + sep));
  return [...new Set(points.filter(under))].sort();
}

export async function captureHostState(watch: HostWatch, signal?: AbortSignal): Promise<HostState> {
  const paths: Record<string, PathState> = {};
  for (const p of watch.paths) paths[resolve(p)] = pathState(p);
  const state: HostState = { host: thisHost(), paths, mounts: mountsUnder(watch.paths) };
  if (watch.service)
    state.service = {
      spec: watch.service,
      running: (await serviceControl(watch.service).status(signal)).running,
    };
  if (watch.listen) state.listening = { address: watch.listen, answers: await answers(watch.listen) };
  return state;
}

/** Re-reads what `before` watched, on this host. */
export function captureAgain(before: HostState, signal?: AbortSignal): Promise<HostState> {
  return captureHostState(
    { paths: Object.keys(before.paths), service: before.service?.spec, listen: before.listening?.address },
    signal,
  );
}

function describePath(s: PathState | undefined): string {
  if (!s?.exists) return 'absent';
  return `${s.kind} ${s.id}`;
}

/** Every difference, one line each; empty when the host is as it was. */
export function compareHostState(before: HostState, after: HostState): string[] {
  const out: string[] = [];
  for (const [path, b] of Object.entries(before.paths)) {
    const a = after.paths[path];
    if (b.exists !== a?.exists || b.id !== a?.id || b.kind !== a?.kind) {
      out.push(`${path}: was ${describePath(b)}, now ${describePath(a)}`);
      continue;
    }
    const gone = (b.subdirectories ?? []).filter((d) => !a.subdirectories?.includes(d));
    const added = (a.subdirectories ?? []).filter((d) => !b.subdirectories?.includes(d));
    if (gone.length) out.push(`${path}: subdirectories missing: ${gone.join(', ')}`);
    if (added.length) out.push(`${path}: new subdirectories: ${added.join(', ')}`);
  }
  const lostMounts = before.mounts.filter((m) => !after.mounts.includes(m));
  const newMounts = after.mounts.filter((m) => !before.mounts.includes(m));
  if (lostMounts.length) out.push(`mounts gone: ${lostMounts.join(', ')}`);
  if (newMounts.length) out.push(`mounts left behind: ${newMounts.join(', ')}`);
  if (before.service && before.service.running !== after.service?.running)
    out.push(
      `mysqld was ${before.service.running ? 'running' : 'stopped'}, now ${after.service?.running ? 'running' : 'stopped'}`,
    );
  if (before.listening && before.listening.answers !== after.listening?.answers)
    out.push(
      `mysqld ${before.listening.answers ? 'answered' : 'did not answer'} before, ${after.listening?.answers ? 'answers' : 'does not answer'} now`,
    );
  return out;
}
