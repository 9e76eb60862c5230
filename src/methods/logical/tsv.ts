import type { RawRow } from '../../mysql/server.js';

const TAB = 0x09;
const NL = 0x0a;
const BACKSLASH = 0x5c;
const NUL = 0x00;
const ZERO = 0x30;
const N = 0x4e;
const T = 0x74;
const LOWER_N = 0x6e;

/**
 * Encodes raw rows as LOAD DATA text: fields separated by TAB, rows ended by LF, escape "\",
 * NULL as \N. Bytes pass through untouched otherwise (the load uses CHARACTER SET binary), so
 * any value, text 'NULL' or '\N' included, loads back exactly.
 */
export class TsvEncoder {
  #buf: Buffer;
  #pos = 0;
  rows = 0;

  constructor(initial = 1 << 20) {
    this.#buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.#pos;
  }

  push(row: RawRow): void {
    let need = 1;
    for (const v of row) need += v === null ? 3 : v.length * 2 + 1;
    this.#reserve(need);
    const buf = this.#buf;
    let pos = this.#pos;
    for (let i = 0; i < row.length; i++) {
      if (i > 0) buf[pos++] = TAB;
      const v = row[i];
      if (v === null || v === undefined) {
        buf[pos++] = BACKSLASH;
        buf[pos++] = N;
        continue;
      }
      for (let j = 0; j < v.length; j++) {
        const b = v[j]!;
        if (b === BACKSLASH || b === TAB || b === NL || b === NUL) {
          buf[pos++] = BACKSLASH;
          buf[pos++] = b === TAB ? T : b === NL ? LOWER_N : b === NUL ? ZERO : BACKSLASH;
        } else buf[pos++] = b;
      }
    }
    buf[pos++] = NL;
    this.#pos = pos;
    this.rows++;
  }

  /** The encoded bytes so far (a copy), and a reset. */
  take(): Buffer {
    const out = Buffer.from(this.#buf.subarray(0, this.#pos));
    this.#pos = 0;
    return out;
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#pos + n));
    this.#buf.copy(next, 0, 0, this.#pos);
    this.#buf = next;
  }
}
