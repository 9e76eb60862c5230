import { Command, CommanderError } from 'commander';
import { EXIT_CODES, ReseedError } from '../errors.js';
import { cloneCommand } from './clone.js';
import { reportError } from './common.js';
import { demoCommand } from './demo.js';
import { refreshCommand } from './refresh.js';
import { quiesceCommand } from './quiesce.js';
import { statusCommand } from './status.js';
import { agentCommand } from './agent.js';
import { jobsCommands, transferCommand } from './jobs.js';
import { recoverCommand } from './recover.js';
import { sandboxCommand } from './sandbox.js';
import { verifyCommand } from './verify.js';

const program: Command = new Command('reseed')
  .description(
    'Seed a MySQL/MariaDB replica from a live donor: a consistent copy, the exact coordinates, replication configured, started and verified.',
  )
  .version('0.1.0')
  // A subcommand's options are its own (quiesce and quiesce freeze both take --server).
  .enablePositionalOptions()
  .addCommand(cloneCommand())
  .addCommand(verifyCommand())
  .addCommand(recoverCommand())
  .addCommand(statusCommand())
  .addCommand(agentCommand())
  .addCommand(transferCommand())
  .addCommand(sandboxCommand())
  .addCommand(demoCommand())
  .addCommand(quiesceCommand())
  .addCommand(refreshCommand())
  .addHelpText('after', '\nStart with `reseed demo`, or `reseed clone --help`. Docs: README.md and docs/.');
for (const c of jobsCommands()) program.addCommand(c);

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
 * commander's message as one line: "X is invalid. Allowed choices are a, b." becomes
 * "X is invalid (allowed choices are a, b)", and "unknown option '--x'\n(Did you mean --y?)"
 * becomes "unknown option '--x' (did you mean --y?)".
 */
function oneLine(message: string): string {
  const [first = '', ...lines] = message
    .replace(/^error: /, '')
    .trim()
    .split(/\n+/);
  const [head = '', ...sentences] = first.split(/\.\s+/);
  const more = [...sentences, ...lines].map((s) => {
    const text = s
      .trim()
      .replace(/^\((.*)\)$/, '$1')
      .replace(/\.$/, '');
    return text.charAt(0).toLowerCase() + text.slice(1);
  });
  return more.length ? `${head} (${more.join('; ')})` : head.replace(/\.$/, '');
}

/**
 * commander's own usage errors (unknown option, missing option, bad choice...) exit 2, as
 * documented, and read like every other error (reportError's shape: one "reseed: " line, a hint,
 * one JSON line under --json); --help and --version exit 0. addCommand() copies no settings, so
 * each command gets its own.
 */
function reportUsageErrors(cmd: Command): void {
  cmd.showHelpAfterError(false).configureOutput({ outputError: () => undefined });
  cmd.exitOverride((err) => {
    if (err.code === 'commander.help' && json && err.exitCode !== 0) {
      const path = commandPath(cmd);
      reportError(new ReseedError('USAGE', `${path} needs a command: see ${path} --help`), true);
    } else if (err.code !== 'commander.help' && err.exitCode !== 0) {
      const hints = [`see: ${commandPath(cmd)} --help`];
      reportError(new ReseedError('USAGE', oneLine(err.message), { hints }), json);
    }
    throw err;
  });
  for (const sub of cmd.commands) reportUsageErrors(sub);
}
// `reseed ... --help | head`: a reader that went away is no error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
});
reportUsageErrors(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (!(err instanceof CommanderError)) throw err;
  process.exitCode = err.exitCode === 0 ? 0 : EXIT_CODES.USAGE;
}
