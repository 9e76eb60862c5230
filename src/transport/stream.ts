import { isIP } from 'node:net';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { ReseedError, abortError, errorMessage, isReseedError } from '../errors.js';
import { spawnStreamed } from '../exec/stream.js';
import type { StreamedChild } from '../exec/stream.js';
import type { Codec } from './codec.js';
import { SegmentDigest } from './digest.js';
import { FRAME, FrameDecoder, encodeFrame } from './frame.js';
import { framePool } from './frame-pool.js';
import type { Frame } from './frame.js';
import { chunkFrames, errorFrame } from './send.js';
import { cutTooLong } from './receive.js';
import type { TransferSource } from './receive.js';
import { runInThread, serializeError, workerModule } from './thread.js';

/** What is gathered into one frame before it is sent: a pipe gives 64 KiB at a time. */
const GATHER = 256 * 1024;
const ZEROS = Buffer.alloc(1 << 20);

/**
 * The frames of a stream that is made as it is read (`mariadb-backup --stream`): DATA and ZERO
 * frames, each with its checksum, then END with the digest of every byte, or ERROR with what went
 * wrong when `input` fails (`describe` turns the failure into the message the receiver shows).
 * Unlike a tree's segments a stream cannot be asked for again from an offset: a cut fails it.
 * As with segmentFrames, a DATA payload is a view of a pooled buffer: valid until the next frame
 * is asked for, unless its write is registered with the pool (writeFrames does).
 */
export async function* streamFrames(
  input: AsyncIterable<Buffer>,
  codec: Codec,
  describe: (err: unknown) => string = errorMessage,
  /** the digest to go on with: a resumed stream's END covers the bytes before its offset too */
  hash = new SegmentDigest(),
): AsyncGenerator<Buffer> {
  // Gathered by copying into a buffer of the frame pool, used again once the socket wrote it:
  // joining the pipe's chunks into a new buffer each time was garbage the agent paid for in full
  // collections (frame-pool.ts).
  let buf = framePool.take();
  let size = 0;
  const flush = function* (): Generator<Buffer> {
    if (size === 0) return;
    const full = buf;
    const length = size;
    buf = framePool.take();
    size = 0;
    try {
      yield* chunkFrames(full.subarray(0, length), codec);
    } finally {
      framePool.drop(full);
    }
  };
  try {
    try {
      for await (const chunk of input) {
        hash.update(chunk);
        for (let at = 0; at < chunk.length;) {
          const n = chunk.copy(buf, size, at);
          size += n;
          at += n;
          if (size === buf.length) yield* flush();
        }
        if (size >= GATHER) yield* flush();
      }
      yield* flush();
    } catch (err) {
      yield errorFrame(describe(err));
      return;
    }
    yield encodeFrame(FRAME.END, Buffer.from(hash.digest()), 0);
  } finally {
    framePool.drop(buf);
  }
}

export interface StreamReceiveOptions {
  source: TransferSource;
  /** the path of the stream on the donor agent (with its query string) */
  path: string;
  /** where the bytes go, with backpressure (a child's stdin) */
  sink: Writable;
  /** no byte for this long: the stream is taken as cut, and fails (or is resumed) */
  stallTimeoutMs: number;
  /**
   * The donor can send the stream again from an offset (a snapshot's send): a cut is resumed from
   * the last byte written, until no byte came for this long. Unset: a cut fails the stream.
   */
  resumeTimeoutMs?: number | undefined;
  signal: AbortSignal;
  onProgress?: ((bytes: number, wireBytes: number) => void) | undefined;
}

/** The error of a stream whose sink (a child's stdin) stopped taking it: the child's own error says why. */
export const SINK_STOPPED_READING = 'the consumer of the stream stopped reading it';

/**
 * Pulls a stream from a donor agent into `sink`: every frame's checksum checked before its bytes
 * are written, the END frame's digest compared with that of everything written. A stream that
 * ends without END (cut, the donor agent stopped) or with ERROR fails; the sink is then closed
 * early, and the caller must stop what consumes it (it would take a truncated stream for an error
 * of its own, never for a whole one: it is told only by END). With `resumeTimeoutMs`, a cut is
 * asked again from the bytes written so far, with their digest, which the donor checks against
 * the stream it sends again before it sends more; the sink sees one unbroken stream.
 */
