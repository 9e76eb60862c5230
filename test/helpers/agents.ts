import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './sandboxes.js';

/**
 * Starts `reseed agent --config FILE` as its own process (in network namespace `netns` when
 * given) and resolves once it says it listens; rejects with its output if it exits first.
 */
export function startAgentProcess(config: string, netns?: string): Promise<ChildProcess> {
  const argv = [process.execPath, join(ROOT, 'bin', 'reseed'), 'agent', '--config', config];
  const child = netns
    ? spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening on')) resolve(child);
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => reject(new Error(`agent exited ${code}: ${out}`)));
  });
}

/**
 * Finishes a config.json written by `reseed agent init` as a DBA would for a host without a
 * mysqld: no mysql, service or datadir; a state directory beside it; these directories to serve
 * and receive; this listen address.
 */
export function finishInitConfig(
  file: string,
  o: { serve: string[]; receive: string[]; listen: { host: string; port: number } },
): void {
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  delete c.mysql;
  delete c.service;
  delete c.datadir;
  Object.assign(c, { stateDir: 'state', ...o });
  writeFileSync(file, JSON.stringify(c));
}
