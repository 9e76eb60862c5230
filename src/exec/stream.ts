import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { createInterface } from 'node:readline';
import { ReseedError, abortError } from '../errors.js';

export interface StreamedChildOptions {
  signal?: AbortSignal | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  cwd?: string | undefined;
  /** 'pipe' gives `stdin`; a file descriptor feeds the child from it; default: nothing */
  stdin?: 'pipe' | 'ignore' | number;
  /** 'pipe' (the default) gives `stdout`; a file descriptor sends it there */
  stdout?: 'pipe' | 'ignore' | number;
  /** every stderr line as it comes (progress, BACKUP STAGE timings); stderr is drained regardless */
  onStderrLine?: ((line: string) => void) | undefined;
  /** how many stderr lines the error of a failed child quotes (default 8) */
  tailLines?: number;
  /** after an abort, how long the child has between SIGTERM and SIGKILL (default 5 s) */
  killGraceMs?: number;
}

export interface StreamedChild {
  readonly pid: number;
  /** the child's stdout, to be piped somewhere (with backpressure); null unless stdout is 'pipe' */
  readonly stdout: Readable | null;
  readonly stdin: Writable | null;
  /**
   * Settles when the child has exited and its stderr is read to the end: resolves on exit 0;
   * rejects with EXEC_FAILED naming the exit code or signal and quoting the tail of stderr, or
   * with the abort error when the signal fired.
   */
  readonly done: Promise<void>;
  /** the last stderr lines so far */
  stderrTail(): string[];
  /** SIGTERM to the child's process group, SIGKILL after the grace period; idempotent */
  kill(): void;
}

/**
 * Starts a child whose output is a stream to pipe on (`mariadb-backup --stream` writes
 * gigabytes), not a string to collect. stderr is always drained: a child whose stderr pipe fills
 * up blocks forever, whatever its stdout consumer does. The child leads its own process group, so
 * an abort stops what it started too (a shell's pipeline, a tool's helpers); the group is sent
 * SIGTERM, then SIGKILL if it has not exited after the grace period.
 */
export function spawnStreamed(
  command: string,
  args: string[],
  options: StreamedChildOptions = {},
): StreamedChild {
  const { signal } = options;
  if (signal?.aborted) throw abortError(signal);
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: [options.stdin ?? 'ignore', options.stdout ?? 'pipe', 'pipe'],
    detached: true,
  });
  const keep = options.tailLines ?? 8;
  const tail: string[] = [];
  const stderrDone = new Promise<void>((resolve) => {
    if (!child.stderr) return resolve();
    const lines = createInterface({ input: child.stderr, crlfDelay: Infinity });
    lines.on('line', (line) => {
      tail.push(line);
      if (tail.length > keep) tail.shift();
      options.onStderrLine?.(line);
    });
    lines.on('close', resolve);
  });
  let killed = false;
  let graceTimer: NodeJS.Timeout | undefined;
  const signalGroup = (sig: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, sig);
    } catch {
      // The group is gone already: what was wanted.
    }
  };
  const kill = () => {
    if (killed || child.exitCode !== null || child.signalCode !== null) return;
    killed = true;
    signalGroup('SIGTERM');
    graceTimer = setTimeout(() => signalGroup('SIGKILL'), options.killGraceMs ?? 5000);
    graceTimer.unref();
  };
  const onAbort = () => kill();
  signal?.addEventListener('abort', onAbort, { once: true });

  const done = new Promise<void>((resolve, reject) => {
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    child.once('close', (code, sig) => {
      clearTimeout(graceTimer);
      signal?.removeEventListener('abort', onAbort);
      // Once the leader is gone, whatever it left in its group goes too.
      if (killed) signalGroup('SIGKILL');
      void stderrDone.then(() => {
        if (signal?.aborted) return reject(abortError(signal));
        if (spawnError)
          return reject(
            new ReseedError('EXEC_FAILED', `could not run ${command}: ${spawnError.message}`, {
              cause: spawnError,
            }),
          );
        if (code === 0) return resolve();
        const quoted = tail.length ? tail.join('\n') : '(no output on stderr)';
        reject(new ReseedError('EXEC_FAILED', `${command} failed (${sig ?? `exit ${code}`}): ${quoted}`));
      });
    });
  });
  // A caller that never awaits `done` (it failed first) must not leave an unhandled rejection.
  done.catch(() => undefined);
  return {
    pid: child.pid ?? -1,
    stdout: child.stdout,
    stdin: child.stdin,
    done,
    stderrTail: () => [...tail],
    kill,
  };
}
