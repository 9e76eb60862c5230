import { Command, Option } from 'commander';
import { METHODS } from '../methods/registry.js';
import { clone } from '../clone/clone.js';
import { defaultCloneOptions } from '../clone/defaults.js';
import { connect } from '../mysql/server.js';
import { loadSampleData } from '../sandbox/sample-data.js';
import { getSandbox, sandboxEndpoint, sandboxRemove, sandboxUp } from '../sandbox/sandbox.js';
import { ReseedError } from '../errors.js';
import { abortOnSignals, logger, parsePositiveInt, reportError } from './common.js';
import { renderSummary } from './clone.js';
import { formatBytes, formatMs } from './output.js';
import { terminalSink } from './progress-screen.js';
import { renderReport } from './verify.js';

const SIZE_UNITS = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(text.trim());
  const bytes = m ? Math.round(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase() as keyof typeof SIZE_UNITS]) : 0;
  if (bytes < 1)
    throw new ReseedError('USAGE', `--size takes a size, not "${text}" (examples: 50M, 300M, 2G)`);
  return bytes;
}

export function demoCommand(): Command {
  return new Command('demo')
    .summary('two local MariaDB sandboxes, sample data, a clone, a verification, a summary')
    .description(
      'Starts sandboxes "demo-donor" and "demo-joiner" (fresh each time), loads a sample shop schema into the donor, clones it to the joiner as a replica, verifies it and prints a summary.',
    )
    .option('--size <size>', 'approximate sample data size', '300M')
    .option('--parallel <n>', 'copy workers', '4')
    .addOption(
      new Option(
        '--method <method>',
        'how the joiner is seeded (mariabackup, copy and snapshot are not built yet)',
      )
        .choices([...METHODS.keys()])
        .default('logical'),
    )
    .action(async (o: { size: string; parallel: string; method: string }) => {
      // Bad input is refused before any sandbox is touched.
      let bytes: number;
      let parallel: number;
      try {
        bytes = parseSize(o.size);
        parallel = parsePositiveInt('--parallel', o.parallel, 64);
      } catch (err) {
        process.exitCode = reportError(err, false);
        return;
      }
      const term = terminalSink();
      const { signal, dispose } = abortOnSignals(() => term.stop());
      try {
        for (const name of ['demo-donor', 'demo-joiner']) if (getSandbox(name)) await sandboxRemove(name);
        process.stderr.write('Starting two sandboxes...\n');
        const donor = await sandboxUp('demo-donor', { signal });
        const joiner = await sandboxUp('demo-joiner', { signal });
        process.stderr.write(
          `  donor  127.0.0.1:${donor.port} (server_id ${donor.serverId})\n  joiner 127.0.0.1:${joiner.port} (server_id ${joiner.serverId})\n`,
        );
        const t = Date.now();
        process.stderr.write(`Loading about ${formatBytes(bytes)} of sample data into the donor...\n`);
        const s = await connect(sandboxEndpoint(donor));
        await loadSampleData(s, { bytes }, signal);
        // The account the joiner replicates with; its password reaches reseed by environment.
        await s.query("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'demo-repl-password'");
        await s.query("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'");
        await s.close();
        process.stderr.write(`  loaded in ${formatMs(Date.now() - t)}\nCloning donor -> joiner...\n`);
        const summary = await clone({
          donor: sandboxEndpoint(donor),
          joiner: sandboxEndpoint(joiner),
          log: logger(false),
          progress: term,
          signal,
          options: defaultCloneOptions({
            method: o.method,
            parallel,
            replicationUser: 'repl',
            replicationPassword: 'demo-repl-password',
            verify: true,
          }),
        });
        term.stop(true);
        process.stdout.write(renderSummary(summary));
        if (summary.verify) process.stdout.write('Verification: ' + renderReport(summary.verify));
        process.stderr.write(
          [
            '',
            'Try it:',
            `  mariadb -h127.0.0.1 -P${donor.port} -uroot shop     # the donor: write something`,
            `  mariadb -h127.0.0.1 -P${joiner.port} -uroot shop    # the joiner: see it arrive (SHOW SLAVE STATUS\\G)`,
            `  bin/reseed verify --from mysql://root@127.0.0.1:${donor.port} --to mysql://root@127.0.0.1:${joiner.port}`,
            'Remove them:',
            '  bin/reseed sandbox rm demo-donor && bin/reseed sandbox rm demo-joiner',
            '',
          ].join('\n'),
        );
      } catch (err) {
        term.stop();
        process.exitCode = reportError(err, false);
      } finally {
        dispose();
      }
    });
}
