import { Command, Option } from 'commander';
import { ReseedError } from '../errors.js';
import {
  forgetSandboxAgent,
  sandboxAgent,
  sandboxAgentDown,
  sandboxAgentUp,
} from '../agent/sandbox-agent.js';
import {
  checkBufferPool,
  getSandbox,
  listSandboxes,
  sandboxDown,
  sandboxHome,
  sandboxRemove,
  sandboxUp,
  sandboxUri,
} from '../sandbox/sandbox.js';
import type { SandboxInfo } from '../sandbox/sandbox.js';
import { parsePositiveInt, reportError } from './common.js';

function state(s: SandboxInfo): string {
  if (s.running) return 'running';
  return s.stalePidFile ? 'stopped (stale pid file)' : 'stopped';
}

function describe(s: SandboxInfo): string {
  const a = sandboxAgent(s);
  const agent = a ? `  agent ${a.running ? a.url : 'stopped'}` : '';
  const fs = s.fs ? `  ${s.fs} datadir ${s.datadir}` : '';
  return `${s.name.padEnd(16)} ${state(s)}  port ${s.port}  server_id ${s.serverId}  ${sandboxUri(s)}  socket ${s.socket}${fs}${agent}`;
}

function agentOf(s: SandboxInfo): { url: string; state: string; pid: number | null } | null {
  const a = sandboxAgent(s);
  return a ? { url: a.url, state: a.running ? 'running' : 'stopped', pid: a.pid ?? null } : null;
}

async function guarded(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    process.exitCode = reportError(err, false);
  }
}

function fsSizeOf(o: { fs?: string; fsSize?: string }): string | undefined {
  if (o.fsSize === undefined) return undefined;
  if (!o.fs)
    throw new ReseedError(
      'USAGE',
      "--fs-size is the size of --fs's image file: give --fs btrfs or --fs zfs too",
    );
  return checkFsSize(o.fsSize);
}

function checkFsSize(text: string): string {
  if (!/^[1-9]\d*[MGT]$/i.test(text.trim()))
    throw new ReseedError('USAGE', `--fs-size takes a size such as 2G or 512M, not "${text}"`);
  const mib =
    Number(text.slice(0, -1)) * { M: 1, G: 1024, T: 1024 * 1024 }[text.trim().slice(-1).toUpperCase()]!;
  if (mib < 512)
    throw new ReseedError(
      'USAGE',
      `--fs-size must be at least 512M, not "${text}" (btrfs and ZFS need room)`,
    );
  return text.trim();
}

export function sandboxCommand(): Command {
  const cmd = new Command('sandbox')
    .summary('local MariaDB servers for trying reseed and for tests')
    .description(
      'A sandbox is a real mariadbd from the installed packages with its own datadir, socket, port ' +
        'and server_id, binary logging and GTIDs on, listening on 127.0.0.1 only; root has no ' +
        `password there. They live in ${sandboxHome()} (RESEED_SANDBOX_DIR to change).`,
    );
  cmd
    .command('up <name>')
    .description('create (if new) and start a sandbox')
    .option('--port <port>', 'TCP port (default: a free one); fixed when the sandbox is created')
    .option(
      '--buffer-pool <size>',
      'innodb_buffer_pool_size, such as 128M or 1G (default: 256M); fixed when the sandbox is created',
    )
    .option(
      '--agent',
      "also start a reseed agent for the sandbox's host (TLS, a token; registered as agent://NAME)",
    )
    .addOption(
      new Option(
        '--fs <kind>',
        'put the datadir on a filesystem of its own that takes snapshots (for --method snapshot): btrfs (an image file, loop-mounted; needs btrfs-progs) or zfs (a zfs-fuse pool on an image file; needs zfs-fuse); root only; fixed when the sandbox is created, removed by sandbox rm',
      ).choices(['btrfs', 'zfs']),
    )
    .option('--fs-size <size>', "with --fs: the image file's size (sparse; at least 512M; default 4G)")
    .action(
      (
        name: string,
        o: { port?: string; bufferPool?: string; agent?: boolean; fs?: 'btrfs' | 'zfs'; fsSize?: string },
      ) =>
        guarded(async () => {
          // No defaults here: an option left out must not count as asking an existing sandbox
          // to change (sandboxUp refuses that).
          const s = await sandboxUp(name, {
            port: o.port === undefined ? undefined : parsePositiveInt('--port', o.port, 65535),
            bufferPool: o.bufferPool === undefined ? undefined : checkBufferPool(o.bufferPool),
            fs: o.fs,
            fsSize: fsSizeOf(o),
          });
          process.stdout.write(describe(s) + '\n');
          process.stdout.write(`connect: mariadb -h127.0.0.1 -P${s.port} -uroot\n`);
          if (o.agent) {
            const a = await sandboxAgentUp(s);
            process.stdout.write(`agent: agent://${s.name} at ${a.url} (pid ${a.pid})\n`);
          }
        }),
    );
  cmd
    .command('down <name>')
    .description("stop a sandbox's mysqld (its data stays; its agent, if any, keeps running unless --agent)")
    .option('--agent', 'also stop its agent (without it, the agent keeps running: the "host" stays up)')
    .action((name: string, o: { agent?: boolean }) =>
      guarded(async () => {
        const s = getSandbox(name);
        if (s && o.agent) await sandboxAgentDown(s);
        process.stdout.write(describe(await sandboxDown(name)) + '\n');
      }),
    );
  cmd
    .command('list')
    .description('list sandboxes')
    .option('--json', 'one JSON array: name, state, port, socket, datadir, server_id, URI and agent of each')
    .action((flags: { json?: boolean }) =>
      guarded(async () => {
        const all = listSandboxes();
        if (flags.json) {
          const rows = all.map((s) => ({
            name: s.name,
            state: s.running ? 'running' : 'stopped',
            port: s.port,
            socket: s.socket,
            datadir: s.datadir,
            fs: s.fs ?? null,
            serverId: s.serverId,
            uri: sandboxUri(s),
            pid: s.pid ?? null,
            agent: agentOf(s),
          }));
          process.stdout.write(JSON.stringify(rows) + '\n');
        } else process.stdout.write(all.length ? all.map(describe).join('\n') + '\n' : 'no sandboxes\n');
      }),
    );
  cmd
    .command('rm <name>')
    .description(
      'stop a sandbox (and its agent) and delete its directory; a sandbox made with --fs has its filesystem unmounted or its ZFS pool destroyed first',
    )
    .action((name: string) =>
      guarded(async () => {
        const s = getSandbox(name);
        if (s) await sandboxAgentDown(s);
        await sandboxRemove(name);
        forgetSandboxAgent(name);
        process.stdout.write(`removed ${name}\n`);
      }),
    );
  return cmd;
}
