import { Command, Option } from 'commander';
import { AgentClient } from '../agent/client.js';
import type { JobRecord } from '../agent/jobs.js';
import { resolveAgent } from '../agent/registry.js';
import { ReseedError } from '../errors.js';
import { parseDuration, parseHostPort, parsePositiveInt, reportError } from './common.js';
import { agentName, lockDuration, replicationAccount } from './clone-agents.js';
import { follow, resumeTimeout } from './jobs.js';

interface RefreshFlags {
  from: string;
  to: string;
  plan?: boolean;
  dryRun?: boolean;
  full?: boolean;
  force?: boolean;
  replicate: boolean;
  replicationUser?: string;
  replicationHost?: string;
  replicationDefaultsFile?: string;
  replicateFrom: 'donor' | 'source';
  catchupTimeout: string;
  verify: boolean;
  writable?: boolean;
  throttle: boolean;
  compress?: 'none' | 'lz4' | 'zstd';
  resumeTimeout?: string;
  lockWaitTimeout: string;
  maxLockTime: string;
  parallel: string;
  json?: boolean;
}

/**
 * `reseed refresh`: a replica seeded by --method snapshot brought up to date the cheapest way
 * that works, chosen by the joiner's agent: replication catching up alone, an incremental send
 * against the snapshot both sides kept, or a full send.
 */
export function refreshCommand(): Command {
  return new Command('refresh')
    .summary('bring a replica seeded by --method snapshot up to date, the cheapest way that works')
    .description(
      "Asks the joiner's agent to refresh it from the donor's agent, choosing (Galera's IST before SST): " +
        'replication catching up alone when the joiner replicates from the donor without an error; ' +
        'else an incremental snapshot (btrfs send -p / zfs send -i) against the base both sides kept from the last snapshot clone; ' +
        'else a full snapshot clone. The joiner is then swapped, replicated and verified as by clone --method snapshot. ' +
        '--plan prints the choice and why, and changes nothing. ' +
        "Like a clone, a refresh replaces the joiner's whole datadir (its mysqld is stopped for the swap; the old datadir comes back on failure); " +
        "an incremental one needs no --force (the joiner holds the donor's base: a replica it seeded) unless the joiner holds schemas the donor has not. " +
        'The donor keeps the last snapshot it sent to each replica (its space grows as the donor changes): reseed bases --on agent://DONOR lists and removes them. ' +
        'The replication password comes from RESEED_REPLICATION_PASSWORD or --replication-defaults-file.',
    )
    .requiredOption('--from <agent>', "the donor's agent: agent://NAME")
    .requiredOption('--to <agent>', "the joiner's agent: agent://NAME")
    .option('--plan', 'print the choice and why, change nothing (needs no replication account)')
    .addOption(new Option('--dry-run', 'the same as --plan').hideHelp())
    .option('--full', 'send the whole snapshot whatever the bases (also after the bases diverged)')
    .option(
      '--force',
      "a full send onto a joiner that holds data of its own replaces it (an incremental needs no --force: the joiner holds the donor's base)",
    )
    .option(
      '--replication-user <user>',
      'the account the joiner replicates with (REPLICATION SLAVE on the donor)',
    )
    .option(
      '--replication-host <host:port>',
      "where the joiner's replication connects (default: the donor's address)",
    )
    .option(
      '--replication-defaults-file <file>',
      "option file with the replication account's password ([client] password)",
    )
    .option(
      '--replicate-from <donor|source>',
      'when the donor is a replica: follow the donor, or its source',
      'donor',
    )
    .option('--no-replicate', 'leave the copy without replication')
    .option('--catchup-timeout <duration>', 'give up waiting for the replica to catch up after this', '10m')
    .option('--no-verify', 'skip the comparison after the catch-up')
    .option('--writable', 'leave the joiner writable (default: read_only=ON)')
    .option('--no-throttle', "verification: no adaptive throttle on the donor's reads")
    .option('--compress <codec>', 'compress the data channel: none, lz4 or zstd')
    .option(
      '--resume-timeout <duration>',
      'how long the data channel may be cut (nothing arriving) before the refresh fails and is undone; a send cut for less resumes where it stopped (1s to 24h, default 60s; a bare number is seconds)',
    )
    .option(
      '--lock-wait-timeout <duration>',
      "give up (and kill) the donor's read-lock statement after this",
      '10s',
    )
    .option(
      '--max-lock-time <duration>',
      "the donor's read lock is ended after this (the snapshot then fails)",
      '5s',
    )
    .option('--parallel <n>', 'verification sessions', '4')
    .option('--json', 'the job events, one JSON object per line, then the job')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  reseed refresh --from agent://db1 --to agent://db2 --plan\n' +
        '  RESEED_REPLICATION_PASSWORD=secret reseed refresh --from agent://db1 --to agent://db2 --replication-user repl\n',
    )
    .action(async (flags: RefreshFlags) => {
      process.exitCode = await runRefresh(flags);
    });
}

async function runRefresh(flags: RefreshFlags): Promise<number> {
  try {
    const from = agentName(flags.from, '--from');
    const to = agentName(flags.to, '--to');
    if (from === to)
      throw new ReseedError(
        'USAGE',
        `--from and --to name the same agent (${from}): the donor and the joiner must differ`,
      );
    if (!['donor', 'source'].includes(flags.replicateFrom))
      throw new ReseedError('USAGE', `--replicate-from takes donor or source, not "${flags.replicateFrom}"`);
    if (flags.compress !== undefined && !['none', 'lz4', 'zstd'].includes(flags.compress))
      throw new ReseedError('USAGE', `--compress takes none, lz4 or zstd, not "${flags.compress}"`);
    // --plan changes nothing: it needs no replication account.
    const plan = flags.plan === true || flags.dryRun === true;
    const password = replicationAccount(flags, !plan);
    const request = {
      kind: 'clone',
      from,
      method: 'snapshot',
      refresh: flags.full ? 'full' : 'auto',
      force: flags.force === true,
      replicate: flags.replicate,
      ...(flags.replicate && flags.replicationUser
        ? {
            replicationUser: flags.replicationUser,
            ...(password !== undefined ? { replicationPassword: password } : {}),
            ...(flags.replicationHost
              ? { replicationHost: parseHostPort(flags.replicationHost, '--replication-host') }
              : {}),
            catchupTimeoutMs: parseDuration(flags.catchupTimeout, '--catchup-timeout'),
            replicateFrom: flags.replicateFrom,
          }
        : {}),
      verify: flags.verify !== false,
      writable: flags.writable === true,
      throttle: flags.throttle !== false,
      dryRun: flags.plan === true || flags.dryRun === true,
      parallel: parsePositiveInt('--parallel', flags.parallel, 64),
      ...(flags.compress !== undefined ? { compress: flags.compress } : {}),
      ...(flags.resumeTimeout !== undefined ? { resumeTimeoutMs: resumeTimeout(flags.resumeTimeout) } : {}),
      lockWaitTimeoutMs: lockDuration(flags.lockWaitTimeout, '--lock-wait-timeout'),
      maxLockTimeMs: lockDuration(flags.maxLockTime, '--max-lock-time'),
    };
    const client = new AgentClient(resolveAgent(to));
    try {
      const job = await client.call<JobRecord>('POST', '/v1/jobs', request);
      if (!flags.json) process.stderr.write(`job ${job.id} on agent://${to}: refresh from agent://${from}\n`);
      return await follow(client, to, job.id, flags.json === true, true);
    } finally {
      await client.close();
    }
  } catch (err) {
    return reportError(err, flags.json === true);
  }
}
