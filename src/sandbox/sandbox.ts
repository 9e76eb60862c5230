import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
  cpSync,
  openSync,
  closeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, errorMessage } from '../errors.js';
import { run } from '../exec/run.js';
import { connect } from '../mysql/server.js';
import type { Endpoint } from '../mysql/credentials.js';

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
  pid: number | undefined;
  running: boolean;
}

interface SandboxMeta {
  name: string;
  port: number;
  serverId: number;
  bufferPool: string;
  createdAt: string;
}

export interface SandboxUpOptions {
  port?: number | undefined;
  /** innodb_buffer_pool_size, e.g. "256M" */
  bufferPool?: string | undefined;
  /** extra [mariadbd] lines, e.g. "log_bin = OFF" for a test of a refusal */
  extraConfig?: string[] | undefined;
  signal?: AbortSignal | undefined;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

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
    throw new ReseedError('USAGE', `bad sandbox name "${name}": letters, digits, "_", "-", "." (64 at most)`);
  }
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

function pidOf(dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dir, 'mariadbd.pid'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function info(dir: string, meta: SandboxMeta): SandboxInfo {
  const pid = pidOf(dir);
  return {
    name: meta.name,
    dir,
    port: meta.port,
    serverId: meta.serverId,
    socket: join(dir, 'mariadbd.sock'),
    pid,
    running: alive(pid),
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

function config(dir: string, meta: SandboxMeta, extra: string[]): string {
  const runAsRoot = process.getuid?.() === 0;
  return [
    '[mariadbd]',
    `datadir = ${join(dir, 'data')}`,
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
    ...extra,
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

export async function sandboxUp(name: string, options: SandboxUpOptions = {}): Promise<SandboxInfo> {
  validateName(name);
  const dir = join(sandboxHome(), name);
  let meta = readMeta(dir);
  if (meta) {
    const current = info(dir, meta);
    if (current.running) return current;
    if (options.port !== undefined && options.port !== meta.port) {
      throw new ReseedError(
        'USAGE',
        `sandbox ${name} exists on port ${meta.port}; remove it to change the port`,
      );
    }
  } else {
    const port = options.port ?? (await freePort());
    if (options.port !== undefined && (await portInUse(port))) {
      throw new ReseedError('SANDBOX', `port ${port} is in use; pick another with --port or leave it out`);
    }
    const data = await template(options.signal);
    mkdirSync(join(dir, 'tmp'), { recursive: true });
    cpSync(data, join(dir, 'data'), { recursive: true });
    meta = {
      name,
      port,
      serverId: uniqueServerId(),
      bufferPool: options.bufferPool ?? '256M',
      createdAt: new Date().toISOString(),
    };
    writeFileSync(join(dir, 'my.cnf'), config(dir, meta, options.extraConfig ?? []));
    writeFileSync(join(dir, 'sandbox.json'), JSON.stringify(meta, null, 2) + '\n');
  }
  await start(dir, meta, options.signal);
  return info(dir, meta);
}

async function start(dir: string, meta: SandboxMeta, signal?: AbortSignal): Promise<void> {
  const log = openSync(join(dir, 'mariadbd.out'), 'a');
  const child = spawn(binary('mariadbd'), [`--defaults-file=${join(dir, 'my.cnf')}`], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? -1));
  child.unref();
  const endpoint = sandboxEndpoint(meta);
  const deadline = Date.now() + 60_000;
  let lastError = '';
  while (Date.now() < deadline) {
    if (signal?.aborted) break;
    if (exited !== null) break;
    try {
      const server = await connect(endpoint, { connectTimeoutMs: 1000 });
      await server.close();
      return;
    } catch (err) {
      lastError = errorMessage(err);
    }
    await sleep(100);
  }
  if (child.pid && alive(child.pid)) process.kill(child.pid, 'SIGKILL');
  const tail = readTail(join(dir, 'error.log'));
  throw new ReseedError('SANDBOX', `sandbox ${meta.name} did not start on port ${meta.port}: ${lastError}`, {
    hints: tail ? [`last lines of ${join(dir, 'error.log')}:`, ...tail] : [],
  });
}

function readTail(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-5);
  } catch {
    return [];
  }
}

/** Stops the sandbox's mariadbd by the PID it wrote, and waits for it to exit. */
export async function sandboxDown(name: string): Promise<SandboxInfo> {
  const current = getSandbox(name);
  if (!current) throw new ReseedError('USAGE', `no sandbox named ${name} (see: reseed sandbox list)`);
  if (!current.running || !current.pid) return current;
  process.kill(current.pid, 'SIGTERM');
  const deadline = Date.now() + 120_000;
  while (alive(current.pid) && Date.now() < deadline) await sleep(100);
  if (alive(current.pid)) {
    process.kill(current.pid, 'SIGKILL');
    await sleep(200);
  }
  return { ...current, running: false };
}

export async function sandboxRemove(name: string): Promise<void> {
  const current = getSandbox(name);
  if (!current) throw new ReseedError('USAGE', `no sandbox named ${name} (see: reseed sandbox list)`);
  await sandboxDown(name);
  rmSync(current.dir, { recursive: true, force: true });
}
