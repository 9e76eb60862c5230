import { Worker } from 'node:worker_threads';
import { ReseedError, abortError, errorMessage } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import type { ReceiveOptions, ReceiveProgress, ReceiveReport } from './receive.js';

type FromWorker =
  | { type: 'progress'; progress: ReceiveProgress }
  | { type: 'done'; report: ReceiveReport }
  | { type: 'error'; error: { code: ErrorCode; message: string; retryable?: boolean; hints?: string[] } };

/** The worker's module beside this one: .ts when run from the sources (tsx), .js when built. */
const WORKER = new URL(
  import.meta.url.endsWith('.ts') ? './receive-worker.ts' : './receive-worker.js',
  import.meta.url,
);

/**
 * receiveTree on a worker thread. The data path allocates a buffer for every read and write, and
 * V8 answers that churn with a full collection every few dozen megabytes, each marking the whole
 * heap: on the agent's main thread (fastify, zod, pino, mysql2: ~23 MB) that was a quarter of its
 * CPU while it received. The worker's heap holds only the transport. The result is the same as
 * receiveTree's; an abort is passed on, and the worker's own end awaited.
 */
export function receiveTreeInThread(o: ReceiveOptions): Promise<ReceiveReport> {
  const { signal, onProgress, ...data } = o;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<ReceiveReport>((resolve, reject) => {
    const worker = new Worker(WORKER, { workerData: data });
    let settled: { ok: true; report: ReceiveReport } | { ok: false; err: Error } | undefined;
    const onAbort = () => {
      const reason = abortError(signal);
      worker.postMessage({ type: 'abort', reason: { code: reason.code, message: reason.message } });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'progress') {
        // What the progress callback throws fails the transfer, as it did inline (an event
        // handler's throw would end the agent).
        try {
          onProgress?.(m.progress);
        } catch (err) {
          settled ??= { ok: false, err: err instanceof Error ? err : new Error(String(err)) };
          // Stopped as an abort is: the worker closes its files and connections, then answers.
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