export async function receiveStream(
  o: StreamReceiveOptions,
): Promise<{ bytes: number; wireBytes: number; digest: string; resumes: number }> {
  const url = new URL(o.path, o.source.url);
  const tls = o.source.tls;
  const resumable = o.resumeTimeoutMs !== undefined;
  // As for trees (receive.ts): a stream silent for a third of the resume timeout is taken as cut.
  const stall = resumable
    ? Math.round(Math.min(10_000, Math.max(1000, o.resumeTimeoutMs! / 3)))
    : o.stallTimeoutMs;
  const dispatcher = new Agent({
    connect: {
      ca: tls?.ca,
      cert: tls?.cert,
      key: tls?.key,
      servername: tls?.servername ?? (isIP(url.hostname.replace(/^\[|\]$/g, '')) ? undefined : url.hostname),
      rejectUnauthorized: true,
      timeout: stall,
    },
  });
  const hash = new SegmentDigest();
  let bytes = 0;
  let wireBytes = 0;
  let resumes = 0;
  let lastProgress = Date.now();
  const left = () => o.resumeTimeoutMs! - (Date.now() - lastProgress);
  // Backpressure: wait for 'drain', or fail when the consumer went away (listeners removed
  // each time: one per write would pile up on the sink).
  // A frame's parts are written together (at most 1 MiB): memory stays bounded.
  const write = (bufs: Buffer[]): Promise<void> | undefined => {
    let ok = true;
    // Corked: the pieces (TLS records, 16 KiB each) reach the pipe in one writev, not one write each.
    o.sink.cork();
    for (const buf of bufs) ok = o.sink.write(buf);
    o.sink.uncork();
    if (ok) return undefined;
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        o.sink.off('drain', onDrain);
        o.sink.off('close', onClose);
        o.signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(new ReseedError('COPY_FAILED', SINK_STOPPED_READING));
      const onAbort = () => done(abortError(o.signal));
      o.sink.on('drain', onDrain);
      o.sink.on('close', onClose);
      o.signal.addEventListener('abort', onAbort);
    });
  };
  /** One request: the stream from `bytes` on, until END (returns its digest) or a failure. */
  const pull = async (): Promise<string> => {
    const at = new URL(url);
    if (bytes > 0) {
      at.searchParams.set('offset', String(bytes));
      at.searchParams.set('digest', hash.digest());
    }
    // A resume asks no longer than the resume timeout has left (at least a second).
    const wait = bytes > 0 && resumable ? Math.min(stall, Math.max(1000, left())) : stall;
    const res = await request(at, {
      method: 'GET',
      dispatcher,
      headers: { authorization: `Bearer ${o.source.secret}` },
      signal: o.signal,
      headersTimeout: wait,
      bodyTimeout: stall,
    }).catch((err: unknown) => {
      if (o.signal.aborted) throw abortError(o.signal);
      throw new ReseedError(
        'TRANSPORT_FAILED',
        `the donor agent's stream could not be opened: ${errorMessage(err)}`,
        { cause: err, retryable: true },
      );
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        // not JSON: quoted as it is
      }
      // Refused on a resume: the donor's agent restarted (or dropped the stream after the resume
      // timeout): the copy was cut short, the credential was good.
      if (res.statusCode === 401 && bytes > 0)
        throw new ReseedError(
          'TRANSPORT_FAILED',
          `the donor's agent no longer knows this stream (it restarted, or dropped it after the resume timeout), so it cannot be resumed after ${bytes} bytes: run the clone again`,
        );
      throw new ReseedError(
        res.statusCode === 401 ? 'TRANSPORT_AUTH_FAILED' : 'TRANSPORT_FAILED',
        `the donor agent answered ${res.statusCode}: ${message}`,
        { retryable: res.statusCode >= 500 },
      );
    }
    const decoder = new FrameDecoder();
    res.body.on('error', (err) => decoder.destroy(err));
    res.body.pipe(decoder);
    try {
      for await (const frame of decoder as AsyncIterable<Frame>) {
        lastProgress = Date.now();
        wireBytes += frame.wireBytes;
        if (frame.type === FRAME.DATA) {
          for (const part of frame.parts) hash.update(part);
          await write(frame.parts);
        } else if (frame.type === FRAME.ZERO) {
          for (let left = frame.rawLength; left > 0; left -= ZEROS.length) {
            const z = ZEROS.subarray(0, Math.min(left, ZEROS.length));
            hash.update(z);
            await write([Buffer.from(z)]);
          }
        } else if (frame.type === FRAME.END) {
          // Read to the body's end: a body left paused keeps its request alive.
          for await (const _ of decoder as AsyncIterable<Frame>) void _;
          return frame.payload.toString();
        } else throw new ReseedError('COPY_FAILED', `the donor agent: ${frame.payload.toString('utf8')}`);
        bytes += frame.rawLength;
        o.onProgress?.(bytes, wireBytes);
      }
    } catch (err) {
      if (o.signal.aborted) throw abortError(o.signal);
      throw err instanceof ReseedError
        ? err
        : new ReseedError('TRANSPORT_FAILED', `the data channel was cut: ${errorMessage(err)}`, {
            cause: err,
            retryable: true,
          });
    }
    throw new ReseedError(
      'TRANSPORT_FAILED',
      "the donor agent's stream ended before its end (cut, or the agent stopped)",
      { retryable: true },
    );
  };
  try {
    for (;;) {
      let sent: string;
      try {
        sent = await pull();
      } catch (err) {
        if (o.signal.aborted) throw abortError(o.signal);
        if (!resumable || !isReseedError(err) || !err.retryable) throw err;
        if (left() <= 0) throw cutTooLong({ resumeTimeoutMs: o.resumeTimeoutMs! }, err);
        resumes++;
        await sleep(Math.min(1000, 100 * resumes), undefined, { signal: o.signal }).catch(() => undefined);
        continue;
      }
      const digest = hash.digest();
      if (sent !== digest)
        throw new ReseedError(
          'COPY_FAILED',
          'the stream arrived with another digest than the donor sent: it was damaged',
        );
      o.sink.end();
      return { bytes, wireBytes, digest, resumes };
    }
  } catch (err) {
    // Closed without an error event (which a sink without a listener would throw): what reads
    // it sees the stream end early, and the caller stops it.
    o.sink.destroy();
    // The response may still be streaming: a graceful close would wait for a body nobody reads.
    await dispatcher.destroy().catch(() => undefined);
    throw err;
  } finally {
    if (!dispatcher.destroyed) await dispatcher.close().catch(() => undefined);
  }
}

