/** A text-protocol row packet body: each field length-encoded, NULL as 0xFB. */
export function packet(fields: (Buffer | null)[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    if (f === null) parts.push(Buffer.from([0xfb]));
    else if (f.length < 251) parts.push(Buffer.from([f.length]), f);
    else if (f.length < 1 << 16) parts.push(Buffer.from([0xfc, f.length & 0xff, f.length >> 8]), f);
    else if (f.length < 1 << 24)
      parts.push(Buffer.from([0xfd, f.length & 0xff, (f.length >> 8) & 0xff, f.length >> 16]), f);
    else {
      const len = Buffer.alloc(9);
      len[0] = 0xfe;
      len.writeUInt32LE(f.length, 1);
      parts.push(len, f);
    }
  }
  return Buffer.concat(parts);
}
