import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, errorMessage } from '../errors.js';
import { run } from '../exec/run.js';

/**
 * A sandbox whose datadir is on a filesystem that takes snapshots, for the snapshot method: a
 * btrfs image file loop-mounted at DIR/fs with the datadir a subvolume (DIR/fs/data), or a ZFS
 * pool (zfs-fuse) on an image file, mounted at DIR/fs, with the datadir a dataset (POOL/data).
 * Everything lives in the sandbox's directory and goes with `sandbox rm`.
 */
export type SandboxFsKind = 'btrfs' | 'zfs';

export interface SandboxFs {
  kind: SandboxFsKind;
  /** the image file, in the sandbox's directory */
  image: string;
  /** the image's size as given (sparse: it takes what is written) */
  size: string;
  /** ZFS: the pool's name */
  pool?: string | undefined;
}

const TOOLS: Record<SandboxFsKind, { tool: string; pkg: string }> = {
  btrfs: { tool: 'mkfs.btrfs', pkg: 'btrfs-progs' },
  zfs: { tool: 'zpool', pkg: 'zfs-fuse' },
};

export const fsMount = (dir: string) => join(dir, 'fs');
export const fsDatadir = (dir: string) => join(dir, 'fs', 'data');

async function have(tool: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${tool}`]);
    return true;
  } catch {
    return false;
  }
}

/** Refused before anything is made: the tools missing, not root, no /dev/fuse. */
export async function checkSandboxFs(kind: SandboxFsKind): Promise<void> {
  const { tool, pkg } = TOOLS[kind];
  if (!(await have(tool)))
    throw new ReseedError('USAGE', `--fs ${kind} needs ${tool} (Debian: apt install ${pkg})`);
  if (process.getuid?.() !== 0)
    throw new ReseedError('USAGE', `--fs ${kind} mounts a filesystem: run as root`);
  if (kind === 'zfs' && !existsSync('/dev/fuse'))
    throw new ReseedError('USAGE', '--fs zfs runs zfs-fuse, which needs /dev/fuse');
}

/** Makes the image, the filesystem and the datadir's volume (empty); undone by removeSandboxFs. */
export async function makeSandboxFs(
  dir: string,
  name: string,
  kind: SandboxFsKind,
  size: string,
): Promise<SandboxFs> {
  const image = join(dir, `${kind}.img`);
  await run('truncate', ['-s', size, image]);
  mkdirSync(fsMount(dir), { recursive: true });
  if (kind === 'btrfs') {
    await run('mkfs.btrfs', ['-q', image]);
    await run('mount', ['-o', 'loop', image, fsMount(dir)]);
    await run('btrfs', ['subvolume', 'create', fsDatadir(dir)]);
    return { kind, image, size };
  }
  await ensureZfsDaemon(dirname2(dir));
  const pool = `reseed_${name.replace(/[^A-Za-z0-9_]/g, '_')}_${Math.random().toString(36).slice(2, 8)}`;
  await run('zpool', ['create', '-m', fsMount(dir), pool, image]);
  await run('zfs', ['create', `${pool}/data`]);
  return { kind, image, size, pool };
}

/** The filesystem mounted (after a reboot, or a zfs-fuse restart) before mysqld starts on it. */
export async function mountSandboxFs(dir: string, fs: SandboxFs): Promise<void> {
  if (fs.kind === 'btrfs') {
    if (await isMountpoint(fsMount(dir))) return;
    await run('mount', ['-o', 'loop', fs.image, fsMount(dir)]);
    return;
  }
  await ensureZfsDaemon(dirname2(dir));
  const imported = await run('zpool', ['list', '-H', '-o', 'name', fs.pool!]).then(
    () => true,
    () => false,
  );
  if (!imported) await run('zpool', ['import', '-d', dir, fs.pool!]);
  await run('zfs', ['mount', '-a']).catch(() => undefined);
}

/** Unmounts and removes the filesystem (mysqld stopped first); the image file goes with the directory. */
export async function removeSandboxFs(dir: string, fs: SandboxFs): Promise<void> {
  if (fs.kind === 'btrfs') {
    if (await isMountpoint(fsMount(dir)))
      await run('umount', [fsMount(dir)]).catch(async (err: unknown) => {
        // a process still in it (a shell, a late reader): lazily, so the image can go
        await run('umount', ['-l', fsMount(dir)]).catch(() => {
          throw new ReseedError('SANDBOX', `cannot unmount ${fsMount(dir)}: ${errorMessage(err)}`);
        });
      });
  } else if (await zfsRunning()) {
    const imported = await run('zpool', ['list', '-H', '-o', 'name', fs.pool!]).then(
      () => true,
      () => false,
    );
    if (imported) await destroyPool(fs.pool!);
    await stopZfsDaemonIfOurs(dirname2(dir));
  }
  rmSync(fs.image, { force: true });
}

/**
 * zpool destroy, its datasets unmounted first; zfs-fuse answers "pool is busy" for a while after
 * the last file in it was closed (seen after mysqld stopped): tried again for up to 15 s.
 */
async function destroyPool(pool: string): Promise<void> {
  const { stdout } = await run('zfs', ['list', '-H', '-o', 'name', '-r', pool]).catch(() => ({ stdout: '' }));
  for (const dataset of stdout.split('\n').filter(Boolean).reverse())
    await run('zfs', ['umount', '-f', dataset]).catch(() => undefined);
  for (let attempt = 1; ; attempt++) {
    try {
      await run('zpool', ['destroy', '-f', pool]);
      return;
    } catch (err) {
      if (attempt >= 30 || !/busy/i.test(errorMessage(err))) throw err;
      await sleep(500);
    }
  }
}

async function isMountpoint(path: string): Promise<boolean> {
  if (!existsSync(path)) return false;
  return run('mountpoint', ['-q', path]).then(
    () => true,
    () => false,
  );
}

function dirname2(sandboxDir: string): string {
  return join(sandboxDir, '..');
}

async function zfsRunning(): Promise<boolean> {
  return run('zpool', ['list', '-H']).then(
    () => true,
    () => false,
  );
}

const daemonFile = (home: string) => join(home, '.zfs-fuse.pid');

/**
 * zfs-fuse's daemon, started by reseed when none runs (in the foreground mode, detached, its PID
 * recorded in the sandboxes' directory) and stopped by the last `sandbox rm` that used it. One
 * that was running before is left alone.
 */
export async function ensureZfsDaemon(home: string): Promise<void> {
  if (await zfsRunning()) return;
  mkdirSync(home, { recursive: true });
  const log = openSync(join(home, '.zfs-fuse.log'), 'a');
  const child = spawn('/sbin/zfs-fuse', ['-n'], { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  writeFileSync(daemonFile(home), String(child.pid));
  for (let i = 0; i < 100; i++) {
    if (await zfsRunning()) return;
    await sleep(100);
  }
  throw new ReseedError('SANDBOX', `zfs-fuse did not start (see ${join(home, '.zfs-fuse.log')})`);
}

/** The daemon reseed started, stopped once no pool is left. */
export async function stopZfsDaemonIfOurs(home: string): Promise<void> {
  const file = daemonFile(home);
  if (!existsSync(file)) return;
  const pid = Number(readFileSync(file, 'utf8'));
  const ours = (() => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('zfs-fuse');
    } catch {
      return false;
    }
  })();
  if (!ours) {
    rmSync(file, { force: true });
    return;
  }
  const { stdout } = await run('zpool', ['list', '-H', '-o', 'name']).catch(() => ({ stdout: '' }));
  if (stdout.trim() !== '' && stdout.trim() !== 'no pools available') return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 200; i++) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('zfs-fuse')) break;
    } catch {
      break;
    }
    await sleep(100);
  }
  rmSync(file, { force: true });
}
