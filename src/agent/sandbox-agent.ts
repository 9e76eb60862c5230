import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, errorMessage } from '../errors.js';
import { freePort, sandboxHome, sandboxUri } from '../sandbox/sandbox.js';
import type { SandboxInfo } from '../sandbox/sandbox.js';
import { AgentClient } from './client.js';
import { makeCa, makeHostCert, makeToken } from './pki.js';
import { resolveAgent } from './registry.js';

/**
 * A sandbox's agent: a real `reseed agent` process for the sandbox's "host", with TLS and mutual
 * TLS from a CA shared by the sandboxes (made once), its own token, a state directory in the
 * sandbox, its mysqld controlled as a sandbox, and the sandbox directory to serve and receive
 * into. Registered by name in the sandboxes' agents.json, where the CLI and the other sandbox
 * agents find it.
 */
const agentDir = (s: Pick<SandboxInfo, 'dir'>) => join(s.dir, 'agent');
const caDir = () => join(sandboxHome(), 'agent-ca');
const registry = () => join(sandboxHome(), 'agents.json');
const BIN = fileURLToPath(new URL('../../bin/reseed', import.meta.url));

export interface SandboxAgentInfo {
  url: string;
  pid: number | undefined;
  running: boolean;
}

function configOf(s: SandboxInfo): { listen: { port: number } } | undefined {
  try {
    return JSON.parse(readFileSync(join(agentDir(s), 'config.json'), 'utf8')) as { listen: { port: number } };
  } catch {
    return undefined;
  }
}

