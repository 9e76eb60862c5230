import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { describeOutcome } from '../clone/outcome.js';
import type { Endpoint } from '../mysql/credentials.js';
import { tryLockJoiner } from '../mysql/joiner-lock.js';
import { connect } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import { undoAndCompare } from '../clone/undo.js';
import { EXIT_CODES, ReseedError, errorMessage, isReseedError } from '../errors.js';
import { Journal, journalDir, scanJournals } from '../journal/journal.js';
import type { JournalScan } from '../journal/journal.js';
import { describeEndpoint, resolveEndpoint } from '../mysql/credentials.js';
import type { PublicEndpoint } from '../mysql/credentials.js';
import { reportError } from './common.js';

interface RecoverFlags {
  journal?: string;
  list?: boolean;
  defaultsFile?: string;
  donorDefaultsFile?: string;
  joinerDefaultsFile?: string;
}

export function recoverCommand(): Command {
  return new Command('recover')
    .summary('undo what an interrupted operation changed (after a crash or kill -9)')
    .description(
      `Finds journals of operations that never finished (in ${journalDir()}, RESEED_STATE_DIR to ` +
        'change) and runs their undo steps in reverse order. Passwords come from the same places ' +
        'as for clone (MYSQL_PWD, RESEED_DONOR_PASSWORD, option files); journals never hold them.',
    )
    .option('--journal <file>', 'recover this journal only')
    .option('--list', 'only list unfinished journals and their owed undo steps')
    .option('--defaults-file <file>', 'option file with [client] user/password for both sides')
    .option('--donor-defaults-file <file>', 'option file for the donor only')
    .option('--joiner-defaults-file <file>', 'option file for the joiner only')
    .action(async (flags: RecoverFlags) => {
      try {
        process.exitCode = await recover(flags);
      } catch (err) {
        process.exitCode = reportError(err, false);
      }
    });
}

function endpointUri(e: PublicEndpoint): string {
  return `mysql://${encodeURIComponent(e.user)}@${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}${e.socketPath ? `?socket=${encodeURIComponent(e.socketPath)}` : ''}`;
}

function isEndpoint(e: unknown): e is PublicEndpoint {
  const o = e as Partial<PublicEndpoint> | null | undefined;
  return typeof o?.host === 'string' && typeof o.port === 'number' && typeof o.user === 'string';
}

/**
 * The file named by --journal: a path that does not exist, a directory, or a file whose first
 * line is no journal header is a mistake on the command line (exit 2), not a damaged journal.
 */
function checkJournalFile(path: string): void {
  const refuse = (why: string, cause?: unknown) =>
    new ReseedError('USAGE', `--journal ${path === '' ? '""' : path} ${why}`, {
      cause,
      hints: ['`reseed recover --list` lists the unfinished journals'],
    });
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw refuse('does not exist', err);
    if (code === 'EISDIR') throw refuse('is a directory, not a journal file', err);
    throw refuse(`cannot be read: ${errorMessage(err)}`, err);
  }
  let begin: { t?: unknown; donor?: unknown; joiner?: unknown } | null | undefined;
  try {
    begin = JSON.parse(text.split('\n', 1)[0]!) as typeof begin;
  } catch {
    begin = undefined;
  }
  if (begin?.t !== 'begin' || !isEndpoint(begin.donor) || !isEndpoint(begin.joiner))
    throw refuse('is not a reseed journal (its first line is no journal header)');
}

/**
 * The joiner's reseed lock, held while recover undoes: refused when another operation (a new
 * clone, another recover) is working on it. Unreachable joiner: the undo reports it step by step.
 */
async function lockJoiner(endpoint: Endpoint): Promise<Server | undefined> {
  const s = await connect(endpoint).catch(() => undefined);
  if (!s) return undefined;
  if ((await tryLockJoiner(s)).got) return s;
  await s.close();
  throw new ReseedError(
    'JOURNAL',
    'another reseed operation is working on the joiner (it holds the lock reseed:joiner): let it finish, then run recover again',
  );
}

