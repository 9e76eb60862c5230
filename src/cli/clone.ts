import { Command, Option } from 'commander';
import { clone } from '../clone/clone.js';
import type { CloneSummary } from '../clone/clone.js';
import { ReseedError } from '../errors.js';
import { DEFAULT_READ_LOCK_POLICY } from '../mysql/read-lock.js';
import type { SnapshotLockMode } from '../mysql/snapshot.js';
import { fanOut } from '../progress.js';
import { formatCoordinates } from '../replication/coordinates.js';
import { METHODS } from '../methods/registry.js';
import {
  abortOnSignals,
  fileName,
  logger,
  parseDuration,
  parseHostPort,
  parseList,
  parsePositiveInt,
  replicationPassword,
  reportError,
  resolveSides,
} from './common.js';
import { formatBytes, formatMs, jsonSink } from './output.js';
import {
  addThrottleOptions,
  checkThrottleConflicts,
  describeThrottle,
  throttleOptions,
} from './throttle-flags.js';
import type { ThrottleFlags } from './throttle-flags.js';
import { terminalSink } from './progress-screen.js';
import { isAgentRef, runAgentClone } from './clone-agents.js';

export interface CloneFlags extends ThrottleFlags {
  from: string;
  to: string;
  method: string;
  schemas?: string;
  parallel: string;
  chunkRows: string;
  deferIndexes: boolean;
  loadMode: 'auto' | 'load-data';
  lockMode: SnapshotLockMode;
  lockWaitTimeout: string;
  maxLockTime: string;
  longQuery: string;
  users?: boolean;
  force?: boolean;
  replicate: boolean;
  gtid: boolean;
  replicateFrom: 'donor' | 'source';
  replicationUser?: string;
  replicationHost?: string;
  replicationSsl?: boolean;
  replicationSslCa?: string;
  replicationDefaultsFile?: string;
  catchupTimeout: string;
  writable?: boolean;
  verify?: boolean;
  dryRun?: boolean;
  json?: boolean;
  verbose?: boolean;
  compress?: string;
  resumeTimeout?: string;
  defaultsFile?: string;
  donorDefaultsFile?: string;
  joinerDefaultsFile?: string;
}

export function addConnectionOptions(cmd: Command, describe: { from?: string; to?: string } = {}): Command {
  return cmd
    .requiredOption(
      '--from <uri>',
      describe.from ?? 'the donor: mysql://user@host:port, or agent://NAME (through agents)',
    )
    .requiredOption(
      '--to <uri>',
      describe.to ??
        "the joiner: mysql://user@host:port (its user schemas are replaced), or agent://NAME (the joiner's agent runs the clone)",
    )
    .option(
      '--defaults-file <file>',
      'option file with [client] user/password for both sides (default ~/.my.cnf)',
    )
    .option('--donor-defaults-file <file>', 'option file for the donor only')
    .option('--joiner-defaults-file <file>', 'option file for the joiner only')
    .addOption(
      new Option(
        '--ssl-mode <mode>',
        'TLS to both servers (a URI ?ssl-mode=... wins): required encrypts; verify-ca and verify-identity also check the certificate',
      ).choices(['disabled', 'required', 'verify-ca', 'verify-identity']),
    )
    .option(
      '--ssl-ca <file>',
      "CA that signed the servers' certificates (alone it means --ssl-mode verify-ca)",
    )
    .option('--ssl-cert <file>', 'client certificate, with --ssl-key, for accounts that REQUIRE X509')
    .option('--ssl-key <file>', "the client certificate's key");
}

