import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { ReseedError } from '../errors.js';
import type { Codec } from './codec.js';
import { codecById, decompress } from './codec.js';
import { frameChecksum } from './digest.js';

/**
 * The data channel's frames, inside an HTTP response body. A 24-byte header, then the payload:
 *
 *   0  u8   type: 1 DATA, 2 ZERO (a run of zero bytes, no payload), 3 END (the segment's digest
 *           of its raw bytes, 32 hex characters), 4 ERROR (the sender's message, UTF-8)
 *   1  u8   codec of the payload: 0 none, 1 lz4, 2 zstd
 *   2  u16  reserved, 0
 *   4  u32  payload length on the wire
 *   8  u32  raw length: the bytes of the file this frame stands for
 *   12 u64  XXH3-64 of the payload as sent
 *   20 u32  reserved, 0
 *
 * TLS already protects the bytes in transit; the frame's checksum catches what TLS cannot see (a
 * bug in a codec, a bad read) before a byte is written, and the END frame's digest, compared with
 * that of what the receiver wrote, proves the segment end to end (digest.ts).
 */
export const FRAME = { DATA: 1, ZERO: 2, END: 3, ERROR: 4 } as const;
export type FrameType = (typeof FRAME)[keyof typeof FRAME];
export const HEADER_BYTES = 24;
/** The most raw bytes one DATA frame carries. */
export const MAX_FRAME_RAW = 1 << 20;

export interface Frame {
  type: FrameType;
  /**
   * DATA: the raw bytes (decompressed), in the pieces they arrived in: an uncompressed payload is
   * never copied into one buffer (a copy of every byte, and garbage that costs the agent a full
   * collection every few dozen megabytes); write them with writev.
   */
  parts: Buffer[];
  /** END: the segment digest (hex); ERROR: the message bytes; DATA: the parts joined (a copy: tests) */
  readonly payload: Buffer;
  /** the bytes of the file the frame stands for (DATA and ZERO) */
  rawLength: number;
  /** bytes this frame took on the wire, header included */
  wireBytes: number;
}

/** A frame's header; the payload follows it as its own buffer, uncopied. */
export function frameHeader(
  type: FrameType,
  payload: Buffer,
  rawLength: number,
  codec: Codec = 'none',
): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt8(codecId(codec), 1);
  header.writeUInt32BE(payload.length, 4);
  header.writeUInt32BE(rawLength, 8);
  header.writeBigUInt64BE(frameChecksum(payload), 12);
  return header;
}

export function encodeFrame(
  type: FrameType,
  payload: Buffer,
  rawLength: number,
  codec: Codec = 'none',
): Buffer {
  return Buffer.concat([frameHeader(type, payload, rawLength, codec), payload]);
}

function codecId(codec: Codec): number {
  return codec === 'none' ? 0 : codec === 'lz4' ? 1 : 2;
}

/**
 * Bytes in, checked frames out (object mode). A checksum that does not match, an unknown type or codec,
 * a payload longer than a frame may be, or a stream that ends inside a frame is an error: the
 * receiver never writes a byte it has not checked.
 */
export class FrameDecoder extends Transform {
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor() {
    super({ readableObjectMode: true, readableHighWaterMark: 16 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    try {
      for (;;) {
        if (this.#buffered < HEADER_BYTES) break;
        const header = this.#peek(HEADER_BYTES);
        const length = header.readUInt32BE(4);
        if (length > MAX_FRAME_RAW + 1024)
          throw new ReseedError(
            'COPY_FAILED',
            `data channel: a frame of ${length} bytes is larger than allowed`,
          );
        if (this.#buffered < HEADER_BYTES + length) break;
        this.#take(HEADER_BYTES);
        this.push(parseFrame(header, this.#take(length)));
      }
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    if (this.#buffered > 0)
      return done(
        new ReseedError(
          'COPY_FAILED',
          `data channel: the stream ended inside a frame (${this.#buffered} bytes left over)`,
          {
            retryable: true,
          },
        ),
      );
    done();
  }

  /** The first `n` bytes; only the chunks that hold them are joined (a header split by a read). */
  #peek(n: number): Buffer {
    if (this.#chunks[0]!.length >= n) return this.#chunks[0]!.subarray(0, n);
    let count = 0;
    for (let have = 0; have < n; count++) have += this.#chunks[count]!.length;
    const joined = Buffer.concat(this.#chunks.slice(0, count));
    this.#chunks.splice(0, count, joined);
    return joined.subarray(0, n);
  }

  /** The next `n` bytes as views of the chunks that hold them, uncopied. */
  #take(n: number): Buffer[] {
    if (n === 0) return [];
    this.#buffered -= n;
    const first = this.#chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return [out];
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const c = this.#chunks[0]!;
      if (c.length <= need) {
        parts.push(c);
        this.#chunks.shift();
        need -= c.length;
      } else {
        parts.push(c.subarray(0, need));
        this.#chunks[0] = c.subarray(need);
        need = 0;
      }
    }
    return parts;
  }
}

function joined(parts: Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

function frame(type: FrameType, parts: Buffer[], rawLength: number, wireBytes: number): Frame {
  return {
    type,
    parts,
    rawLength,
    wireBytes,
    get payload() {
      return joined(parts);
    },
  };
}

function parseFrame(header: Buffer, payload: Buffer[]): Frame {
  const type = header.readUInt8(0);
  const codec = codecById(header.readUInt8(1));
  const rawLength = header.readUInt32BE(8);
  const wireBytes = HEADER_BYTES + payload.reduce((n, p) => n + p.length, 0);
  if (frameChecksum(payload) !== header.readBigUInt64BE(12))
    throw new ReseedError(
      'COPY_FAILED',
      'data channel: a frame failed its checksum (corrupted in transit or at the source)',
      {
        retryable: true,
      },
    );
  if (type === FRAME.DATA) {
    const raw = codec === 'none' ? payload : [decompress(codec, joined(payload), rawLength)];
    const length = raw.reduce((n, p) => n + p.length, 0);
    if (length !== rawLength)
      throw new ReseedError(
        'COPY_FAILED',
        `data channel: a frame decoded to ${length} bytes, not ${rawLength}`,
      );
    return frame(type, raw, rawLength, wireBytes);
  }
  if (type === FRAME.ZERO || type === FRAME.END || type === FRAME.ERROR)
    return frame(type, payload, rawLength, wireBytes);
  throw new ReseedError('COPY_FAILED', `data channel: unknown frame type ${type}`);
}
