import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { ReseedError, errorMessage } from '../errors.js';
import type { Endpoint } from '../mysql/credentials.js';
import type { ReadLockMode } from '../mysql/flavor/index.js';
import { quiesce } from '../mysql/quiesce.js';
import type { QuiesceCoordinates } from '../mysql/quiesce.js';
import type { ReadLockPolicy } from '../mysql/read-lock.js';
import { logger, parseDuration, reportError, resolveSide } from './common.js';

interface LockFlags {
  server?: string;
  defaultsFile?: string;
  lockMode: ReadLockMode | 'auto';
  lockWaitTimeout: string;
  maxLockTime: string;
  longQuery: string;
  verbose?: boolean;
}

/** The options every quiesce command that takes the lock shares. */
function lockOptions(cmd: Command, maxLockDefault: string): Command {
  return cmd
    .option(
      '--server <uri>',
      'the server to quiesce: mysql://USER@HOST:PORT (password: MYSQL_PWD or an option file)',
    )
    .option('--defaults-file <file>', 'option file with the password ([client] password=...)')
    .addOption(
      new Option(
        '--lock-mode <mode>',
        'auto: BACKUP STAGE BLOCK_COMMIT on MariaDB, FLUSH TABLES WITH READ LOCK elsewhere',
      )
        .choices(['auto', 'backup-stage', 'ftwrl'])
        .default('auto'),
    )
    .option('--lock-wait-timeout <duration>', 'give up (and kill) our lock statement after this', '10s')
    .option('--max-lock-time <duration>', 'the lock is released after this, whatever happens', maxLockDefault)
    .option(
      '--long-query <duration>',
      'wait for queries running longer than this to end before locking',
      '10s',
    )
    .option('-v, --verbose', 'log what happens to stderr');
}

function lockSettings(flags: LockFlags): { endpoint: Endpoint; policy: ReadLockPolicy } {
  // Not a required option for commander: a parent's required option is demanded of its subcommands too.
  if (!flags.server)
    throw new ReseedError('USAGE', '--server is required: the server to quiesce (mysql://USER@HOST:PORT)');
  const policy: ReadLockPolicy = {
    lockWaitTimeoutMs: parseDuration(flags.lockWaitTimeout, '--lock-wait-timeout'),
    maxLockTimeMs: parseDuration(flags.maxLockTime, '--max-lock-time'),
    longQuerySeconds: Math.max(1, Math.round(parseDuration(flags.longQuery, '--long-query') / 1000)),
    retries: 3,
  };
  if (policy.maxLockTimeMs < 100)
    throw new ReseedError('USAGE', `--max-lock-time must be at least 100ms, not "${flags.maxLockTime}"`);
  const endpoint = resolveSide(
    'donor',
    flags.server,
    flags.defaultsFile !== undefined ? { donorDefaultsFile: flags.defaultsFile } : {},
    (m) => process.stderr.write(`reseed: ${m}\n`),
  );
  return { endpoint, policy };
}

