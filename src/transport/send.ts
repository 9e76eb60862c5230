import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { ReseedError, abortError } from '../errors.js';
import type { RateGate } from '../throttle/rate-gate.js';
import type { Codec } from './codec.js';
import { compress } from './codec.js';
import { FRAME, HEADER_BYTES, MAX_FRAME_RAW, encodeFrame } from './frame.js';
import { faultActive } from '../fault.js';

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
}

function isZero(b: Buffer): boolean {
  // Compare 8 bytes at a time; a Buffer of zeros is what a hole reads as.
  const n = b.length - (b.length % 8);
  for (let i = 0; i < n; i += 8) if (b.readBigUInt64LE(i) !== 0n) return false;
  for (let i = n; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * The frames of one segment of a file: DATA (compressed when that helps), ZERO for runs of at
 * least 64 KiB of zeros (holes of a sparse file stay holes on the receiver and cost nothing on
 * the wire), then END with the SHA-256 of every byte of the segment, including those before
 * `from`, which a resumed request reads again only to hash. A file that is shorter than the
 * segment (it changed under us) ends the stream with an error the receiver sees.
 */
export async function* segmentFrames(s: SendSegment): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  const file = await open(s.path, 'r');
  try {
    const buf = Buffer.allocUnsafe(MAX_FRAME_RAW);
    let done = 0;
    while (done < s.length) {
      if (s.signal.aborted) throw abortError(s.signal);
      const want = Math.min(MAX_FRAME_RAW, s.length - done);
      // Only the bytes that are sent count against the donor's read rate.
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
    }
    yield encodeFrame(FRAME.END, hash.digest(), 0);
  } finally {
    await file.close();
  }
}

function* chunkFrames(chunk: Buffer, codec: Codec): Generator<Buffer> {
  let start = 0;
  let runStart = 0;
  while (start < chunk.length) {
    const end = Math.min(start + ZERO_BLOCK, chunk.length);
    const block = chunk.subarray(start, end);
    if (block.length === ZERO_BLOCK && isZero(block)) {
      if (runStart < start) yield dataFrame(chunk.subarray(runStart, start), codec);
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
  if (runStart < chunk.length) yield dataFrame(chunk.subarray(runStart), codec);
}

function dataFrame(raw: Buffer, codec: Codec): Buffer {
  const c = compress(codec, raw);
  const frame = encodeFrame(FRAME.DATA, c.payload, raw.length, c.codec);
  // Test-only: one frame damaged after its CRC was computed (bit rot between the two ends).
  if (faultActive('corrupt-frame', true)) frame[HEADER_BYTES] = frame[HEADER_BYTES]! ^ 0xff;
  return frame;
}

export function errorFrame(message: string): Buffer {
  return encodeFrame(FRAME.ERROR, Buffer.from(message), 0);
}
