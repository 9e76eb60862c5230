import { parentPort, workerData } from 'node:worker_threads';
import { receiveTree } from './receive.js';
import type { ReceiveOptions } from './receive.js';
import { serializeError } from './thread.js';

/**
 * A tree received on a thread of its own (see receive-thread.ts): only the transport's modules
 * live on this thread's heap, so the full collections that its buffers' churn sets off are cheap.
 */
const port = parentPort!;
const abort = new AbortController();
port.on('message', (m: { type: 'abort'; reason?: { code: string; message: string } }) => {
  if (m.type === 'abort') abort.abort(m.reason);
});
const options = workerData as Omit<ReceiveOptions, 'signal' | 'onProgress'>;
receiveTree({
  ...options,
  signal: abort.signal,
  onProgress: (p) => port.postMessage({ type: 'progress', progress: p }),
}).then(
  (report) => port.postMessage({ type: 'done', report }),
  (err: unknown) => port.postMessage({ type: 'error', error: serializeError(err) }),
);
