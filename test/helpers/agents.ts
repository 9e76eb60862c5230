import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
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
