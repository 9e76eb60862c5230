import { Command, Option } from 'commander';
import { METHODS } from '../methods/registry.js';
import { clone } from '../clone/clone.js';
import { defaultCloneOptions } from '../clone/defaults.js';
import { connect } from '../mysql/server.js';
import { loadSampleData } from '../sandbox/sample-data.js';
import { getSandbox, sandboxEndpoint, sandboxRemove, sandboxUp } from '../sandbox/sandbox.js';
import { ReseedError } from '../errors.js';
import { abortOnSignals, logger, parsePositiveInt, reportError } from './common.js';
import { renderSummary } from './clone.js';
import { formatBytes, formatMs } from './output.js';
import { terminalSink } from './progress-screen.js';
import { renderReport } from './verify.js';
import { AgentClient } from '../agent/client.js';
import type { JobRecord } from '../agent/jobs.js';
import { resolveAgent } from '../agent/registry.js';
import { forgetSandboxAgent, sandboxAgentDown, sandboxAgentUp } from '../agent/sandbox-agent.js';
import { follow } from './jobs.js';

function tryIt(donorPort: number, joinerPort: number, agents: boolean): string {
  return [
    '',
    'Try it:',
    `  mariadb -h127.0.0.1 -P${donorPort} -uroot shop     # the donor: write something`,
    `  mariadb -h127.0.0.1 -P${joinerPort} -uroot shop    # the joiner: see it arrive (SHOW SLAVE STATUS\\G)`,
    `  bin/reseed verify --from mysql://root@127.0.0.1:${donorPort} --to mysql://root@127.0.0.1:${joinerPort}`,
    ...(agents
      ? ["  bin/reseed jobs --on agent://demo-joiner             # the clone, as a job of the joiner's agent"]
      : []),
    'Remove them (and their agents):',
    '  bin/reseed sandbox rm demo-donor && bin/reseed sandbox rm demo-joiner',
    '',
  ].join('\n');
}

/** The demo's clone as a job of the joiner's agent, followed like `reseed clone --from agent://...`. */
async function agentClone(method: string, parallel: number): Promise<number> {
  const client = new AgentClient(resolveAgent('demo-joiner'));
  try {
    const job = await client.call<JobRecord>('POST', '/v1/jobs', {
      kind: 'clone',
      from: 'demo-donor',
      method,
      parallel,
      replicationUser: 'repl',
      replicationPassword: 'demo-repl-password',
      verify: true,
      // The demo's donor is idle: on a small machine the adaptive throttle's latency probe reads
      // the clone's own load as the donor's and slows the verification many times over.
      throttle: false,
    });
    process.stderr.write(`  job ${job.id} on agent://demo-joiner\n`);
    return await follow(client, 'demo-joiner', job.id, false, true);
  } finally {
    await client.close();
  }
}

const SIZE_UNITS = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(text.trim());
  const bytes = m ? Math.round(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase() as keyof typeof SIZE_UNITS]) : 0;
  if (bytes < 1)
    throw new ReseedError('USAGE', `--size takes a size, not "${text}" (examples: 50M, 300M, 2G)`);
  return bytes;
}

