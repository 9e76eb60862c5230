import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { compress, zstdAvailable } from '../../src/transport/codec.js';

/** zstd-napi is optional (built at install): where it did not build, lz4 stands in. */
const Z = zstdAvailable() ? 'zstd' : 'lz4';
import { FRAME, FrameDecoder, encodeFrame } from '../../src/transport/frame.js';
import type { Frame } from '../../src/transport/frame.js';
import { chooseCodec } from '../../src/transport/receive.js';
import { FramePool } from '../../src/transport/frame-pool.js';
import { SegmentDigest } from '../../src/transport/digest.js';
import { streamFrames } from '../../src/transport/stream.js';

async function decode(chunks: Buffer[]): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of Readable.from(chunks).pipe(new FrameDecoder())) out.push(f as Frame);
  return out;
}

const text = Buffer.from('a row of ordinary text, repeated\n'.repeat(5000));

test('frames decode whatever the chunking, compressed or not, zero runs and empty payloads included', async () => {
  const z = compress(Z, text);
  const l = compress('lz4', text);
  const wire = Buffer.concat([
    encodeFrame(FRAME.DATA, text, text.length),
    encodeFrame(FRAME.ZERO, Buffer.alloc(0), 1 << 20),
    encodeFrame(FRAME.DATA, z.payload, text.length, z.codec),
    encodeFrame(FRAME.DATA, l.payload, text.length, l.codec),
    encodeFrame(FRAME.END, Buffer.alloc(32, 9), 0),
  ]);
  for (const size of [1, 7, 16, 4096, wire.length]) {
    const chunks: Buffer[] = [];
    for (let o = 0; o < wire.length; o += size) chunks.push(wire.subarray(o, o + size));
    const frames = await decode(chunks);
    assert.deepEqual(
      frames.map((f) => f.type),
      [FRAME.DATA, FRAME.ZERO, FRAME.DATA, FRAME.DATA, FRAME.END],
    );
    for (const i of [0, 2, 3]) assert.ok(frames[i]!.payload.equals(text), `frame ${i} at chunk size ${size}`);
    assert.equal(frames[1]!.rawLength, 1 << 20);
  }
  assert.ok(z.payload.length < text.length / 10 && l.payload.length < text.length / 5);
});

test('a changed byte fails the frame checksum; a stream cut inside a frame is an error, not an end', async () => {
  const frame = encodeFrame(FRAME.DATA, text, text.length);
  const bad = Buffer.from(frame);
  bad[100] = bad[100]! ^ 1;
  await assert.rejects(decode([bad]), /failed its checksum/);
  await assert.rejects(decode([frame.subarray(0, frame.length - 1)]), /ended inside a frame/);
  const lying = encodeFrame(FRAME.DATA, compress(Z, text).payload, text.length - 1, Z);
  await assert.rejects(decode([lying]), /decoded to \d+ bytes, not/);
});

test('incompressible data is sent as it is', () => {
  const random = Buffer.from(Array.from({ length: 65536 }, () => Math.floor(Math.random() * 256)));
  assert.equal(compress(Z, random).codec, 'none');
  assert.equal(compress('lz4', random).codec, 'none');
});

test('auto compression: zstd on a slow link, lz4 on a middling one, none on a fast one', () => {
  assert.equal(chooseCodec(12.5e6, true), 'zstd');
  assert.equal(chooseCodec(12.5e6, false), 'lz4');
  assert.equal(chooseCodec(200e6, true), 'lz4');
  assert.equal(chooseCodec(1e9, true), 'none');
});

test('the frame pool gives a buffer back only when its producer let it go and every write of it ended', () => {
  const pool = new FramePool(4);
  const buf = pool.take();
  const first = pool.writing(buf.subarray(0, 10))!;
  const second = pool.writing(buf.subarray(10, 20))!;
  assert.equal(pool.writing(Buffer.alloc(4)), undefined, 'a buffer of nobody’s pool is not tracked');
  first();
  pool.drop(buf);
  assert.equal(pool.free, 0, 'a write of it is still under way');
  second();
  assert.equal(pool.free, 1);
  const again = pool.take();
  assert.equal(again.buffer, buf.buffer, 'the same memory, used again');
  pool.drop(again);
  assert.equal(pool.free, 1);
  // One held while written past the pool's size is simply left to the collector.
  const many = Array.from({ length: 6 }, () => pool.take());
  for (const b of many) pool.drop(b);
  assert.equal(pool.free, 4);
});

test('a stream framed from chunks of any size arrives whole: data, zero runs and the digest of every byte', async () => {
  const parts = [
    Buffer.alloc(70_000, 7),
    Buffer.alloc(3 << 20),
    text,
    Buffer.alloc(1, 1),
    Buffer.alloc((1 << 20) + 5, 9),
  ];
  const all = Buffer.concat(parts);
  for (const size of [1000, 65_536, 1 << 20, all.length]) {
    const input = (async function* () {
      for (let o = 0; o < all.length; o += size) yield Buffer.from(all.subarray(o, o + size));
    })();
    const wire: Buffer[] = [];
    // Copied as they come: the frames' buffers belong to the pool and are used again.
    for await (const f of streamFrames(input, 'none')) wire.push(Buffer.from(f));
    const frames = await decode(wire);
    const out = Buffer.concat(
      frames.flatMap((f) =>
        f.type === FRAME.DATA ? f.parts : f.type === FRAME.ZERO ? [Buffer.alloc(f.rawLength)] : [],
      ),
    );
    assert.ok(out.equals(all), `chunks of ${size}`);
    assert.ok(
      frames.some((f) => f.type === FRAME.ZERO),
      'the zero run is a ZERO frame',
    );
    assert.equal(frames.at(-1)!.type, FRAME.END);
    assert.equal(frames.at(-1)!.payload.toString(), new SegmentDigest().update(all).digest());
  }
});
