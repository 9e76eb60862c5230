import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { loadAgentConfig } from '../agent/config.js';
import { initAgents } from '../agent/pki.js';
import type { AgentHost } from '../agent/pki.js';
import { startAgent } from '../agent/server.js';
import { ReseedError } from '../errors.js';
import { createLogger } from '../log.js';
import { reportError } from './common.js';

const DEFAULT_PORT = 7420;

export function agentCommand(): Command {
  const cmd = new Command('agent')
    .summary("run reseed's agent on a database host (file access, jobs, the data channel)")
    .description(
      'Runs the agent described by --config (JSON; see docs/agents.md): an HTTPS API whose every ' +
        'request carries the bearer token of the tokenFile (mode 0600), jobs kept in its stateDir, ' +
        'and the data channel that sends and receives directory trees. SIGTERM or Ctrl-C cancels ' +
        'the running job (its changes are undone) and stops. `reseed agent init` makes the CA, ' +
        'certificates, tokens and starting configurations for a set of hosts.',
    )
    .option('--config <file>', "the agent's configuration file")
    .option('-v, --verbose', 'log debug lines')
    .action(async (flags: { config?: string; verbose?: boolean }) => {
      try {
        if (!flags.config)
          throw new ReseedError('USAGE', 'reseed agent needs --config FILE (or: reseed agent init)');
        await runAgent(flags.config, flags.verbose === true);
      } catch (err) {
        process.exitCode = reportError(err, false);
      }
    });
  cmd
    .command('init')
    .description(
      "make a CA, a certificate (server and client) and a token for each host, each host's " +
        "starting config.json with its peers, and agents.json for the CLI; copy each host's " +
        'directory to it and finish its config.json (mysql, datadir, service, serve, receive)',
    )
    .requiredOption(
      '--hosts <list>',
      `comma-separated NAME=ADDRESS[:PORT] (port ${DEFAULT_PORT} by default), e.g. db1=10.0.0.1,db2=db2.example.com`,
    )
    .requiredOption('--out <dir>', 'a new directory to write into')
    .action(async (flags: { hosts: string; out: string }) => {
      try {
        const made = await initAgents(parseHosts(flags.hosts), flags.out);
        for (const dir of made) process.stdout.write(`${dir}: copy to that host; edit its config.json\n`);
        process.stdout.write(
          `${flags.out}/agents.json: for the CLI (RESEED_AGENTS=${flags.out}/agents.json, or copy it to ~/.reseed/agents.json)\n` +
            `${flags.out}/ca: the CA's key, to add hosts later; keep it off the database hosts\n`,
        );
      } catch (err) {
        process.exitCode = reportError(err, false);
      }
    });
  return cmd;
}

export function parseHosts(text: string): AgentHost[] {
  const hosts = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const m = /^([^=]+)=(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(item);
      if (!m) throw new ReseedError('USAGE', `--hosts: "${item}" is not NAME=ADDRESS[:PORT]`);
      const port = m[3] === undefined ? DEFAULT_PORT : Number(m[3]);
      if (!(port >= 1 && port <= 65535)) throw new ReseedError('USAGE', `--hosts: bad port in "${item}"`);
      return { name: m[1]!, address: m[2]!.replace(/^\[|\]$/g, ''), port };
    });
  if (hosts.length === 0) throw new ReseedError('USAGE', '--hosts names no host');
  return hosts;
}

async function runAgent(configFile: string, verbose: boolean): Promise<void> {
  const config = loadAgentConfig(configFile);
  const log = createLogger({ level: verbose ? 'debug' : 'info', destination: 1 });
  for (const dir of [...config.serve, ...config.receive])
    if (!existsSync(dir)) log.warn({ dir }, `${dir} (serve/receive) does not exist`);
  const agent = await startAgent(config, log).catch((err: unknown) => {
    throw startError(err, configFile);
  });
  process.stdout.write(`reseed agent ${config.name} listening on ${agent.url}\n`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: NodeJS.Signals) => {
      if (stopping) {
        // A second signal: stop now; the next start undoes what the job left.
        log.warn({ signal: sig }, 'second signal: exiting at once');
        process.exitCode = 130;
        return resolve();
      }
      stopping = true;
      log.info({ signal: sig }, 'stopping (a running job is cancelled and undone first)');
      void agent.close().then(resolve, resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  process.exit(process.exitCode ?? 0);
}

/** What the system said when the agent could not start, in terms of the configuration's keys. */
function startError(err: unknown, file: string): unknown {
  const e = err as NodeJS.ErrnoException & { path?: string };
  const where: Record<string, string> = {
    EADDRINUSE: 'listen: the address is in use (another agent, or another program)',
    EADDRNOTAVAIL: 'listen: this host has no such address',
    EACCES: `permission denied${e.path ? ` on ${e.path}` : ''} (stateDir, tls files or listen port)`,
    ENOENT: `${e.path ?? 'a file'} does not exist (tls.cert, tls.key, tls.ca or stateDir)`,
    ENOTDIR: `${e.path ?? 'a path'}: a part of it is not a directory (stateDir)`,
    EROFS: `${e.path ?? 'a path'} is on a read-only filesystem (stateDir)`,
  };
  const why = e.code ? where[e.code] : undefined;
  return why ? new ReseedError('CONFIG', `${file}: ${why}`, { cause: err }) : err;
}
