import { Worker } from 'node:worker_threads';
import { ReseedError, abortError, errorMessage } from '../errors.js';
import type { ErrorCode } from '../errors.js';

/** What a transport worker posts: progress, then its result or its error. */
export type FromWorker<P, R> =
  | { type: 'progress'; progress: P }
  | { type: 'done'; report: R }
  | { type: 'error'; error: { code: ErrorCode; message: string; retryable?: boolean; hints?: string[] } };

/** A module beside this one, as a worker: .ts when run from the sources (tsx), .js when built. */
export function workerModule(name: string): URL {
  return new URL(import.meta.url.endsWith('.ts') ? `./${name}.ts` : `./${name}.js`, import.meta.url);
}

/**
 * Runs a transport worker (receive-worker, stream-worker) with `data`, passing progress to
 * `onProgress` and an abort on as a message; the worker's own end is awaited, so that whatever it
 * opened (files, connections, a child process) is closed when this settles. What `onProgress`
 * throws fails the run, as it did inline, and stops the worker as an abort does.
 */
export function runInThread<P, R>(
  module: URL,
  data: unknown,
  signal: AbortSignal,
  onProgress?: (progress: P) => void,
): Promise<R> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<R>((resolve, reject) => {
    const worker = new Worker(module, { workerData: data });
    let settled: { ok: true; report: R } | { ok: false; err: Error } | undefined;
    const onAbort = () => {
      const reason = abortError(signal);
      worker.postMessage({ type: 'abort', reason: { code: reason.code, message: reason.message } });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: FromWorker<P, R>) => {
      if (m.type === 'progress') {
        try {
          onProgress?.(m.progress);
        } catch (err) {
          settled ??= { ok: false, err: err instanceof Error ? err : new Error(String(err)) };
          worker.postMessage({ type: 'abort', reason: { code: 'ABORTED', message: errorMessage(err) } });
        }
      } else if (m.type === 'done') {
        settled ??= { ok: true, report: m.report };
        void worker.terminate();
      } else {
        const e = m.error;
        settled ??= {
          ok: false,
          err: signal.aborted
            ? abortError(signal)
            : new ReseedError(e.code, e.message, { retryable: e.retryable ?? false, hints: e.hints ?? [] }),
        };
        void worker.terminate();
      }
    });
    worker.on('error', (err) => {
      settled ??= {
        ok: false,
        err: new ReseedError('INTERNAL', `the transfer's thread failed: ${err.message}`, { cause: err }),
      };
    });
    worker.on('exit', () => {
      signal.removeEventListener('abort', onAbort);
      if (settled?.ok) resolve(settled.report);
      else
        reject(settled?.err ?? new ReseedError('INTERNAL', "the transfer's thread ended without a result"));
    });
  });
}

/** A worker's failure as it crosses to the thread that started it. */
export function serializeError(err: unknown): Extract<FromWorker<never, never>, { type: 'error' }>['error'] {
  if (err instanceof ReseedError)
    return { code: err.code, message: err.message, retryable: err.retryable, hints: err.hints };
  return { code: 'INTERNAL', message: err instanceof Error ? (err.stack ?? err.message) : String(err) };
}
