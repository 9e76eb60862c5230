import { ReseedError } from '../../errors.js';
import { NULL_VALUE, lengthSize, valueLength } from '../../mysql/wire.js';

const COM_STMT_BULK_EXECUTE = 0xfa;
const SEND_TYPES_TO_SERVER = 128;
/** Parameters go as BLOBs: the server takes their bytes as they are, with no charset conversion. */
const MYSQL_TYPE_BLOB = 0xfc;
const INDICATOR_NONE = 0;
const INDICATOR_NULL = 1;
/** Values shorter than this are copied byte by byte (Buffer.copy costs more for a few bytes). */
const SHORT = 24;

/**
 * Encodes rows as MariaDB COM_STMT_BULK_EXECUTE packets for a prepared INSERT with one `?` per
 * column: the server binds each row's values and inserts them with no SQL text or LOAD DATA
 * field to parse (MariaDB 10.2.7 and later). A text-protocol row packet becomes a bulk row almost
 * as it is: each value keeps its length-encoded form, preceded by an indicator byte, and NULL
 * (0xFB on the wire) becomes the NULL indicator.
 *
 * Packets carry 4 bytes reserved in front for the protocol header, filled in when sent.
 */
export class BulkEncoder {
  readonly #head: Buffer;
  #buf: Buffer;
  #pos: number;
  /** buffers of packets the server has answered, for the next packets */
  readonly #free: Buffer[] = [];
  rows = 0;

  constructor(statementId: number, parameters: number, initial = 1 << 20) {
    const head = Buffer.alloc(4 + 1 + 4 + 2 + parameters * 2);
    head[4] = COM_STMT_BULK_EXECUTE;
    head.writeUInt32LE(statementId, 5);
    head.writeUInt16LE(SEND_TYPES_TO_SERVER, 9);
    for (let i = 0; i < parameters; i++) head[11 + i * 2] = MYSQL_TYPE_BLOB;
    this.#head = head;
    this.#buf = Buffer.allocUnsafe(Math.max(initial, head.length * 2));
    head.copy(this.#buf);
    this.#pos = head.length;
  }

  /** bytes of row data in the packet so far */
  get length(): number {
    return this.#pos - this.#head.length;
  }

  /**
   * Adds one text-protocol row packet as it came off the wire: `columns` length-encoded strings
   * (0xFB for NULL) from `start` to `end` of `buf`.
   */
  pushPacket(buf: Buffer, start: number, end: number, columns: number): void {
    this.#reserve(end - start + columns);
    const out = this.#buf;
    let o = this.#pos;
    let p = start;
    for (let c = 0; c < columns; c++) {
      const first = buf[p]!;
      if (first === NULL_VALUE) {
        out[o++] = INDICATOR_NULL;
        p++;
        continue;
      }
      out[o++] = INDICATOR_NONE;
      // The value goes as it came, its length included.
      const size = lengthSize(first) + valueLength(buf, p);
      const stop = p + size;
      if (stop > end) throw new ReseedError('COPY_FAILED', 'malformed row packet from the donor');
      if (size < SHORT) for (; p < stop;) out[o++] = buf[p++]!;
      else {
        buf.copy(out, o, p, stop);
        o += size;
        p = stop;
      }
    }
    if (p !== end) throw new ReseedError('COPY_FAILED', 'malformed row packet from the donor');
    this.#pos = o;
    this.rows++;
  }

  /**
   * The packet so far, handed over (no copy); the encoder starts a fresh one. Give the packet back
   * with release() once it is sent, and its memory is used again.
   */
  take(): Buffer {
    const out = this.#buf.subarray(0, this.#pos);
    const size = this.#buf.length;
    this.#buf = this.#free.pop() ?? Buffer.allocUnsafe(size);
    this.#head.copy(this.#buf);
    this.#pos = this.#head.length;
    this.rows = 0;
    return out;
  }

  release(packet: Buffer): void {
    // Only whole, unpooled buffers of the current size (small ones share Node's 8 KB pool).
    const size = this.#buf.length;
    if (packet.byteOffset !== 0 || packet.buffer.byteLength !== size || size <= 8192) return;
    if (this.#free.length < 4) this.#free.push(Buffer.from(packet.buffer, 0, size));
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#pos + n));
    this.#buf.copy(next, 0, 0, this.#pos);
    this.#buf = next;
  }
}
