import { Command } from 'commander';
import { cloneCommand } from './clone.js';
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

// commander's own usage errors (unknown option, bad choice...) exit 2, as documented.
function usageExits(cmd: Command): void {
  cmd.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  for (const sub of cmd.commands) usageExits(sub);
}
usageExits(program);

await program.parseAsync(process.argv);
