import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
  cpSync,
  openSync,
  closeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, abortError, errorMessage, isReseedError } from '../errors.js';
import { run } from '../exec/run.js';
import { connect } from '../mysql/server.js';
import type { Endpoint } from '../mysql/credentials.js';
import { checkSandboxFs, fsDatadir, makeSandboxFs, mountSandboxFs, removeSandboxFs } from './sandbox-fs.js';
import type { SandboxFs, SandboxFsKind } from './sandbox-fs.js';

/**
 * A sandbox is a real mariadbd from the installed packages, in its own directory with its own
 * datadir, socket, port and server_id, binary logging and GTIDs on. Root may connect without a
 * password from the loopback address only (the server listens on 127.0.0.1).
 */
export interface SandboxInfo {
  name: string;
  dir: string;
  port: number;
  serverId: number;
  socket: string;
  /** DIR/data, or DIR/fs/data on a sandbox made with --fs */
  datadir: string;
  /** the filesystem its datadir is on, when made with --fs */
  fs: SandboxFsKind | undefined;
  /** The server's PID while it runs; undefined when stopped. */
  pid: number | undefined;
  running: boolean;
  /** mariadbd.pid names a PID that is dead or now another process's (after a crash). */
  stalePidFile: boolean;
}

interface SandboxMeta {
  name: string;
  port: number;
  serverId: number;
  bufferPool: string;
  /** Absent in sandboxes made before it was recorded: they had none. */
  extraConfig?: string[];
  /** its datadir on a btrfs or ZFS filesystem of its own (--fs) */
  fs?: SandboxFs;
  createdAt: string;
}

export interface SandboxUpOptions {
  port?: number | undefined;
  /** innodb_buffer_pool_size, e.g. "256M" (the default) */
  bufferPool?: string | undefined;
  /** extra [mariadbd] lines, e.g. "log_bin = OFF" for a test of a refusal */
  extraConfig?: string[] | undefined;
  /** the datadir on a filesystem of its own: a loop-mounted btrfs image, or a zfs-fuse pool on an image file */
  fs?: SandboxFsKind | undefined;
  /** the image's size (default 4G; sparse) */
  fsSize?: string | undefined;
  /** arguments for this start of mariadbd only (--skip-slave-start for an undo), not kept */
  serverArgs?: string[] | undefined;
  signal?: AbortSignal | undefined;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const SIZE_RE = /^([1-9]\d*)([KMGT]?)$/i;
const DEFAULT_BUFFER_POOL = '256M';
/** The names the server runs under; Debian's mysqld is a symlink to mariadbd. */
const SERVER_PROGRAMS = new Set(['mariadbd', 'mysqld']);

export function sandboxHome(): string {
  return resolve(process.env.RESEED_SANDBOX_DIR ?? join(homedir(), '.reseed', 'sandboxes'));
}

function binary(name: string): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin']) {
    const path = join(dir, name);
    if (existsSync(path)) return path;
  }
  throw new ReseedError('SANDBOX', `${name} not found; install MariaDB (apt-get install mariadb-server)`);
}

function validateName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new ReseedError(
      'USAGE',
      `bad sandbox name "${name}": use 1 to 64 letters, digits, "_", "-" and ".", starting with a letter or digit`,
    );
  }
}

/** A size as mariadbd reads it (bytes, or a number with K, M, G or T), in bytes. */
function sizeBytes(text: string): bigint | undefined {
  const m = SIZE_RE.exec(text.trim());
  if (!m) return undefined;
  const unit = m[2]!.toUpperCase();
  return BigInt(m[1]!) * 1024n ** BigInt(unit ? 'KMGT'.indexOf(unit) + 1 : 0);
}

/** Checks the form of --buffer-pool, so a typo is refused before a sandbox is made. */
export function checkBufferPool(text: string): string {
  if (sizeBytes(text) === undefined) {
    throw new ReseedError(
      'USAGE',
      `--buffer-pool takes a size such as 128M, 1G, 256K or a number of bytes, not "${text}"`,
    );
  }
  return text.trim();
}

export function sandboxEndpoint(info: Pick<SandboxInfo, 'port'>): Endpoint {
  return { host: '127.0.0.1', port: info.port, user: 'root' };
}