export function quiesceCommand(): Command {
  const cmd = lockOptions(
    new Command('quiesce')
      .summary('hold a read lock while a command takes a snapshot, and record the coordinates')
      .description(
        'For snapshots reseed does not take (VMware, cloud disks, SAN, LVM): takes the read lock with ' +
          'the full policy (a window without long queries, a bounded wait, our own blocked statement killed), ' +
          'reads the coordinates under it, runs COMMAND with them in its environment (RESEED_GTID, ' +
          'RESEED_BINLOG_FILE, RESEED_BINLOG_POS, RESEED_COORDINATES as JSON), and releases the lock when ' +
          'COMMAND ends, or at --max-lock-time, whichever comes first (COMMAND is then stopped and the ' +
          "run fails: a snapshot finished after the lock is not consistent). COMMAND's output goes to " +
          'stderr; stdout carries one JSON object: the coordinates and how long the lock was held. ' +
          'For tools that call a pre-freeze and a post-thaw script: `quiesce freeze` and `quiesce thaw`.',
      )
      .argument('<command...>', 'the command that takes the snapshot (after --)'),
    '30s',
  )
    .option('--coordinates-file <file>', 'also write the JSON to this file (for seeding a replica later)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        "  reseed quiesce --server mysql://backup@db1:3306 -- sh -c 'lvcreate -s -n snap -L 5G vg/mysql'\n" +
        '  reseed quiesce --server mysql://root@127.0.0.1:3306 --max-lock-time 10s --coordinates-file /backup/coords.json -- /usr/local/bin/take-snapshot\n' +
        '  reseed quiesce freeze --server mysql://root@db1   # pre-freeze script\n' +
        '  reseed quiesce thaw --server mysql://root@db1     # post-thaw script\n' +
        '\nExit codes: 0 done; 5 the lock could not be had or reached --max-lock-time; 10 COMMAND failed; docs/exit-codes.md.',
    )
    .action(async (command: string[], flags: LockFlags & { coordinatesFile?: string }) => {
      process.exitCode = await runQuiesce(command, flags).catch((err: unknown) => reportError(err, false));
    });
  // Options after `freeze` or `thaw` are theirs (both have --server too).
  cmd.enablePositionalOptions();
  cmd.addCommand(freezeCommand());
  cmd.addCommand(thawCommand());
  cmd.addCommand(holdCommand(), { hidden: true });
  return cmd;
}

async function runQuiesce(
  command: string[],
  flags: LockFlags & { coordinatesFile?: string },
): Promise<number> {
  if (!command.length)
    throw new ReseedError(
      'USAGE',
      'no command to run under the lock: reseed quiesce --server URI -- COMMAND...',
    );
  const { endpoint, policy } = lockSettings(flags);
  const log = logger(flags.verbose);
  const interrupt = new AbortController();
  const onSignal = (name: NodeJS.Signals) =>
    interrupt.abort(new ReseedError('ABORTED', `interrupted by ${name}`));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    const q = await quiesce(endpoint, { mode: flags.lockMode, policy, log, signal: interrupt.signal });
    const outcome = await runUnderLock(command, q.coordinates, policy.maxLockTimeMs, interrupt.signal).catch(
      async (err: unknown) => {
        await q.release();
        throw err;
      },
    );
    const heldMs = await q.release();
    const result = {
      ...q.coordinates,
      lockHeldMs: heldMs,
      command: { exitCode: outcome.code, signal: outcome.signal },
    };
    if (interrupt.signal.aborted)
      throw new ReseedError(
        'ABORTED',
        `interrupted: COMMAND was stopped and the lock released after ${heldMs} ms`,
      );
    if (outcome.overran)
      throw new ReseedError(
        'DONOR_LOCK_TOO_LONG',
        `COMMAND was still running at --max-lock-time (${policy.maxLockTimeMs} ms): it was stopped and the lock released; a snapshot it finished after that is not consistent`,
        { hints: ['raise --max-lock-time, or make the snapshot faster'] },
      );
    if (outcome.code !== 0)
      throw new ReseedError(
        'EXEC_FAILED',
        `COMMAND ${outcome.signal ? `was killed by ${outcome.signal}` : `exited ${outcome.code}`}; the lock was held ${heldMs} ms and is released`,
        { hints: ['no coordinates are recorded for a snapshot that failed'] },
      );
    const json = JSON.stringify(result);
    if (flags.coordinatesFile) writeFileSync(flags.coordinatesFile, json + '\n', { mode: 0o644 });
    process.stdout.write(json + '\n');
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}