export function cloneCommand(): Command {
  const cmd = new Command('clone')
    .summary('make the joiner a verified replica of the donor')
    .description(
      "Copies the donor's user schemas to the joiner from one consistent snapshot, records the " +
        "donor's exact coordinates (GTID and binlog position) at that snapshot, points the joiner's " +
        'replication at them, starts it, waits until it has caught up, and leaves it read-only. ' +
        'Every change is journaled and undone if anything fails or you press Ctrl-C.',
    );
  addConnectionOptions(cmd)
    .addOption(
      new Option(
        '--method <name>',
        "how data moves: logical (SQL; any versions), mariabackup (hot physical copy), copy (the datadir's files; STOPS the donor's mysqld for a second pass of what changed), snapshot (a btrfs or ZFS snapshot taken under a read lock of milliseconds, sent and received; both datadirs on the same kind of filesystem); the physical methods need agents on both hosts and the same MariaDB series, and replace the whole joiner datadir",
      )
        .choices([...METHODS.keys(), 'mariabackup', 'copy', 'snapshot'])
        .default('logical'),
    )
    .addOption(
      new Option(
        '--compress <codec>',
        'through agents, --method mariabackup, copy or snapshot: compress the data channel',
      ).choices(['none', 'lz4', 'zstd']),
    )
    .option(
      '--resume-timeout <duration>',
      'through agents: how long the data channel may be cut (nothing arriving) before the clone fails and is undone; copy and snapshot sends resume where they stopped within it, a mariabackup stream cannot resume and waits at most 30s (1s to 24h, default 60s; a bare number is seconds)',
    )
    .option(
      '--schemas <list>',
      "comma-separated schemas to copy (default: all but the system schemas); the joiner's other schemas are kept, and its replication is limited to these (replicate_wild_do_table)",
    )
    .option('--parallel <n>', 'copy workers (donor and joiner sessions)', '4')
    .option('--chunk-rows <n>', 'rows per chunk when a table is split along its key', '100000')
    .option('--no-defer-indexes', 'build secondary indexes during the load instead of after each table')
    .addOption(
      new Option(
        '--load-mode <mode>',
        'how rows enter the joiner: auto = MariaDB bulk prepared INSERTs when the joiner has them, else LOAD DATA LOCAL',
      )
        .choices(['auto', 'load-data'])
        .default('auto'),
    )
    .addOption(
      new Option(
        '--lock-mode <mode>',
        'how the snapshot sessions are lined up: auto tries without any lock first',
      )
        .choices(['auto', 'none', 'backup-stage', 'ftwrl'])
        .default('auto'),
    )
    .option('--lock-wait-timeout <duration>', 'give up (and kill) our read-lock statement after this', '10s')
    .option(
      '--max-downtime <duration>',
      "--method copy: the donor's mysqld is started again after this long stopped, and the clone fails (1s to 24h)",
      '10m',
    )
    .option(
      '--delta',
      "--method copy, for slow links: the joiner's datadir is an older copy of the donor's (a replica to re-seed); blocks equal there are copied from it, only the others are sent",
    )
    .option('--max-lock-time <duration>', 'a watchdog releases the read lock after this', '5s')
    .option(
      '--long-query <duration>',
      'wait for queries running longer than this to end before locking',
      '10s',
    )
    .option('--users', 'also copy accounts and their grants')
    .option(
      '--force',
      "replace the joiner's data: the schemas being copied and, without --schemas, every other schema the joiner holds (moved aside, put back if the clone fails, dropped once it succeeds; the plan names them first); also deletes a joiner binary log that holds GTIDs of its own",
    )
    .option(
      '--dry-run',
      'print the plan (what would be copied, replaced, dropped and kept) and change nothing',
    )
    .option('--no-replicate', 'copy only: do not configure replication')
    .option('--no-gtid', 'replicate by binlog file/position instead of GTID')
    .addOption(
      new Option('--replicate-from <whom>', 'when the donor is a replica: follow the donor or its source')
        .choices(['donor', 'source'])
        .default('donor'),
    )
    .option(
      '--replication-user <name>',
      'account the joiner replicates with (password: RESEED_REPLICATION_PASSWORD)',
    )
    .option('--replication-host <host[:port]>', 'where the joiner reaches the donor, if not the --from host')
    .option('--replication-defaults-file <file>', 'option file holding the replication password')
    .option('--replication-ssl', "encrypt the joiner's replication link (MASTER_SSL=1)")
    .option(
      '--replication-ssl-ca <file>',
      "CA on the joiner's host that checks the source's certificate (implies --replication-ssl)",
    )
    .option('--catchup-timeout <duration>', 'how long to wait for the replica to catch up', '10m')
    .option('--writable', 'leave the joiner writable (default: read_only=ON)')
    .option(
      '--verify',
      'compare every table and object afterwards (as `reseed verify`); through agents the default',
    )
    .option('--no-verify', 'through agents: do not compare afterwards')
    .option('--json', 'one JSON event per line on stdout, then a summary object')
    .option('-v, --verbose', 'log what happens to stderr')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  RESEED_REPLICATION_PASSWORD=secret reseed clone --from mysql://root@db1 --to mysql://root@db2 --replication-user repl\n' +
        '  reseed clone --from mysql://root@db1 --to mysql://root@db2 --schemas shop,crm --no-replicate --verify\n' +
        '  RESEED_REPLICATION_PASSWORD=secret reseed clone --from agent://db1 --to agent://db2 --method mariabackup --replication-user repl\n' +
        '  RESEED_REPLICATION_PASSWORD=secret reseed clone --from agent://replica2 --to agent://db3 --method copy --max-downtime 2m --replication-user repl\n' +
        "\nThrough agents (--from agent://NAME --to agent://NAME; docs/agents.md) the clone is a job of the joiner's agent, which\n" +
        "uses the agents' own mysql accounts; it is verified unless --no-verify. Ctrl-C cancels the job (undone by the agent).\n" +
        '\nPasswords: MYSQL_PWD, RESEED_DONOR_PASSWORD / RESEED_JOINER_PASSWORD, option files; see docs/credentials.md.\n' +
        'Exit codes: docs/exit-codes.md.',
    )
    .action(async (flags: CloneFlags, command: Command) => {
      process.exitCode = await runClone(flags, command);
    });
  addThrottleOptions(cmd);
  return cmd;
}

