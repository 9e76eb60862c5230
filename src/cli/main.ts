import { Command, CommanderError } from 'commander';
import { EXIT_CODES, ReseedError } from '../errors.js';
import { cloneCommand } from './clone.js';
import { reportError } from './common.js';
import { demoCommand } from './demo.js';
import { recoverCommand } from './recover.js';
import { sandboxCommand } from './sandbox.js';
import { verifyCommand } from './verify.js';

const program = new Command('reseed')
  .description(
    'Seed a MySQL/MariaDB replica from a live donor: a consistent copy, the exact coordinates, replication configured, started and verified.',
  )
  .version('0.1.0')
  .showHelpAfterError()
  .addCommand(cloneCommand())
  .addCommand(verifyCommand())
  .addCommand(recoverCommand())
  .addCommand(sandboxCommand())
  .addCommand(demoCommand())
  .addHelpText('after', '\nStart with `reseed demo`, or `reseed clone --help`. Docs: README.md and docs/.');

// Looked for before commander parses, so that its own errors can honour it too.
const args = process.argv.slice(2);
const json = (args.includes('--') ? args.slice(0, args.indexOf('--')) : args).includes('--json');

/** The command as typed: "reseed sandbox up". */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * commander's own usage errors (unknown option, missing option, bad choice...) exit 2, as
 * documented, and under --json are one error line like any other (reportError's shape); --help
 * and --version exit 0. addCommand() copies no settings, so each command gets its own.
 */
function reportUsageErrors(cmd: Command): void {
  if (json) cmd.showHelpAfterError(false).configureOutput({ outputError: () => undefined });
  cmd.exitOverride((err) => {
    if (json && err.exitCode !== 0) {
      const message =
        err.code === 'commander.help'
          ? `${commandPath(cmd)} needs a command: see ${commandPath(cmd)} --help`
          : err.message.replace(/^error: /, '');
      reportError(new ReseedError('USAGE', message), true);
    }
    throw err;
  });
  for (const sub of cmd.commands) reportUsageErrors(sub);
}
reportUsageErrors(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (!(err instanceof CommanderError)) throw err;
  process.exitCode = err.exitCode === 0 ? 0 : EXIT_CODES.USAGE;
}
