import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BulkEncoder } from '../../src/methods/logical/bulk.js';
import { packet } from '../helpers/packets.js';

function encoder(parameters: number, ...rows: (Buffer | null)[][]): BulkEncoder {
  const e = new BulkEncoder(0x01020304, parameters, 8);
  for (const r of rows) {
    // Framed by unrelated bytes, as rows sit inside the driver's larger buffers.
    const body = packet(r);
    const framed = Buffer.concat([Buffer.from('xyz'), body, Buffer.from('!!')]);
    e.pushPacket(framed, 3, 3 + body.length, r.length);
  }
  return e;
}

/** 4 bytes for the protocol header, then COM_STMT_BULK_EXECUTE, the id, SEND_TYPES and types. */
function head(parameters: number): Buffer {
  const types = Array.from({ length: parameters }, () => [0xfc, 0]).flat();
  return Buffer.from([0, 0, 0, 0, 0xfa, 4, 3, 2, 1, 128, 0, ...types]);
}

describe('bulk INSERT encoding from row packets', () => {
  it('writes the command header, then each value behind an indicator byte (1 for NULL)', () => {
    const e = encoder(
      3,
      [Buffer.from('a\tb'), null, Buffer.alloc(0)],
      [Buffer.from('x'), Buffer.from('y'), null],
    );
    assert.equal(e.rows, 2);
    const out = e.take();
    const rows = Buffer.from([0, 3, 0x61, 9, 0x62, 1, 0, 0, 0, 1, 0x78, 0, 1, 0x79, 1]);
    assert.deepEqual(out, Buffer.concat([head(3), rows]));
    assert.equal(e.rows, 0, 'take() starts a fresh packet');
    assert.equal(e.length, 0);
  });

  it('keeps every length encoding (1, 3, 4 and 9 bytes) as it came', () => {
    for (const n of [250, 251, 70_000, 17_000_000]) {
      const v = Buffer.alloc(n, 0x41);
      const body = packet([v]);
      const out = encoder(1, [v]).take();
      assert.deepEqual(out.subarray(head(1).length + 1), body, `field of ${n} bytes`);
      assert.equal(out[head(1).length], 0);
    }
  });

  it('refuses a packet whose lengths do not add up', () => {
    const e = new BulkEncoder(1, 2);
    const body = packet([Buffer.from('abc'), Buffer.from('d')]);
    assert.throws(() => e.pushPacket(body, 0, body.length - 1, 2), /malformed row packet/);
    assert.throws(() => e.pushPacket(body, 0, body.length, 1), /malformed row packet/);
  });
});
