import type { ReceiveOptions, ReceiveProgress, ReceiveReport } from './receive.js';
import { runInThread, workerModule } from './thread.js';

const WORKER = workerModule('receive-worker');

/**
 * receiveTree on a worker thread. The data path allocates a buffer for every read and write, and
 * V8 answers that churn with a full collection every few dozen megabytes, each marking the whole
 * heap: on the agent's main thread (fastify, zod, pino, mysql2: ~23 MB) that was a quarter of its
 * CPU while it received. The worker's heap holds only the transport. The result is the same as
 * receiveTree's; an abort is passed on, and the worker's own end awaited.
 */
export function receiveTreeInThread(o: ReceiveOptions): Promise<ReceiveReport> {
  const { signal, onProgress, ...data } = o;
  return runInThread<ReceiveProgress, ReceiveReport>(WORKER, data, signal, onProgress);
}
