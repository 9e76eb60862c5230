import { Command, Option } from 'commander';
import { ReseedError } from '../errors.js';
import { DEFAULT_READ_LOCK_POLICY } from '../mysql/read-lock.js';
import type { SnapshotLockMode } from '../mysql/snapshot.js';
import { verify } from '../verify/verify.js';
import type { VerifyReport } from '../verify/verify.js';
import { addConnectionOptions } from './clone.js';
import {
  abortOnSignals,
  logger,
  parseDuration,
  parseList,
  parsePositiveInt,
  reportError,
  resolveSides,
} from './common.js';
import { jsonSink } from './output.js';
import {
  addThrottleOptions,
  checkThrottleConflicts,
  describeThrottle,
  throttleOptions,
} from './throttle-flags.js';
import type { ThrottleFlags } from './throttle-flags.js';
import { terminalSink } from './progress-screen.js';

interface VerifyFlags extends ThrottleFlags {
  from: string;
  to: string;
  schemas?: string;
  parallel: string;
  chunkRows: string;
  lockMode: SnapshotLockMode;
  catchupTimeout: string;
  replicaConnection?: string;
  applyHeld?: boolean;
  json?: boolean;
  verbose?: boolean;
  defaultsFile?: string;
  donorDefaultsFile?: string;
  joinerDefaultsFile?: string;
}

export function verifyCommand(): Command {
  const cmd = new Command('verify')
    .summary('compare a replica with its donor, table by table and chunk by chunk')
    .description(
      'Checksums every table in chunks on both servers at one GTID position: when the joiner is a ' +
        "GTID replica of the donor, its replication is paused, the donor's snapshot opened, the " +
        'replica let run exactly up to it, and its threads given back as found (journaled: `reseed ' +
        'recover` after a crash), but for a thread that stops on an error meanwhile, which is left ' +
        'stopped with its error. A stopped SQL thread is refused unless --apply-held. Any other ' +
        'joiner is compared live, its replication untouched. Also compares table, view, routine, ' +
        'trigger and event definitions. Exits 8 when anything differs.',
    );
  addConnectionOptions(cmd, {
    from: 'the donor: mysql://user@host:port',
    to: 'the replica to compare: mysql://user@host:port',
  })
    .option('--schemas <list>', 'comma-separated schemas (default: all but the system schemas)')
    .option('--parallel <n>', 'checksum sessions on each side', '4')
    .option(
      '--chunk-rows <n>',
      'rows per checksummed chunk, at most (fewer for wide rows: a chunk hashed in key order is kept near 16 MiB, which the server holds while it hashes it)',
      '100000',
    )
    .addOption(
      new Option('--lock-mode <mode>', 'how the donor snapshot is taken')
        .choices(['auto', 'none', 'backup-stage', 'ftwrl'])
        .default('auto'),
    )
    .option(
      '--catchup-timeout <duration>',
      "how long the replica may take to reach the donor's position",
      '10m',
    )
    .option(
      '--replica-connection <name>',
      "the joiner's MariaDB multi-source connection that replicates from the donor (default: the default one)",
    )
    .option(
      '--apply-held',
      "let verify run a stopped SQL thread up to the donor's snapshot (it applies the transactions the replica holds back), then stop it again",
    )
    .option('--json', 'print the report as JSON')
    .option('-v, --verbose', 'log what happens to stderr')
    .action(async (flags: VerifyFlags, command: Command) => {
      process.exitCode = await runVerify(flags, command);
    });
  addThrottleOptions(cmd);
  return cmd;
}

async function runVerify(flags: VerifyFlags, command: Command): Promise<number> {
  const json = flags.json === true;
  const log = logger(flags.verbose);
  // Log lines (--verbose) go to stderr too: the live area would draw over them.
  const progress = json ? jsonSink() : terminalSink(process.stderr, { live: log.level === 'silent' });
  const { signal, dispose } = abortOnSignals(() => progress.stop());
  try {
    checkThrottleConflicts(flags, command);
    const { donor, joiner } = resolveSides(flags.from, flags.to, flags, (message) =>
      progress.emit({ type: 'warning', message }),
    );
    const report = await verify({
      donor,
      joiner,
      schemas: parseList(flags.schemas),
      parallel: parsePositiveInt('--parallel', flags.parallel, 64),
      chunkRows: parsePositiveInt('--chunk-rows', flags.chunkRows),
      lockMode: flags.lockMode,
      readLock: DEFAULT_READ_LOCK_POLICY,
      catchupTimeoutMs: parseDuration(flags.catchupTimeout),
      replicaConnection: flags.replicaConnection,
      applyHeld: flags.applyHeld === true,
      throttle: throttleOptions(flags, donor),
      log,
      progress,
      signal,
    });
    progress.stop(true);
    if (json) process.stdout.write(JSON.stringify({ type: 'verify', ...report }) + '\n');
    else process.stdout.write(renderReport(report));
    if (!report.ok) {
      return reportError(
        new ReseedError('CHECKSUM_MISMATCH', `${report.differences.length} difference(s) found`),
        false,
      );
    }
    return 0;
  } catch (err) {
    progress.stop();
    return reportError(err, json);
  } finally {
    dispose();
  }
}

export function renderReport(r: VerifyReport): string {
  const lines = [
    `${r.ok ? 'identical' : 'DIFFERENT'}: ${r.tables} tables (${r.chunks} chunks, ${r.rows} rows) and ${r.objects} objects compared at ${r.position || '(no GTID)'}`,
    `  method: ${r.method}`,
  ];
  if (r.why) lines.push(`  why: ${r.why}`);
  lines.push(`  replication: ${r.replication}`);
  if (r.throttle && (r.throttle.slowedMs > 0 || r.throttle.maxRate !== undefined || !r.throttle.adaptive))
    lines.push(`  throttle: ${describeThrottle(r.throttle)}`);
  for (const d of r.differences) lines.push(`  ${d.what}: ${d.detail}`);
  return lines.join('\n') + '\n';
}