/** A child that consumes a stream on its stdin (mbstream -x, btrfs receive, zfs recv). */
export interface ConsumerSpec {
  command: string;
  args: string[];
  cwd?: string | undefined;
  /** how many stderr lines its error quotes */
  tailLines?: number | undefined;
}

export interface StreamIntoOptions {
  source: TransferSource;
  path: string;
  stallTimeoutMs: number;
  /** resumable streams only (receiveStream) */
  resumeTimeoutMs?: number | undefined;
}

export interface StreamIntoReport {
  bytes: number;
  wireBytes: number;
  digest: string;
  /** times the stream was asked again from an offset after a cut */
  resumes: number;
}

/**
 * Pulls a donor agent's stream into a child started for it (`consumer`), on this thread: done
 * when the child has exited 0. When the stream fails because the child stopped reading (it
 * exited on its own: zfs recv refusing the stream), the child's own error, with its stderr, is
 * the reason; otherwise the child is stopped and the stream's error stands (the child then fails
 * only because its input ended).
 */
export async function streamIntoChild(
  consumer: ConsumerSpec,
  o: StreamIntoOptions & {
    signal: AbortSignal;
    onProgress?: ((bytes: number, wireBytes: number) => void) | undefined;
  },
): Promise<StreamIntoReport> {
  const child = spawnStreamed(consumer.command, consumer.args, {
    stdin: 'pipe',
    stdout: 'ignore',
    cwd: consumer.cwd,
    tailLines: consumer.tailLines ?? 8,
    signal: o.signal,
  });
  // A child exiting early makes writes to its stdin fail (EPIPE): seen through 'close' by the
  // receiver, and through its exit status here; never an unhandled error.
  child.stdin!.on('error', () => undefined);
  const streamed = await receiveStream({
    source: o.source,
    path: o.path,
    sink: child.stdin!,
    stallTimeoutMs: o.stallTimeoutMs,
    resumeTimeoutMs: o.resumeTimeoutMs,
    signal: o.signal,
    onProgress: o.onProgress,
  }).catch((err: unknown) => sinkFailed(child, err));
  await child.done;
  return streamed;
}

async function sinkFailed(child: StreamedChild, err: unknown): Promise<never> {
  if (isReseedError(err) && err.message === SINK_STOPPED_READING) {
    const own = await Promise.race([
      child.done.then(
        () => undefined,
        (e: unknown) => e,
      ),
      sleep(2000).then(() => null),
    ]);
    if (own instanceof Error) throw own;
  }
  child.kill();
  await child.done.catch(() => undefined);
  throw err;
}

const STREAM_WORKER = workerModule('stream-worker');

/**
 * streamIntoChild on a worker thread, and the child started there: the stream's buffers churn
 * on a small heap, not the agent's (see receive-thread.ts). The child is stopped, and awaited,
 * before this settles on an abort or a failure.
 */
export function streamIntoChildInThread(
  consumer: ConsumerSpec,
  o: StreamIntoOptions & {
    signal: AbortSignal;
    onProgress?: ((bytes: number, wireBytes: number) => void) | undefined;
  },
): Promise<StreamIntoReport> {
  const { signal, onProgress, ...rest } = o;
  return runInThread<{ bytes: number; wireBytes: number }, StreamIntoReport>(
    STREAM_WORKER,
    { consumer, ...rest },
    signal,
    onProgress && ((p) => onProgress(p.bytes, p.wireBytes)),
  );
}

/** The worker's side of streamIntoChildInThread (stream-worker.ts). */
export function serveStreamWorker(
  data: { consumer: ConsumerSpec } & StreamIntoOptions,
  signal: AbortSignal,
  post: (m: unknown) => void,
): void {
  let last = 0;
  streamIntoChild(data.consumer, {
    ...data,
    signal,
    onProgress: (bytes, wireBytes) => {
      if (Date.now() - last < 250) return;
      last = Date.now();
      post({ type: 'progress', progress: { bytes, wireBytes } });
    },
  }).then(
    (report) => post({ type: 'done', report }),
    (err: unknown) => post({ type: 'error', error: serializeError(err) }),
  );
}
