import { parentPort, workerData } from 'node:worker_threads';
import { serveStreamWorker } from './stream.js';

/**
 * A donor agent's stream pulled into a child (mbstream -x, btrfs receive, zfs recv) on a thread of
 * its own (see streamIntoChildInThread): the stream's buffers churn on a small heap.
 */
const port = parentPort!;
const abort = new AbortController();
port.on('message', (m: { type: 'abort'; reason?: { code: string; message: string } }) => {
  if (m.type === 'abort') abort.abort(m.reason);
});
serveStreamWorker(workerData as Parameters<typeof serveStreamWorker>[0], abort.signal, (m) =>
  port.postMessage(m),
);
