/**
 * Length-encoded values of the MySQL text protocol, as row packets carry them: a first byte
 * below 0xFB is the length itself; 0xFC, 0xFD and 0xFE are followed by a 2-, 3- or 8-byte length;
 * 0xFB alone is NULL.
 */
export const NULL_VALUE = 0xfb;

/** Bytes the length takes, from the value's first byte (not NULL_VALUE). */
export function lengthSize(first: number): number {
  return first < 0xfb ? 1 : first === 0xfc ? 3 : first === 0xfd ? 4 : 9;
}

/** The value's length (or a length-encoded integer's value), from its first byte at `p`. */
export function valueLength(buf: Buffer, p: number): number {
  const first = buf[p]!;
  if (first < 0xfb) return first;
  if (first === 0xfc) return buf[p + 1]! | (buf[p + 2]! << 8);
  if (first === 0xfd) return buf[p + 1]! | (buf[p + 2]! << 8) | (buf[p + 3]! << 16);
  return buf.readUInt32LE(p + 1) + buf.readUInt32LE(p + 5) * 2 ** 32;
}
