import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TsvEncoder } from '../../src/methods/logical/tsv.js';
import { packet } from '../helpers/packets.js';

function encode(...rows: (Buffer | null)[][]): Buffer {
  const e = new TsvEncoder(4);
  for (const r of rows) {
    // Framed by unrelated bytes, as rows sit inside the driver's larger buffers.
    const body = packet(r);
    const framed = Buffer.concat([Buffer.from('xyz'), body, Buffer.from('!!')]);
    e.pushPacket(framed, 3, 3 + body.length, r.length);
  }
  assert.equal(e.rows, rows.length);
  return e.take();
}

describe('LOAD DATA encoding from row packets', () => {
  it('escapes the four special bytes and writes NULL as \\N', () => {
    const out = encode(
      [Buffer.from('a\tb\nc\\d\0e'), null, Buffer.from('NULL'), Buffer.from('\\N'), Buffer.alloc(0)],
      [Buffer.from('x')],
    );
    assert.equal(out.toString('latin1'), 'a\\tb\\nc\\\\d\\0e\t\\N\tNULL\t\\\\N\t\nx\n');
  });

  it('passes every other byte through', () => {
    const all = Buffer.from(
      Array.from({ length: 256 }, (_, i) => i).filter((b) => ![0, 9, 10, 92].includes(b)),
    );
    assert.deepEqual(encode([all]), Buffer.concat([all, Buffer.from('\n')]));
  });

  it('reads every length encoding (1, 3, 4 and 9 bytes)', () => {
    for (const n of [250, 251, 70_000, 17_000_000]) {
      const v = Buffer.alloc(n, 0x41);
      const out = encode([v, Buffer.from('z')]);
      assert.equal(out.length, n + 3, `field of ${n} bytes`);
      assert.equal(out.subarray(n).toString(), '\tz\n');
    }
  });

  it('refuses a packet whose field runs past its end', () => {
    const e = new TsvEncoder();
    assert.throws(() => e.pushPacket(Buffer.from([5, 0x41, 0x42]), 0, 3, 1), /malformed row packet/);
  });
});