export function sandboxUri(info: Pick<SandboxInfo, 'port'>): string {
  return `mysql://root@127.0.0.1:${info.port}`;
}

function readMeta(dir: string): SandboxMeta | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'sandbox.json'), 'utf8')) as SandboxMeta;
  } catch {
    return undefined;
  }
}

const myCnf = (dir: string): string => join(dir, 'my.cnf');
const datadirOf = (dir: string, meta: Pick<SandboxMeta, 'fs'>): string =>
  meta.fs ? fsDatadir(dir) : join(dir, 'data');
const pidFile = (dir: string): string => join(dir, 'mariadbd.pid');

function pidOf(dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile(dir), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether PID is this sandbox's own server. A PID file outlives a crash or a kill -9 and the
 * kernel then gives the number to any process, so the number proves nothing: only a mariadbd
 * started with this sandbox's my.cnf, as start() starts it, counts. A zombie has an empty
 * command line and does not count. Linux only: it reads /proc.
 */
function isSandboxServer(pid: number, dir: string): boolean {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false;
  }
  const defaults = argv.find((arg) => arg.startsWith('--defaults-file='));
  return (
    SERVER_PROGRAMS.has(programOf(pid, argv[0] ?? '')) &&
    defaults !== undefined &&
    samePath(defaults.slice('--defaults-file='.length), myCnf(dir))
  );
}

/** The executable's name, or argv[0]'s when /proc/PID/exe is not ours to read. */
function programOf(pid: number, argv0: string): string {
  try {
    // " (deleted)": the package was upgraded under a running server, which is still a server.
    return basename(readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, ''));
  } catch {
    return basename(argv0);
  }
}