/** Options that mean nothing without replication, by their flag. */
const REPLICATION_FLAGS: [keyof CloneFlags, string][] = [
  ['replicationUser', '--replication-user'],
  ['replicationHost', '--replication-host'],
  ['replicationDefaultsFile', '--replication-defaults-file'],
  ['replicationSsl', '--replication-ssl'],
  ['replicationSslCa', '--replication-ssl-ca'],
  ['replicateFrom', '--replicate-from'],
  ['gtid', '--no-gtid'],
  ['catchupTimeout', '--catchup-timeout'],
];

/** Flags that contradict each other are refused, never silently ignored. */
function checkFlagConflicts(flags: CloneFlags, command: Command): void {
  const given = (k: keyof CloneFlags) => command.getOptionValueSource(k) === 'cli';
  checkThrottleConflicts(flags, command);
  for (const [k, flag] of [
    ['maxDowntime', '--max-downtime'],
    ['delta', '--delta'],
  ] as const)
    if (command.getOptionValueSource(k) === 'cli')
      throw new ReseedError('USAGE', `${flag} applies to --method copy, through agents`);
  if (!flags.replicate) {
    const clash = REPLICATION_FLAGS.filter(([k]) => given(k)).map(([, f]) => f);
    if (clash.length)
      throw new ReseedError(
        'USAGE',
        `--no-replicate contradicts ${clash.join(', ')}: drop ${clash.length > 1 ? 'them' : 'it'}, or drop --no-replicate`,
      );
  }
}

async function runClone(flags: CloneFlags, command: Command): Promise<number> {
  if (isAgentRef(flags.from) || isAgentRef(flags.to)) return runAgentClone(flags, command);
  if (
    flags.method === 'mariabackup' ||
    flags.method === 'copy' ||
    flags.compress !== undefined ||
    flags.resumeTimeout !== undefined
  )
    return reportError(
      new ReseedError(
        'USAGE',
        flags.method !== 'logical'
          ? `--method ${flags.method} needs a reseed agent on each host: --from agent://DONOR --to agent://JOINER (docs/agents.md)`
          : '--compress and --resume-timeout apply to clones through agents only (--from agent://... --to agent://...)',
      ),
      flags.json === true,
    );
  const json = flags.json === true;
  const log = logger(flags.verbose);
  // Log lines (--verbose) go to stderr too: the live area would draw over them.
  const sink = json ? jsonSink() : terminalSink(process.stderr, { live: log.level === 'silent' });
  const progress = fanOut(sink);
  const warn = (message: string) => progress.emit({ type: 'warning', message });
  const { signal, dispose } = abortOnSignals(() => sink.stop());
  try {
    checkFlagConflicts(flags, command);
    const { donor, joiner } = resolveSides(flags.from, flags.to, flags, warn);
    const replicationSslCa =
      flags.replicationSslCa === undefined
        ? undefined
        : fileName(flags.replicationSslCa, '--replication-ssl-ca');
    const summary = await clone({
      donor,
      joiner,
      log,
      progress,
      signal,
      options: {
        method: flags.method,
        schemas: parseList(flags.schemas),
        parallel: parsePositiveInt('--parallel', flags.parallel, 64),
        chunkRows: parsePositiveInt('--chunk-rows', flags.chunkRows),
        deferIndexes: flags.deferIndexes,
        loadMode: flags.loadMode,
        lockMode: flags.lockMode,
        readLock: {
          ...DEFAULT_READ_LOCK_POLICY,
          lockWaitTimeoutMs: parseDuration(flags.lockWaitTimeout, '--lock-wait-timeout'),
          maxLockTimeMs: parseDuration(flags.maxLockTime, '--max-lock-time'),
          longQuerySeconds: Math.max(1, Math.round(parseDuration(flags.longQuery, '--long-query') / 1000)),
        },
        users: flags.users === true,
        force: flags.force === true,
        replicate: flags.replicate,
        gtid: flags.gtid,
        replicateFrom: flags.replicateFrom,
        replicationUser: flags.replicationUser,
        replicationPassword: replicationPassword(flags.replicationDefaultsFile),
        replicationHost:
          flags.replicationHost === undefined
            ? undefined
            : parseHostPort(flags.replicationHost, '--replication-host'),
        replicationSsl:
          flags.replicationSsl || replicationSslCa !== undefined ? { ca: replicationSslCa } : undefined,
        catchupTimeoutMs: parseDuration(flags.catchupTimeout, '--catchup-timeout'),
        writable: flags.writable === true,
        verify: flags.verify === true,
        dryRun: flags.dryRun === true,
        throttle: throttleOptions(flags, donor),
      },
    });
    sink.stop(!summary.dryRun);
    if (json)
      process.stdout.write(
        JSON.stringify({ at: new Date().toISOString(), type: 'summary', ...summary }) + '\n',
      );
    else if (summary.dryRun) process.stderr.write('dry run: nothing was changed\n');
    else process.stdout.write(renderSummary(summary));
    return 0;
  } catch (err) {
    sink.stop();
    return reportError(
      err instanceof ReseedError || err instanceof Error ? err : new Error(String(err)),
      json,
    );
  } finally {
    dispose();
  }
}

