import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TsvEncoder } from '../../src/methods/logical/tsv.js';

describe('LOAD DATA encoding', () => {
  it('escapes the four special bytes and writes NULL as \\N', () => {
    const e = new TsvEncoder(4);
    e.push([Buffer.from('a\tb\nc\\d\0e'), null, Buffer.from('NULL'), Buffer.from('\\N'), Buffer.alloc(0)]);
    e.push([Buffer.from('x')]);
    assert.equal(e.take().toString('latin1'), 'a\\tb\\nc\\\\d\\0e\t\\N\tNULL\t\\\\N\t\nx\n');
    assert.equal(e.rows, 2);
    assert.equal(e.length, 0);
  });

  it('passes every other byte through', () => {
    const all = Buffer.from(
      Array.from({ length: 256 }, (_, i) => i).filter((b) => ![0, 9, 10, 92].includes(b)),
    );
    const e = new TsvEncoder();
    e.push([all]);
    assert.deepEqual(e.take(), Buffer.concat([all, Buffer.from('\n')]));
  });
});