/** COMMAND in its own process group (stdout to our stderr), stopped at the bound or on interrupt. */
function runUnderLock(
  command: string[],
  c: QuiesceCoordinates,
  maxLockTimeMs: number,
  signal: AbortSignal,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; overran: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      stdio: ['inherit', process.stderr, 'inherit'],
      detached: true,
      env: {
        ...process.env,
        RESEED_GTID: c.gtid,
        RESEED_BINLOG_FILE: c.binlog?.file ?? '',
        RESEED_BINLOG_POS: String(c.binlog?.position ?? ''),
        RESEED_COORDINATES: JSON.stringify(c),
      },
    });
    let overran = false;
    const stop = () => {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // gone
      }
      setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // gone
        }
      }, 2000).unref();
    };
    // A little before the lock's own watchdog, so that COMMAND never runs unlocked unnoticed.
    const bound = setTimeout(
      () => {
        overran = true;
        stop();
      },
      Math.max(50, maxLockTimeMs - 50),
    );
    signal.addEventListener('abort', stop, { once: true });
    child.on('error', (err) => {
      clearTimeout(bound);
      reject(new ReseedError('EXEC_FAILED', `COMMAND could not be started: ${errorMessage(err)}`));
    });
    child.on('exit', (code, sig) => {
      clearTimeout(bound);
      signal.removeEventListener('abort', stop);
      resolvePromise({ code, signal: sig, overran });
    });
  });
}

// freeze / thaw: a holder process keeps the lock between two scripts.

interface HolderState {
  pid: number;
  server: string;
  lockStatus: 'waiting' | 'acquired' | 'released' | 'failed';
  startedAt: string;
  maxLockTimeMs: number;
  coordinates?: QuiesceCoordinates | undefined;
  heldMs?: number | undefined;
  releasedBy?: 'thaw' | 'max-lock-time' | undefined;
  error?: string | undefined;
}

function stateFile(flags: { state?: string; server: string }): string {
  if (flags.state) return resolve(flags.state);
  const key = flags.server.replace(/^mysql:\/\/([^@/]*@)?/, '').replace(/[^A-Za-z0-9.-]+/g, '_');
  return join(process.env.RESEED_STATE_DIR ?? join(homedir(), '.reseed', 'state'), 'quiesce', `${key}.json`);
}

function readState(file: string): HolderState | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as HolderState;
  } catch {
    return undefined;
  }
}

function writeState(file: string, s: HolderState): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(`${file}.tmp`, JSON.stringify(s), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function freezeCommand(): Command {
  return lockOptions(
    new Command('freeze').description(
      "A pre-freeze script: a holder process takes the read lock (the full policy) and keeps it after this command has returned, until `quiesce thaw` or --max-lock-time, whichever comes first. Prints the coordinates as JSON once the lock is held. --state names the holder's state file (default: one per server under ~/.reseed/state/quiesce).",
    ),
    '60s',
  )
    .option('--state <file>', "the holder's state file")
    .action(async (flags: LockFlags & { state?: string }) => {
      process.exitCode = await freeze(flags).catch((err: unknown) => reportError(err, false));
    });
}

async function freeze(flags: LockFlags & { state?: string }): Promise<number> {
  const { endpoint, policy } = lockSettings(flags);
  const file = stateFile({ ...flags, server: flags.server ?? '' });
  const old = readState(file);
  if (old && old.lockStatus !== 'released' && old.lockStatus !== 'failed' && alive(old.pid))
    throw new ReseedError(
      'USAGE',
      `${flags.server} is frozen already by holder ${old.pid} (${file}): run quiesce thaw first`,
    );
  rmSync(file, { force: true });
  // The holder gets the credentials on its stdin, never on its command line.
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL('../../bin/reseed', import.meta.url)), 'quiesce', 'hold', '--state', file],
    {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    },
  );
  child.stdin!.end(JSON.stringify({ endpoint, policy, mode: flags.lockMode, server: flags.server }));
  child.unref();
  const deadline = Date.now() + policy.lockWaitTimeoutMs * (policy.retries + 1) + 15_000;
  for (;;) {
    const s = readState(file);
    if (s?.lockStatus === 'acquired') {
      process.stdout.write(
        JSON.stringify({ ...s.coordinates, holder: s.pid, maxLockTimeMs: s.maxLockTimeMs, state: file }) +
          '\n',
      );
      return 0;
    }
    if (s?.lockStatus === 'failed') {
      rmSync(file, { force: true });
      throw new ReseedError('DONOR_LOCK_TIMEOUT', `the lock could not be taken: ${s.error ?? 'unknown'}`);
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
      rmSync(file, { force: true });
      throw new ReseedError(
        'DONOR_LOCK_TIMEOUT',
        'the holder process ended or did not take the lock in time',
      );
    }
    await sleep(50);
  }
}