export function renderSummary(s: CloneSummary): string {
  const secs = Math.max(s.durationMs / 1000, 0.001);
  const lines = [
    '',
    `Clone complete: ${s.donor} -> ${s.joiner} (${s.method})`,
    `  duration      ${formatMs(s.durationMs)}`,
    `  copied        ${s.tables} tables, ${s.rows} rows, ${formatBytes(s.bytes)} (${formatBytes(s.bytes / secs)}/s overall)${s.loadedWith ? `, loaded with ${s.loadedWith.replace('bulk-insert', 'bulk INSERT').replace('load-data', 'LOAD DATA LOCAL')}` : ''}`,
    `  objects       ${s.objects} views/routines/triggers/events${s.users ? `, ${s.users} accounts` : ''}`,
    `  donor lock    ${s.lockMode === 'none' ? 'none (snapshot lined up without a lock)' : `${s.lockMode}, held ${s.lockHeldMs} ms`}`,
    `  coordinates   ${s.coordinates ? formatCoordinates(s.coordinates) : '-'}`,
    `  replication   ${s.replication.state === 'running' ? `running from ${s.replication.from} (${s.replication.mode}), caught up in ${formatMs(s.replication.catchUpMs ?? 0)}${s.replication.filters ? `, limited to ${s.replication.filters.join(',')}` : ''}` : 'not configured (--no-replicate)'}`,
    `  joiner        ${s.readOnly ? 'read-only' : 'writable'}`,
  ];
  if (s.replication.removed.length)
    lines.push(
      `  replaced      the joiner's previous replication ${s.replication.removed.join('; ')}${s.replication.state === 'running' ? '' : ' (removed)'}`,
    );
  if (s.throttle) lines.push(`  throttle      ${describeThrottle(s.throttle)}`);
  if (s.dropped.length) lines.push(`  dropped       ${s.dropped.join(', ')} (not on the donor; --force)`);
  if (s.kept.length) lines.push(`  kept          ${s.kept.join(', ')}`);
  if (s.verify)
    lines.push(
      `  verify        ${s.verify.ok ? 'identical' : 'DIFFERENT'}: ${s.verify.tables} tables, ${s.verify.chunks} chunks, ${s.verify.rows} rows, ${s.verify.objects} objects at ${s.verify.position}`,
    );
  lines.push(
    `  phases        ${Object.entries(s.phases)
      .map(([k, v]) => `${k} ${formatMs(v)}`)
      .join(', ')}`,
  );
  if (s.manifest) lines.push(`  manifest      ${s.manifest} (reseed status --to ...)`);
  for (const w of s.warnings) lines.push(`  warning: ${w}`);
  return lines.join('\n') + '\n';
}
