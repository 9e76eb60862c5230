import type { Command } from 'commander';
import { AgentClient } from '../agent/client.js';
import type { JobRecord } from '../agent/jobs.js';
import { resolveAgent } from '../agent/registry.js';
import { ReseedError } from '../errors.js';
import type { CloneFlags } from './clone.js';
import {
  parseDuration,
  parseHostPort,
  parseList,
  parsePositiveInt,
  replicationPassword,
  reportError,
} from './common.js';
import { parseRate } from '../throttle/donor-throttle.js';
import { follow, resumeTimeout } from './jobs.js';

export const isAgentRef = (text: string) => /^agent:\/\//.test(text);

/** The clone flags a job through agents takes; the others are refused when given. */
const AGENT_FLAGS = new Set([
  'throttle',
  'from',
  'to',
  'method',
  'schemas',
  'parallel',
  'force',
  'users',
  'replicate',
  'replicationUser',
  'replicationHost',
  'replicationDefaultsFile',
  'replicateFrom',
  'catchupTimeout',
  'writable',
  'verify',
  'dryRun',
  'json',
  'verbose',
  'compress',
  'resumeTimeout',
  'lockWaitTimeout',
  'maxDowntime',
  'delta',
  'maxLockTime',
  'maxRate',
]);
/** Flags through agents that only some physical methods take, and why. */
const METHOD_FLAGS: Record<string, { methods: string[]; why: string }> = {
  lockWaitTimeout: {
    methods: ['copy', 'snapshot'],
    why: "--lock-wait-timeout bounds the wait for the donor's read lock (copy: before it stops the donor's mysqld; snapshot: around the snapshot); through agents the other methods wait as long as their default",
  },
  maxDowntime: {
    methods: ['copy'],
    why: "--max-downtime bounds how long the copy keeps the donor's mysqld stopped; the other methods never stop it",
  },
  delta: {
    methods: ['copy'],
    why: "--delta reuses the blocks of the joiner's datadir that equal the donor's files: only a file copy has blocks to compare (a mariadb-backup or snapshot stream is not the datadir's files)",
  },
  maxRate: {
    methods: ['copy'],
    why: "--max-rate caps the copy's reads of the donor's datadir (both passes); through agents the other methods do not take it yet",
  },
  maxLockTime: {
    methods: ['snapshot'],
    why: '--max-lock-time bounds the read lock held around the snapshot; through agents the other methods hold their own locks (BACKUP STAGE in mariadb-backup, the stop of the copy)',
  },
};
/** logical only */
const LOGICAL_ONLY = ['schemas', 'users'] as const;
/** the connection flags: through agents the agents' own accounts are used */
const CONNECTION = [
  'defaultsFile',
  'donorDefaultsFile',
  'joinerDefaultsFile',
  'sslMode',
  'sslCa',
  'sslCert',
  'sslKey',
];

/** --max-downtime: from 1 s (a stop and a start take that) to a day, as the agent takes it. */
function maxDowntime(text: string): number {
  const ms = parseDuration(text, '--max-downtime');
  if (ms < 1000 || ms > 86_400_000)
    throw new ReseedError(
      'USAGE',
      `--max-downtime takes 1s to 24h, not "${text}" (the donor's mysqld needs a second to stop and start again)`,
    );
  return ms;
}

function copyRate(text: string): number {
  const r = parseRate(text);
  if (r === undefined || r <= 0)
    throw new ReseedError('USAGE', `--max-rate takes bytes per second such as 50M or 1G, not "${text}"`);
  return r;
}

/**
 * The replication account's password (undefined without --replicate), the account and its
 * password required when `required`: refused here, before a job is made.
 */
export function replicationAccount(
  flags: {
    replicate: boolean;
    replicationUser?: string | undefined;
    replicationDefaultsFile?: string | undefined;
  },
  required: boolean,
): string | undefined {
  const password = flags.replicate ? replicationPassword(flags.replicationDefaultsFile) : undefined;
  if (!flags.replicate || !required) return password;
  if (!flags.replicationUser)
    throw new ReseedError(
      'USAGE',
      'replication needs --replication-user (an account on the donor with REPLICATION SLAVE), or pass --no-replicate',
    );
  if (password === undefined)
    throw new ReseedError(
      'USAGE',
      `no password for the replication account ${flags.replicationUser}: set RESEED_REPLICATION_PASSWORD or pass --replication-defaults-file`,
    );
  return password;
}

/** A bound of the donor's read lock through agents: 100ms to 1h, as the agents take it. */
export function lockDuration(text: string, flag: string): number {
  const ms = parseDuration(text, flag);
  if (ms < 100 || ms > 3_600_000) throw new ReseedError('USAGE', `${flag} takes 100ms to 1h, not "${text}"`);
  return ms;
}

const flagName = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

export function agentName(text: string, option: string): string {
  const m = /^agent:\/\/([^/]+)\/?$/.exec(text);
  if (!m) throw new ReseedError('USAGE', `${option} takes agent://NAME, not "${text}"`);
  return m[1]!;
}

/**
 * `reseed clone --from agent://A --to agent://B`: the clone is a job of the joiner's agent (B),
 * which asks the donor's (A) to serve its half; this process only asks and follows. Ctrl-C
 * cancels the job (the agent undoes it); a second Ctrl-C stops following.
 */
