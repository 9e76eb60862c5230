import { ReseedError } from '../../errors.js';
import { NULL_VALUE, lengthSize, valueLength } from '../../mysql/wire.js';

const TAB = 0x09;
const NL = 0x0a;
const BACKSLASH = 0x5c;
const NUL = 0x00;
const ZERO = 0x30;
const N = 0x4e;
const T = 0x74;
const LOWER_N = 0x6e;

/** For each byte: 0 when it passes as it is, else the letter that follows the backslash. */
const ESCAPE = new Uint8Array(256);
ESCAPE[BACKSLASH] = BACKSLASH;
ESCAPE[TAB] = T;
ESCAPE[NL] = LOWER_N;
ESCAPE[NUL] = ZERO;

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

  /**
   * Encodes one text-protocol row packet as it came off the wire: `columns` length-encoded
   * strings (0xFB for NULL) from `start` to `end` of `buf`. No JavaScript value is made per field.
   */
  pushPacket(buf: Buffer, start: number, end: number, columns: number): void {
    this.#reserve((end - start) * 2 + columns * 3 + 1);
    const out = this.#buf;
    let o = this.#pos;
    let p = start;
    for (let c = 0; c < columns; c++) {
      if (c > 0) out[o++] = TAB;
      const first = buf[p]!;
      if (first === NULL_VALUE) {
        out[o++] = BACKSLASH;
        out[o++] = N;
        p++;
        continue;
      }
      const len = valueLength(buf, p);
      p += lengthSize(first);
      const stop = p + len;
      if (stop > end) throw new ReseedError('COPY_FAILED', 'malformed row packet from the donor');
      for (; p < stop; p++) {
        const b = buf[p]!;
        const e = ESCAPE[b]!;
        if (e === 0) out[o++] = b;
        else {
          out[o++] = BACKSLASH;
          out[o++] = e;
        }
      }
    }
    out[o++] = NL;
    this.#pos = o;
    this.rows++;
  }

  /** The encoded bytes so far, handed over (no copy); the encoder starts afresh. */
  take(): Buffer {
    const out = this.#buf.subarray(0, this.#pos);
    this.#buf = Buffer.allocUnsafe(this.#buf.length);
    this.#pos = 0;
    this.rows = 0;
    return out;
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#pos + n));
    this.#buf.copy(next, 0, 0, this.#pos);
    this.#buf = next;
  }
}
