import { spawn } from 'node:child_process';
import type { SpawnOptions } from 'node:child_process';
import { ReseedError, abortError } from '../errors.js';

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a child to completion. stdout and stderr are both drained (a child whose pipe fills up
 * blocks forever); the abort signal kills the child; a non-zero exit is an EXEC_FAILED error
 * carrying the tail of stderr, which is where tools like mariadb-install-db say what went wrong.
 */
export async function run(
  command: string,
  args: string[],
  options: { signal?: AbortSignal; env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
): Promise<RunResult> {
  const spawnOptions: SpawnOptions = {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  };
  if (options.signal) spawnOptions.signal = options.signal;
  const child = spawn(command, args, spawnOptions);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  if (options.input !== undefined) child.stdin?.end(options.input);
  return new Promise<RunResult>((resolve, reject) => {
    child.on('error', (err) => {
      if (options.signal?.aborted) reject(abortError(options.signal));
      else reject(new ReseedError('EXEC_FAILED', `could not run ${command}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, sig) => {
      if (code === 0) return resolve({ stdout, stderr });
      if (options.signal?.aborted) return reject(abortError(options.signal));
      const tail = stderr.trim().split('\n').slice(-5).join('\n');
      reject(
        new ReseedError(
          'EXEC_FAILED',
          `${command} failed (${sig ?? `exit ${code}`}): ${tail || '(no output)'}`,
        ),
      );
    });
  });
}