/** RESEED_SANDBOX_DIR may name the same directory through a symlink. */
function samePath(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

function info(dir: string, meta: SandboxMeta): SandboxInfo {
  const pid = pidOf(dir);
  const running = pid !== undefined && isSandboxServer(pid, dir);
  return {
    name: meta.name,
    dir,
    port: meta.port,
    serverId: meta.serverId,
    socket: join(dir, 'mariadbd.sock'),
    datadir: datadirOf(dir, meta),
    fs: meta.fs?.kind,
    pid: running ? pid : undefined,
    running,
    stalePidFile: pid !== undefined && !running,
  };
}

export function listSandboxes(): SandboxInfo[] {
  const home = sandboxHome();
  if (!existsSync(home)) return [];
  const out: SandboxInfo[] = [];
  for (const entry of readdirSync(home).sort()) {
    if (entry.startsWith('.')) continue;
    const meta = readMeta(join(home, entry));
    if (meta) out.push(info(join(home, entry), meta));
  }
  return out;
}

export function getSandbox(name: string): SandboxInfo | undefined {
  validateName(name);
  const dir = join(sandboxHome(), name);
  const meta = readMeta(dir);
  return meta ? info(dir, meta) : undefined;
}

/** Asks the kernel for a free loopback port. Another process could take it before mariadbd does. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const srv = createServer();
    srv.once('error', () => resolvePort(true));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolvePort(false)));
  });
}

function uniqueServerId(): number {
  const taken = new Set(listSandboxes().map((s) => s.serverId));
  for (;;) {
    const id = 1000 + Math.floor(Math.random() * 2_000_000_000);
    if (!taken.has(id)) return id;
  }
}

function config(dir: string, meta: SandboxMeta): string {
  const runAsRoot = process.getuid?.() === 0;
  return [
    '[mariadbd]',
    `datadir = ${datadirOf(dir, meta)}`,
    `socket = ${join(dir, 'mariadbd.sock')}`,
    `pid-file = ${join(dir, 'mariadbd.pid')}`,
    `log-error = ${join(dir, 'error.log')}`,
    `tmpdir = ${join(dir, 'tmp')}`,
    `port = ${meta.port}`,
    'bind-address = 127.0.0.1',
    `server_id = ${meta.serverId}`,
    'log_bin = binlog',
    'log_slave_updates = ON',
    'binlog_format = ROW',
    'relay_log = relay-bin',
    'skip-name-resolve',
    'local_infile = ON',
    'character-set-server = utf8mb4',
    'collation-server = utf8mb4_general_ci',
    `innodb_buffer_pool_size = ${meta.bufferPool}`,
    'innodb_log_file_size = 256M',
    'max_allowed_packet = 256M',
    'max_connections = 200',
    ...(runAsRoot ? ['user = root'] : []),
    ...(meta.extraConfig ?? []),
    '',
  ].join('\n');
}

/**
 * The datadir of a fresh install is made once per MariaDB version and copied for each sandbox:
 * mariadb-install-db takes seconds, a copy a fraction of that.
 */
let templatePromise: Promise<string> | undefined;

async function template(signal?: AbortSignal): Promise<string> {
  templatePromise ??= buildTemplate(signal).catch((err: unknown) => {
    templatePromise = undefined;
    throw err;
  });
  return templatePromise;
}

/**
 * Built in a private directory and renamed into place, so concurrent processes (parallel test
 * files) never see or share a half-made template; the loser of the race discards its copy.
 */
async function buildTemplate(signal?: AbortSignal): Promise<string> {
  const { stdout } = await run(binary('mariadbd'), ['--version'], signal ? { signal } : {});
  const version = /Ver\s+(\S+)/.exec(stdout)?.[1] ?? 'unknown';
  const dir = join(sandboxHome(), `.template-${version}`);
  if (existsSync(join(dir, 'ready'))) return join(dir, 'data');
  const work = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(work, { recursive: true });
  try {
    const data = join(work, 'data');
    // A private tmpdir: servers bootstrapping side by side must not share temporary tables.
    const tmp = join(work, 'tmp');
    mkdirSync(tmp);
    const user = [`--tmpdir=${tmp}`, ...(process.getuid?.() === 0 ? ['--user=root'] : [])];
    await run(
      binary('mariadb-install-db'),
      ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', ...user],
      signal ? { signal } : {},
    );
    // Root from the loopback address, without a password: sandboxes listen on 127.0.0.1 only.
    const bootstrap = [
      'use mysql;',
      'FLUSH PRIVILEGES;',
      "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';",
      "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;",
      "CREATE USER IF NOT EXISTS 'root'@'%';",
      "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;",
      '',
    ].join('\n');
    await run(
      binary('mariadbd'),
      ['--no-defaults', `--datadir=${data}`, '--bootstrap', '--log-bin=0', ...user],
      {
        input: bootstrap,
        ...(signal ? { signal } : {}),
      },
    );
    writeFileSync(join(work, 'ready'), version + '\n');
    try {
      renameSync(work, dir);
    } catch {
      // another process finished first; its template is as good as ours
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (!existsSync(join(dir, 'ready')))
    throw new ReseedError('SANDBOX', `could not prepare the sandbox template in ${dir}`);
  return join(dir, 'data');
}

/**
 * Starts a sandbox, creating it first if it is new. A sandbox's options are fixed when it is
 * made: asking an existing one for others is refused rather than silently ignored, and a new one
 * that does not start is removed, so nothing half-made is left behind.
 */
export async function sandboxUp(name: string, options: SandboxUpOptions = {}): Promise<SandboxInfo> {
  validateName(name);
  if (options.bufferPool !== undefined) checkBufferPool(options.bufferPool);
  const dir = join(sandboxHome(), name);
  const meta = readMeta(dir);
  if (!meta) return createSandbox(name, dir, options);
  refuseChangedOptions(meta, options);
  const current = info(dir, meta);
  if (current.running) return current;
  rmSync(pidFile(dir), { force: true });
  try {
    if (meta.fs) await mountSandboxFs(dir, meta.fs);
    await start(dir, meta, options.signal, options.serverArgs);
  } catch (err) {
    if (!isReseedError(err) || err.code !== 'SANDBOX') throw err;
    throw new ReseedError('SANDBOX', err.message, {
      cause: err,
      hints: [...err.hints, `its data is kept in ${dir}; to start afresh: reseed sandbox rm ${name}`],
    });
  }
  return info(dir, meta);
}

function refuseChangedOptions(meta: SandboxMeta, options: SandboxUpOptions): void {
  const asked: string[] = [];
  if (options.port !== undefined && options.port !== meta.port) asked.push(`--port ${options.port}`);
  if (options.bufferPool !== undefined && sizeBytes(options.bufferPool) !== sizeBytes(meta.bufferPool))
    asked.push(`--buffer-pool ${options.bufferPool}`);
  const extra = meta.extraConfig ?? [];
  if (options.extraConfig !== undefined && options.extraConfig.join('\n') !== extra.join('\n'))
    asked.push(`extra config "${options.extraConfig.join('; ')}"`);
  if (options.fs !== undefined && options.fs !== meta.fs?.kind) asked.push(`--fs ${options.fs}`);
  if (asked.length === 0) return;
  const made = [`--port ${meta.port}`, `--buffer-pool ${meta.bufferPool}`];
  if (meta.fs) made.push(`--fs ${meta.fs.kind}`);
  if (extra.length) made.push(`extra config "${extra.join('; ')}"`);
  throw new ReseedError(
    'USAGE',
    `sandbox ${meta.name} was created with ${made.join(' ')}, not ${asked.join(' ')}; ` +
      `to change that, delete it and its data (reseed sandbox rm ${meta.name}) and run up again`,
  );
}

async function createSandbox(name: string, dir: string, options: SandboxUpOptions): Promise<SandboxInfo> {
  const port = options.port ?? (await freePort());
  if (options.port !== undefined && (await portInUse(port))) {
    throw new ReseedError('SANDBOX', `port ${port} is in use; pick another with --port or leave it out`);
  }
  if (options.fs) await checkSandboxFs(options.fs);
  const data = await template(options.signal);
  claimDirectory(dir);
  let fs: SandboxFs | undefined;
  try {
    mkdirSync(join(dir, 'tmp'));
    if (options.fs) {
      // Recorded at once: a failure below removes the mount or pool with the directory.
      fs = await makeSandboxFs(dir, name, options.fs, options.fsSize ?? '4G');
      writeFileSync(join(dir, 'fs.json'), JSON.stringify(fs));
    }
    const meta: SandboxMeta = {
      name,
      port,
      serverId: uniqueServerId(),
      bufferPool: options.bufferPool?.trim() ?? DEFAULT_BUFFER_POOL,
      ...(options.extraConfig?.length ? { extraConfig: options.extraConfig } : {}),
      ...(fs ? { fs } : {}),
      createdAt: new Date().toISOString(),
    };
    cpSync(data, datadirOf(dir, meta), { recursive: true });
    writeFileSync(myCnf(dir), config(dir, meta));
    writeFileSync(join(dir, 'sandbox.json'), JSON.stringify(meta, null, 2) + '\n');
    await start(dir, meta, options.signal);
    return info(dir, meta);
  } catch (err) {
    // start() has waited for its mariadbd to exit, so nothing writes here any more.
    if (fs) await removeSandboxFs(dir, fs).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw new ReseedError(
      isReseedError(err) ? err.code : 'SANDBOX',
      `${errorMessage(err)}; the new sandbox was removed (${dir})`,
      { cause: err, hints: isReseedError(err) ? err.hints : [] },
    );
  }
}

/** mkdir without `recursive` fails if the directory exists: a second `up` of the same new name loses. */
function claimDirectory(dir: string): void {
  mkdirSync(sandboxHome(), { recursive: true });
  try {
    mkdirSync(dir);
  } catch (err) {
    throw new ReseedError(
      'SANDBOX',
      `${dir} exists but is not a sandbox (no sandbox.json); delete it or pick another name`,
      { cause: err },
    );
  }
}

async function start(
  dir: string,
  meta: SandboxMeta,
  signal?: AbortSignal,
  args: string[] = [],
): Promise<void> {
  const log = openSync(join(dir, 'mariadbd.out'), 'a');
  const child = spawn(binary('mariadbd'), [`--defaults-file=${myCnf(dir)}`, ...args], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  let exit: string | undefined;
  const exited = new Promise<void>((done) => {
    child.once('exit', (code, sig) => {
      exit = sig ? `was killed by ${sig}` : `exited with code ${code}`;
      done();
    });
    child.once('error', (err) => {
      exit = `could not be run: ${err.message}`;
      done();
    });
  });
  child.unref();
  const endpoint = sandboxEndpoint(meta);
  const deadline = Date.now() + 60_000;
  let lastError = 'no connection within 60 s';
  while (Date.now() < deadline && !signal?.aborted && exit === undefined) {
    try {
      if (await answersAsOurs(endpoint, dir)) return;
      lastError = `port ${meta.port} is answered by another server`;
    } catch (err) {
      lastError = errorMessage(err);
    }
    await sleep(100);
  }
  const why = exit === undefined ? lastError : `mariadbd ${exit}`;
  if (exit === undefined) {
    // ref(): the caller may delete the directory next; this process must not exit before it can.
    child.ref();
    child.kill('SIGKILL');
    await exited;
  }
  if (signal?.aborted) throw abortError(signal);
  const logged = startLog(join(dir, 'error.log'));
  throw new ReseedError('SANDBOX', `sandbox ${meta.name} did not start on port ${meta.port}: ${why}`, {
    hints: logged.length ? ['from its error log:', ...logged] : [],
  });
}

/**
 * Whether the server on the sandbox's port is this sandbox's: when two processes were given the
 * same free port, the one whose mariadbd cannot bind it would otherwise take the other's for its own.
 */
async function answersAsOurs(endpoint: Endpoint, dir: string): Promise<boolean> {
  const server = await connect(endpoint, { connectTimeoutMs: 1000 });
  try {
    // The datadir, not the server_id: extra configuration may set the server_id (a test does).
    const [row] = await server.query('SELECT @@datadir AS d');
    const meta = readMeta(dir);
    return resolve(String(row?.d)) === resolve(meta ? datadirOf(dir, meta) : join(dir, 'data'));
  } finally {
    await server.close();
  }
}

/**
 * What the last start wrote to the error log (which keeps every start's lines): its first
 * [ERROR] lines, where the cause is (the last ones are the shutdown that follows), or its end.
 */
function startLog(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const from = text.lastIndexOf('\n', text.lastIndexOf('] Starting MariaDB')) + 1;
  const lines = text.slice(from).trim().split('\n');
  const errors = lines.filter((line) => line.includes('[ERROR]'));
  return errors.length ? errors.slice(0, 5) : lines.slice(-5);
}

/**
 * Stops the sandbox's mariadbd and waits for it to exit. A stale PID file is removed and its PID
 * never signalled: after a crash that number may belong to any process.
 */
export async function sandboxDown(name: string): Promise<SandboxInfo> {
  const current = getSandbox(name);
  if (!current) throw new ReseedError('USAGE', `no sandbox named ${name} (see: reseed sandbox list)`);
  if (current.stalePidFile) rmSync(pidFile(current.dir), { force: true });
  const { pid, dir } = current;
  if (!current.running || pid === undefined) return { ...current, stalePidFile: false };
  kill(pid, 'SIGTERM');
  // Waits on the identity, not the number: once the server is gone the PID can be reused.
  const deadline = Date.now() + 120_000;
  while (isSandboxServer(pid, dir) && Date.now() < deadline) await sleep(100);
  if (isSandboxServer(pid, dir)) {
    kill(pid, 'SIGKILL');
    // Until it is gone it may still write into the directory that `rm` deletes next.
    const killDeadline = Date.now() + 10_000;
    while (isSandboxServer(pid, dir) && Date.now() < killDeadline) await sleep(50);
  }
  return { ...current, pid: undefined, running: false };
}

/** A server that exits between the check and the signal is what we wanted anyway. */
function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export async function sandboxRemove(name: string): Promise<void> {
  const current = getSandbox(name);
  if (!current) throw new ReseedError('USAGE', `no sandbox named ${name} (see: reseed sandbox list)`);
  await sandboxDown(name);
  const meta = readMeta(current.dir);
  // A half-made --fs sandbox has fs.json before sandbox.json says so.
  const fs =
    meta?.fs ??
    (existsSync(join(current.dir, 'fs.json'))
      ? (JSON.parse(readFileSync(join(current.dir, 'fs.json'), 'utf8')) as SandboxFs)
      : undefined);
  if (fs) await removeSandboxFs(current.dir, fs);
  rmSync(current.dir, { recursive: true, force: true });
}