function holdCommand(): Command {
  return new Command('hold')
    .description('internal: the holder process of quiesce freeze (credentials on stdin)')
    .requiredOption('--state <file>')
    .action(async (flags: { state: string }) => {
      process.exitCode = await hold(flags.state).catch(() => 1);
    });
}

async function hold(file: string): Promise<number> {
  let input = '';
  for await (const chunk of process.stdin) input += String(chunk);
  const req = JSON.parse(input) as {
    endpoint: Endpoint;
    policy: ReadLockPolicy;
    mode: ReadLockMode | 'auto';
    server: string;
  };
  const state: HolderState = {
    pid: process.pid,
    server: req.server,
    lockStatus: 'waiting',
    startedAt: new Date().toISOString(),
    maxLockTimeMs: req.policy.maxLockTimeMs,
  };
  writeState(file, state);
  let q;
  try {
    q = await quiesce(req.endpoint, { mode: req.mode, policy: req.policy, log: logger(false) });
  } catch (err) {
    writeState(file, { ...state, lockStatus: 'failed', error: errorMessage(err) });
    return 5;
  }
  writeState(file, { ...state, lockStatus: 'acquired', coordinates: q.coordinates });
  // Released by thaw (a signal) or at the bound, whichever comes first.
  const releasedBy = await new Promise<'thaw' | 'max-lock-time'>((done) => {
    const timer = setTimeout(() => done('max-lock-time'), Math.max(0, req.policy.maxLockTimeMs - 50));
    for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const)
      process.once(s, () => {
        clearTimeout(timer);
        done('thaw');
      });
  });
  const heldMs = await q.release();
  writeState(file, { ...state, lockStatus: 'released', coordinates: q.coordinates, heldMs, releasedBy });
  return 0;
}

function thawCommand(): Command {
  return new Command('thaw')
    .description(
      'A post-thaw script: ends the lock `quiesce freeze` holds (the same --server, or --state). Exits 5 if the lock had already been released at --max-lock-time: a snapshot finished after that is not consistent.',
    )
    .option('--server <uri>', 'the server given to quiesce freeze')
    .option('--state <file>', "the holder's state file")
    .action(async (flags: { server?: string; state?: string }) => {
      process.exitCode = await thaw(flags).catch((err: unknown) => reportError(err, false));
    });
}

async function thaw(flags: { server?: string; state?: string }): Promise<number> {
  if (!flags.server && !flags.state)
    throw new ReseedError('USAGE', 'quiesce thaw needs --server (as given to freeze) or --state');
  const file = stateFile({ server: flags.server ?? '', ...(flags.state ? { state: flags.state } : {}) });
  let s = readState(file);
  if (!s) throw new ReseedError('NOT_FOUND', `nothing is frozen (no holder state in ${file})`);
  if (s.lockStatus === 'acquired' && alive(s.pid)) {
    process.kill(s.pid, 'SIGTERM');
    for (let i = 0; i < 200 && s?.lockStatus === 'acquired'; i++) {
      await sleep(50);
      s = readState(file);
    }
  }
  rmSync(file, { force: true });
  if (s?.lockStatus === 'released' && s.releasedBy === 'thaw') {
    process.stdout.write(JSON.stringify({ ...s.coordinates, lockHeldMs: s.heldMs }) + '\n');
    return 0;
  }
  if (s?.lockStatus === 'released')
    throw new ReseedError(
      'DONOR_LOCK_TOO_LONG',
      `the lock had been released at --max-lock-time (${s.maxLockTimeMs} ms) before thaw: a snapshot finished after that is not consistent`,
    );
  throw new ReseedError(
    'DONOR_LOCK_TOO_LONG',
    `the holder ${s?.pid ?? '?'} is gone without releasing (killed?): its lock ended with its session; the snapshot's consistency is unknown`,
  );
}