function pidOf(s: SandboxInfo): number | undefined {
  try {
    const pid = Number(readFileSync(join(agentDir(s), 'agent.pid'), 'utf8'));
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    // The number alone proves nothing after a crash: only our agent with this config counts.
    return argv.includes(join(agentDir(s), 'config.json')) ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function sandboxAgent(s: SandboxInfo): SandboxAgentInfo | undefined {
  const c = configOf(s);
  if (!c) return undefined;
  const pid = pidOf(s);
  return { url: `https://127.0.0.1:${c.listen.port}`, pid, running: pid !== undefined };
}

async function prepare(s: SandboxInfo): Promise<void> {
  const dir = agentDir(s);
  if (existsSync(join(dir, 'config.json'))) return;
  // The sandboxes' CA and the CLI's certificate are made once, by one process: two sandboxes
  // given agents at once (parallel test files) would each write half of them.
  await withCaLock(async () => {
    await makeCa(caDir());
    if (!existsSync(join(caDir(), 'cli', 'cert.pem')))
      await makeHostCert(
        caDir(),
        { name: 'reseed-cli', address: '127.0.0.1', port: 0 },
        join(caDir(), 'cli'),
      );
  });
  await makeHostCert(caDir(), { name: s.name, address: '127.0.0.1', port: 0 }, dir);
  makeToken(join(dir, 'token'));
  const config = {
    name: s.name,
    listen: { host: '127.0.0.1', port: await freePort() },
    stateDir: 'state',
    tokenFile: 'token',
    tls: { cert: 'cert.pem', key: 'key.pem', ca: join(caDir(), 'ca.pem'), requireClientCert: true },
    mysql: { uri: sandboxUri(s) },
    datadir: s.datadir,
    service: { kind: 'sandbox', name: s.name },
    serve: [s.dir],
    receive: [s.dir],
    registry: registry(),
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  register(s.name, { url: `https://127.0.0.1:${config.listen.port}`, tokenFile: `${s.name}/agent/token` });
}

/**
 * agents.json changed under a lock (sandboxes made side by side, parallel test files, register
 * at once) and replaced whole by a rename: a reader never sees it half-written, and no entry is
 * lost to a write that read the file before another one's.
 */
function register(name: string, entry: { url: string; tokenFile: string } | undefined): void {
  mkdirSync(sandboxHome(), { recursive: true });
  withRegistryLock(() => {
    let doc: { agents: Record<string, unknown> } = { agents: {} };
    if (existsSync(registry())) doc = JSON.parse(readFileSync(registry(), 'utf8')) as typeof doc;
    if (entry)
      doc.agents[name] = {
        ...entry,
        ca: 'agent-ca/ca.pem',
        cert: 'agent-ca/cli/cert.pem',
        key: 'agent-ca/cli/key.pem',
      };
    else delete doc.agents[name];
    const tmp = `${registry()}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(doc, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, registry());
  });
}

/**
 * A lock between processes: a directory made with mkdir. One older than `staleMs` was left by a
 * process killed while it held it, and goes.
 */
function tryLock(lock: string, staleMs: number): boolean {
  try {
    mkdirSync(lock);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    try {
      if (Date.now() - statSync(lock).mtimeMs > staleMs) rmdirSync(lock);
    } catch {
      // gone meanwhile
    }
    return false;
  }
}

function lockHeld(lock: string, seconds: number): ReseedError {
  return new ReseedError(
    'SANDBOX',
    `${lock} has been held for over ${seconds} s: remove it if no reseed command runs`,
  );
}

/** agents.json's lock: held for milliseconds, so waited for without giving up the thread. */
function withRegistryLock(fn: () => void): void {
  const lock = `${registry()}.lock`;
  for (let attempt = 0; !tryLock(lock, 10_000); attempt++) {
    if (attempt > 1000) throw lockHeld(lock, 10);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  try {
    fn();
  } finally {
    rmdirSync(lock);
  }
}

/** The sandboxes' CA's lock: held while openssl makes keys (a second or so). */
async function withCaLock(fn: () => Promise<void>): Promise<void> {
  mkdirSync(sandboxHome(), { recursive: true });
  const lock = `${caDir()}.lock`;
  for (let attempt = 0; !tryLock(lock, 60_000); attempt++) {
    if (attempt > 1200) throw lockHeld(lock, 60);
    await sleep(50);
  }
  try {
    await fn();
  } finally {
    rmdirSync(lock);
  }
}

/** Starts the sandbox's agent (made the first time) and waits until it answers. */
export async function sandboxAgentUp(s: SandboxInfo): Promise<SandboxAgentInfo> {
  await prepare(s);
  const current = sandboxAgent(s)!;
  if (current.running) return current;
  const log = openSync(join(agentDir(s), 'agent.log'), 'a', 0o600);
  // RESEED_AGENT_NODE_ARGS: extra Node.js flags for sandbox agents (e.g. --cpu-prof), for profiling.
  const nodeArgs = (process.env.RESEED_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(
    process.execPath,
    [...nodeArgs, BIN, 'agent', '--config', join(agentDir(s), 'config.json')],
    {
      detached: true,
      stdio: ['ignore', log, log],
    },
  );
  closeSync(log);
  let exited: string | undefined;
  child.once('exit', (code, sig) => (exited = sig ?? `exit ${code}`));
  child.unref();
  writeFileSync(join(agentDir(s), 'agent.pid'), String(child.pid));
  const client = new AgentClient(resolveAgent(s.name, [registry()]));
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await client.call('GET', '/v1/health');
        return sandboxAgent(s)!;
      } catch (err) {
        if (exited !== undefined || Date.now() > deadline) {
          if (exited === undefined) child.kill('SIGKILL');
          const tail = readFileSync(join(agentDir(s), 'agent.log'), 'utf8')
            .trim()
            .split('\n')
            .slice(-5);
          throw new ReseedError(
            'SANDBOX',
            `the agent of sandbox ${s.name} did not start (${exited ?? errorMessage(err)})`,
            {
              hints: tail,
            },
          );
        }
        await sleep(100);
      }
    }
  } finally {
    await client.close();
  }
}

/** Stops the sandbox's agent (its running job is cancelled and undone first) and waits for it. */
export async function sandboxAgentDown(s: SandboxInfo): Promise<void> {
  const pid = pidOf(s);
  if (pid === undefined) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 60_000;
  while (pidOf(s) !== undefined && Date.now() < deadline) await sleep(50);
  if (pidOf(s) !== undefined) process.kill(pid, 'SIGKILL');
  rmSync(join(agentDir(s), 'agent.pid'), { force: true });
}

export function forgetSandboxAgent(name: string): void {
  if (existsSync(registry())) register(name, undefined);
}