export async function runAgentClone(
  flags: CloneFlags & { compress?: string; resumeTimeout?: string; maxDowntime?: string; delta?: boolean },
  command: Command,
): Promise<number> {
  try {
    if (!isAgentRef(flags.from) || !isAgentRef(flags.to))
      throw new ReseedError(
        'USAGE',
        `through agents both sides are agents: --from agent://DONOR --to agent://JOINER (given --from ${flags.from} --to ${flags.to})`,
      );
    const given = (k: string) => command.getOptionValueSource(k) === 'cli';
    const refused = command.options
      .map((o) => o.attributeName())
      .filter((k) => given(k) && !AGENT_FLAGS.has(k))
      .map((k) => command.options.find((o) => o.attributeName() === k)!.long);
    if (refused.length)
      throw new ReseedError(
        'USAGE',
        `through agents, ${refused.join(', ')} ${refused.length > 1 ? 'are' : 'is'} not supported yet: drop ${refused.length > 1 ? 'them' : 'it'}`,
        {
          hints: CONNECTION.some(given)
            ? [
                "the agents use their own mysql accounts (their configurations' mysql key): no passwords or option files are given here",
              ]
            : [],
        },
      );
    if (flags.method !== 'logical') {
      const clash = LOGICAL_ONLY.filter((k) => given(k)).map((k) => `--${k}`);
      if (clash.length)
        throw new ReseedError(
          'USAGE',
          `--method ${flags.method} copies the whole datadir: ${clash.join(', ')} ${clash.length > 1 ? 'apply' : 'applies'} to --method logical only`,
        );
    } else if (given('compress'))
      throw new ReseedError(
        'USAGE',
        '--compress applies to --method mariabackup and copy (the logical method reads the donor over SQL)',
      );
    const clash = Object.keys(METHOD_FLAGS).filter(
      (k) => given(k) && !METHOD_FLAGS[k]!.methods.includes(flags.method),
    );
    if (clash.length)
      throw new ReseedError(
        'USAGE',
        clash
          .map(
            (k) =>
              `${flagName(k)} applies through agents to --method ${METHOD_FLAGS[k]!.methods.join(' and ')} only`,
          )
          .join('; '),
        { hints: clash.map((k) => METHOD_FLAGS[k]!.why) },
      );
    if (!flags.replicate) {
      const clash = [
        'replicationUser',
        'replicationHost',
        'replicationDefaultsFile',
        'replicateFrom',
        'catchupTimeout',
      ].filter(given);
      if (clash.length)
        throw new ReseedError(
          'USAGE',
          `--no-replicate contradicts ${clash.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')}`,
        );
    }
    const from = agentName(flags.from, '--from');
    const to = agentName(flags.to, '--to');
    if (from === to)
      throw new ReseedError(
        'USAGE',
        `--from and --to name the same agent (${from}): the donor and the joiner must differ`,
      );
    // Refused here, before a job is made: the agent would refuse it after.
    const password = replicationAccount(flags, true);
    const request = {
      kind: 'clone',
      from,
      method: flags.method,
      parallel: parsePositiveInt('--parallel', flags.parallel, 64),
      ...(flags.compress !== undefined ? { compress: flags.compress } : {}),
      schemas: parseList(flags.schemas),
      force: flags.force === true,
      users: flags.users === true,
      replicate: flags.replicate,
      ...(flags.replicate
        ? {
            replicationUser: flags.replicationUser,
            replicationPassword: password,
            ...(flags.replicationHost
              ? { replicationHost: parseHostPort(flags.replicationHost, '--replication-host') }
              : {}),
            catchupTimeoutMs: parseDuration(flags.catchupTimeout, '--catchup-timeout'),
            // Sent only when given: an agent of an earlier version refuses keys it does not know.
            ...(given('replicateFrom') ? { replicateFrom: flags.replicateFrom } : {}),
          }
        : {}),
      // Through agents the clone is verified unless --no-verify: the agent's summary says "identical" only when it compared.
      verify: flags.verify !== false,
      writable: flags.writable === true,
      throttle: (flags as { throttle?: boolean }).throttle !== false,
      dryRun: flags.dryRun === true,
      ...(flags.method === 'copy'
        ? {
            maxDowntimeMs: maxDowntime(flags.maxDowntime ?? '10m'),
            ...(flags.maxRate !== undefined ? { maxRate: copyRate(flags.maxRate) } : {}),
            lockWaitTimeoutMs: parseDuration(flags.lockWaitTimeout, '--lock-wait-timeout'),
            ...(flags.delta ? { delta: true } : {}),
          }
        : {}),
      ...(flags.method === 'snapshot'
        ? {
            lockWaitTimeoutMs: lockDuration(flags.lockWaitTimeout, '--lock-wait-timeout'),
            maxLockTimeMs: lockDuration(flags.maxLockTime, '--max-lock-time'),
          }
        : {}),
      ...(flags.resumeTimeout !== undefined ? { resumeTimeoutMs: resumeTimeout(flags.resumeTimeout) } : {}),
    };
    const client = new AgentClient(resolveAgent(to));
    try {
      const job = await client.call<JobRecord>('POST', '/v1/jobs', request);
      if (!flags.json)
        process.stderr.write(
          `job ${job.id} on agent://${to}: --method ${flags.method} from agent://${from}\n`,
        );
      return await follow(client, to, job.id, flags.json === true, true);
    } finally {
      await client.close();
    }
  } catch (err) {
    return reportError(err, flags.json === true);
  }
}