/** Lists (never writing) or rolls back unfinished journals; one bad journal does not stop the others. */
async function recover(flags: RecoverFlags): Promise<number> {
  const readOnly = flags.list === true;
  let scan: JournalScan;
  if (flags.journal !== undefined) {
    scan = { unfinished: [], damaged: [] };
    checkJournalFile(flags.journal);
    const j = Journal.open(flags.journal, { readOnly: true });
    if (j.finished) {
      process.stdout.write(
        `${j.path}: ${j.header.operation} ${describeEndpoint(j.header.donor)} -> ${describeEndpoint(j.header.joiner)} finished (${j.outcome}): nothing is owed, nothing will be run\n`,
      );
      return 0;
    }
    scan.unfinished.push(readOnly ? j : Journal.open(flags.journal));
  } else {
    scan = scanJournals(undefined, { readOnly });
  }
  let exit = 0;
  const fail = (err: ReseedError) => {
    process.stderr.write(`reseed: ${err.message}\n`);
    for (const h of err.hints) process.stderr.write(`  ${h}\n`);
    exit = Math.max(exit, EXIT_CODES[err.code]);
  };
  for (const d of scan.damaged) fail(d.error);
  if (scan.unfinished.length === 0 && scan.damaged.length === 0) {
    process.stdout.write('nothing to recover\n');
    return 0;
  }
  for (const j of scan.unfinished) {
    const { donor, joiner } = j.header;
    if (!isEndpoint(donor) || !isEndpoint(joiner)) {
      j.close();
      fail(
        new ReseedError('JOURNAL', `${j.path} names no donor or joiner in its header; nothing in it was run`),
      );
      continue;
    }
    process.stdout.write(
      `${j.path}: ${j.header.operation} ${describeEndpoint(donor)} -> ${describeEndpoint(joiner)}\n`,
    );
    if (j.ownerAlive())
      process.stdout.write(
        `  its process ${j.header.pid} is still running: it undoes its own changes if it fails\n`,
      );
    for (const p of j.pending())
      process.stdout.write(
        `  owed: ${p.title} (${p.undo.host ? `on the ${p.undo.target}'s host ${p.undo.host.on.hostname}` : `on the ${p.undo.target}`})\n`,
      );
    for (const t of j.irreversible()) process.stdout.write(`  done, cannot be undone: ${t}\n`);
    if (readOnly) continue;
    if (j.ownerAlive()) {
      j.close();
      fail(
        new ReseedError(
          'JOURNAL',
          `process ${j.header.pid}, which is running that ${j.header.operation}, is still alive: let it finish or stop it (Ctrl-C undoes its changes), then run recover again`,
        ),
      );
      continue;
    }
    // TLS as the interrupted operation used it (the journal keeps the settings, not keys).
    const d = resolveEndpoint(endpointUri(donor), {
      side: 'donor',
      sideDefaultsFile: flags.donorDefaultsFile,
      defaultsFile: flags.defaultsFile,
      tls: donor.tls,
    });
    const jo = resolveEndpoint(endpointUri(joiner), {
      side: 'joiner',
      sideDefaultsFile: flags.joinerDefaultsFile,
      defaultsFile: flags.defaultsFile,
      tls: joiner.tls,
    });
    const steps = j.pending().length;
    let lock: Server | undefined;
    try {
      lock = await lockJoiner(jo.endpoint);
      const { report, differences } = await undoAndCompare(j, { donor: d.endpoint, joiner: jo.endpoint });
      for (const u of report.undone) process.stdout.write(`  undone: ${u}\n`);
      for (const f of report.failed) process.stdout.write(`  FAILED: ${f.title}: ${f.error}\n`);
      for (const line of describeOutcome(report, differences, steps, j)) process.stdout.write(`  ${line}\n`);
      if (report.failed.length)
        fail(
          new ReseedError(
            'JOURNAL',
            `${report.failed.length} undo step(s) failed; fix the cause and run recover again`,
          ),
        );
      else if (differences?.length || j.irreversible().length)
        fail(
          new ReseedError(
            'STATE_DIFFERS',
            `${j.path}: undone, but the servers are not as they were (see above)`,
          ),
        );
    } catch (err) {
      j.close();
      fail(
        isReseedError(err)
          ? err
          : new ReseedError('JOURNAL', `${j.path}: ${errorMessage(err)}`, { cause: err }),
      );
    } finally {
      await lock?.close();
    }
  }
  return exit;
}