export function demoCommand(): Command {
  return new Command('demo')
    .summary('two local MariaDB sandboxes, sample data, a clone, a verification, a summary')
    .description(
      'Starts sandboxes "demo-donor" and "demo-joiner" (fresh each time), loads a sample shop schema into the donor, clones it to the joiner as a replica, verifies it and prints a summary.',
    )
    .option('--size <size>', 'approximate sample data size', '300M')
    .option('--parallel <n>', 'copy workers', '4')
    .addOption(
      new Option(
        '--method <method>',
        "how the joiner is seeded: logical, mariabackup (a hot physical copy, through agents), copy (the datadir's files, through agents: the donor's mysqld is stopped for a second pass) or snapshot (a btrfs or ZFS snapshot, through agents; see --fs)",
      )
        .choices([...METHODS.keys(), 'mariabackup', 'copy', 'snapshot'])
        .default('logical'),
    )
    .addOption(
      new Option(
        '--fs <kind>',
        '--method snapshot: the filesystem both sandboxes get (an image file each, under the sandbox directory; removed by sandbox rm): btrfs (loop-mounted; the default) or zfs (zfs-fuse pools)',
      ).choices(['btrfs', 'zfs']),
    )
    .option(
      '--agents',
      "run the clone through two reseed agents, one per sandbox (the joiner's agent runs it; implied by --method mariabackup and copy)",
    )
    .action(
      async (o: {
        size: string;
        parallel: string;
        method: string;
        agents?: boolean;
        fs?: 'btrfs' | 'zfs';
      }) => {
        // Bad input is refused before any sandbox is touched.
        let bytes: number;
        let parallel: number;
        try {
          bytes = parseSize(o.size);
          parallel = parsePositiveInt('--parallel', o.parallel, 64);
          if (o.fs && o.method !== 'snapshot')
            throw new ReseedError('USAGE', `--fs is for --method snapshot (given --method ${o.method})`);
          if (o.method === 'snapshot') o.fs ??= 'btrfs';
        } catch (err) {
          process.exitCode = reportError(err, false);
          return;
        }
        const term = terminalSink();
        const { signal, dispose } = abortOnSignals(() => term.stop());
        try {
          for (const name of ['demo-donor', 'demo-joiner']) {
            const old = getSandbox(name);
            if (!old) continue;
            await sandboxAgentDown(old);
            await sandboxRemove(name);
            forgetSandboxAgent(name);
          }
          const agents = o.agents === true || o.method !== 'logical';
          process.stderr.write('Starting two sandboxes...\n');
          // The image files hold the sample data with room for the snapshots and the swap.
          const fsSize = `${Math.max(2, Math.ceil((bytes * 3) / 2 ** 30) + 2)}G`;
          const where = o.fs ? { fs: o.fs, fsSize } : {};
          if (o.fs)
            process.stderr.write(`  each with its datadir on ${o.fs} (an image file of ${fsSize}, sparse)\n`);
          const donor = await sandboxUp('demo-donor', { signal, ...where });
          const joiner = await sandboxUp('demo-joiner', { signal, ...where });
          process.stderr.write(
            `  donor  127.0.0.1:${donor.port} (server_id ${donor.serverId})\n  joiner 127.0.0.1:${joiner.port} (server_id ${joiner.serverId})\n`,
          );
          const t = Date.now();
          process.stderr.write(`Loading about ${formatBytes(bytes)} of sample data into the donor...\n`);
          const s = await connect(sandboxEndpoint(donor));
          await loadSampleData(s, { bytes }, signal);
          // The account the joiner replicates with; its password reaches reseed by environment.
          await s.query("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'demo-repl-password'");
          await s.query("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'");
          await s.close();
          process.stderr.write(`  loaded in ${formatMs(Date.now() - t)}\n`);
          if (agents) {
            process.stderr.write('Starting an agent for each sandbox...\n');
            for (const sb of [donor, joiner]) {
              const a = await sandboxAgentUp(sb);
              process.stderr.write(`  agent://${sb.name} at ${a.url}\n`);
            }
            process.stderr.write(`Cloning donor -> joiner through the agents (--method ${o.method})...\n`);
            term.stop();
            process.exitCode = await agentClone(o.method, parallel);
            if (process.exitCode === 0) process.stderr.write(tryIt(donor.port, joiner.port, true));
            return;
          }
          process.stderr.write('Cloning donor -> joiner...\n');
          const summary = await clone({
            donor: sandboxEndpoint(donor),
            joiner: sandboxEndpoint(joiner),
            log: logger(false),
            progress: term,
            signal,
            options: defaultCloneOptions({
              method: o.method,
              parallel,
              replicationUser: 'repl',
              replicationPassword: 'demo-repl-password',
              verify: true,
            }),
          });
          term.stop(true);
          process.stdout.write(renderSummary(summary));
          if (summary.verify) process.stdout.write('Verification: ' + renderReport(summary.verify));
          process.stderr.write(tryIt(donor.port, joiner.port, false));
        } catch (err) {
          term.stop();
          process.exitCode = reportError(err, false);
        } finally {
          dispose();
        }
      },
    );
}
