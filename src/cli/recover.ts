import { Command } from 'commander';
import { rollbackJournal } from '../clone/clone.js';
import { ReseedError } from '../errors.js';
import { Journal, journalDir, processAlive, unfinishedJournals } from '../journal/journal.js';
import { describeEndpoint } from '../mysql/credentials.js';
import { resolveEndpoint } from '../mysql/credentials.js';
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
        const journals = flags.journal ? [Journal.open(flags.journal)] : unfinishedJournals();
        if (journals.length === 0) {
          process.stdout.write('nothing to recover\n');
          return;
        }
        for (const j of journals) {
          const { donor, joiner } = j.header;
          process.stdout.write(
            `${j.path}: ${j.header.operation} ${describeEndpoint(donor)} -> ${describeEndpoint(joiner)}\n`,
          );
          for (const p of j.pending()) process.stdout.write(`  owed: ${p.title} (on the ${p.undo.target})\n`);
          if (flags.list) continue;
          if (processAlive(j.header.pid) && j.header.pid !== process.pid) {
            throw new ReseedError(
              'JOURNAL',
              `process ${j.header.pid} that writes ${j.path} is still running; stop it first`,
            );
          }
          const uri = (e: typeof donor) =>
            `mysql://${encodeURIComponent(e.user)}@${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}${e.socketPath ? `?socket=${encodeURIComponent(e.socketPath)}` : ''}`;
          // TLS as the interrupted operation used it (the journal keeps the settings, not keys).
          const d = resolveEndpoint(uri(donor), {
            side: 'donor',
            sideDefaultsFile: flags.donorDefaultsFile,
            defaultsFile: flags.defaultsFile,
            tls: donor.tls,
          });
          const jo = resolveEndpoint(uri(joiner), {
            side: 'joiner',
            sideDefaultsFile: flags.joinerDefaultsFile,
            defaultsFile: flags.defaultsFile,
            tls: joiner.tls,
          });
          const report = await rollbackJournal(j, { donor: d.endpoint, joiner: jo.endpoint });
          for (const u of report.undone) process.stdout.write(`  undone: ${u}\n`);
          for (const f of report.failed) process.stdout.write(`  FAILED: ${f.title}: ${f.error}\n`);
          if (report.failed.length)
            throw new ReseedError(
              'JOURNAL',
              `${report.failed.length} undo step(s) failed; fix the cause and run recover again`,
            );
        }
      } catch (err) {
        process.exitCode = reportError(err, false);
      }
    });
}
