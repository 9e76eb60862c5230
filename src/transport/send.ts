import { open } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { ReseedError, abortError } from '../errors.js';
import type { RateGate } from '../throttle/rate-gate.js';
import type { Codec } from './codec.js';
import { compress } from './codec.js';
import { SegmentDigest } from './digest.js';
import { FRAME, MAX_FRAME_RAW, encodeFrame, frameHeader } from './frame.js';
import { faultActive } from '../fault.js';
import { framePool } from './frame-pool.js';

/** Runs of zeros shorter than this are sent as data: a hole costs a frame header. */
const ZERO_BLOCK = 64 * 1024;

export interface SendSegment {
  /** the file, as raw path bytes */
  path: Buffer;
  offset: number;
  length: number;
  /** resume: bytes of the segment the receiver already holds; they are read and hashed, not sent */
  from: number;
  codec: Codec;
  gate?: RateGate | undefined;
  signal: AbortSignal;
  /** the segment's digest, as sent in its END frame */
  onDigest?: ((hex: string) => void) | undefined;
  /**
   * The file as the transfer listed it: once the segment is read, a file whose size or
   * modification time differs changed while it was sent (what was read may mix old and new
   * bytes), and the segment fails instead of ending.
   */
  unchanged?: { size: number; mtimeMs: number } | undefined;
}

const ZEROS = Buffer.alloc(ZERO_BLOCK);

/** A run of zeros, as a hole reads; compared natively (memcmp), not byte by byte in JS. */
function isZero(b: Buffer): boolean {
  return b.length <= ZEROS.length && b.equals(ZEROS.subarray(0, b.length));
}

/**
 * The frames of one segment of a file: DATA (compressed when that helps), ZERO for runs of at
 * least 64 KiB of zeros (holes of a sparse file stay holes on the receiver and cost nothing on
 * the wire), then END with the digest of every byte of the segment, including those before
 * `from`, which a resumed request reads again only to hash. A file that is shorter than the
 * segment (it changed under us) ends the stream with an error the receiver sees. A frame is
 * yielded as its header and its payload, two buffers, so the payload is never copied: each read
 * gets a buffer of the pool (frame-pool.ts), free again only when the socket has written every
 * frame of it (writeFrames). A consumer that keeps a frame past asking for the next one without
 * registering its write (framePool.writing) must copy it.
 */
export async function* segmentFrames(s: SendSegment): AsyncGenerator<Buffer> {
  const hash = new SegmentDigest();
  const file = await open(s.path, 'r');
  try {
    let done = 0;
    while (done < s.length) {
      if (s.signal.aborted) throw abortError(s.signal);
      const want = Math.min(MAX_FRAME_RAW, s.length - done);
      // A buffer of the pool: used again once the socket has written every frame made of it.
      const buf = framePool.take();
      try {
        // Only the bytes that are sent count against the donor's read rate (a resumed request
        // reads again what came before only to hash it). Holes count too: a run of zeros may be
        // a hole or blocks the disk reads, and only the read tells which.
        if (s.gate && done + want > s.from) await s.gate.take(want, s.signal);
        const { bytesRead } = await file.read(buf, 0, want, s.offset + done);
        if (bytesRead === 0)
          throw new ReseedError(
            'COPY_FAILED',
            `${s.path.toString()} is shorter than when the transfer began (it changed)`,
          );
        let chunk = buf.subarray(0, bytesRead);
        hash.update(chunk);
        // Test-only: the bytes sent differ from the bytes hashed (a segment that changed under us).
        if (faultActive('segment-differs')) chunk = Buffer.from(chunk).fill(0x5a, 0, 1);
        const skip = Math.max(0, Math.min(bytesRead, s.from - done));
        if (skip < bytesRead) yield* chunkFrames(chunk.subarray(skip), s.codec);
        done += bytesRead;
      } finally {
        framePool.drop(buf);
      }
    }
    if (s.unchanged) {
      const st = await file.stat();
      if (st.size !== s.unchanged.size || st.mtimeMs !== s.unchanged.mtimeMs)
        throw new ReseedError(
          'COPY_FAILED',
          `${s.path.toString()} changed while it was sent (its ${st.size !== s.unchanged.size ? 'size' : 'modification time'} is not what it was when the transfer began): what was read may mix old and new bytes; send it again once nothing writes to it`,
        );
    }
    const digest = hash.digest();
    s.onDigest?.(digest);
    yield encodeFrame(FRAME.END, Buffer.from(digest), 0);
  } finally {
    await file.close();
  }
}

/** A chunk's frames: DATA (compressed when that helps), ZERO for runs of 64 KiB of zeros. */
export function* chunkFrames(chunk: Buffer, codec: Codec): Generator<Buffer> {
  let start = 0;
  let runStart = 0;
  while (start < chunk.length) {
    const end = Math.min(start + ZERO_BLOCK, chunk.length);
    const block = chunk.subarray(start, end);
    if (block.length === ZERO_BLOCK && isZero(block)) {
      if (runStart < start) yield* dataFrame(chunk.subarray(runStart, start), codec);
      let zeroEnd = end;
      while (
        zeroEnd < chunk.length &&
        isZero(chunk.subarray(zeroEnd, Math.min(zeroEnd + ZERO_BLOCK, chunk.length)))
      )
        zeroEnd = Math.min(zeroEnd + ZERO_BLOCK, chunk.length);
      yield encodeFrame(FRAME.ZERO, Buffer.alloc(0), zeroEnd - start);
      start = runStart = zeroEnd;
    } else start = end;
  }
  if (runStart < chunk.length) yield* dataFrame(chunk.subarray(runStart), codec);
}

function* dataFrame(raw: Buffer, codec: Codec): Generator<Buffer> {
  const c = compress(codec, raw);
  yield frameHeader(FRAME.DATA, c.payload, raw.length, c.codec);
  // Test-only: one frame damaged after its checksum was computed (bit rot between the two ends).
  if (faultActive('corrupt-frame', true)) {
    const damaged = Buffer.from(c.payload);
    damaged[0] = damaged[0]! ^ 0xff;
    yield damaged;
  } else yield c.payload;
}

export function errorFrame(message: string): Buffer {
  return encodeFrame(FRAME.ERROR, Buffer.from(message), 0);
}

/**
 * Writes frames as an HTTP response body, with backpressure, telling the frame pool when the
 * socket has written each pooled buffer. Ends when the frames do or the peer goes away (the frames'
 * generator is then closed, which ends what it reads).
 */
export async function writeFrames(res: ServerResponse, frames: AsyncGenerator<Buffer>): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  let closed = res.destroyed;
  let wake: (() => void) | undefined;
  const onClose = () => {
    closed = true;
    wake?.();
  };
  res.once('close', onClose);
  try {
    for await (const chunk of frames) {
      if (closed) break;
      if (res.write(chunk, framePool.writing(chunk))) continue;
      await new Promise<void>((resolve) => {
        wake = resolve;
        res.once('drain', resolve);
      });
      res.off('drain', wake!);
      wake = undefined;
      if (closed) break;
    }
    if (!closed) res.end();
  } finally {
    res.off('close', onClose);
    await frames.return(undefined);
  }
}
