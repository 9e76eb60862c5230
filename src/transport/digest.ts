import xxhash from '@node-rs/xxhash';

const { Xxh3 } = xxhash.xxh3;
const SEED_B = 0x9e3779b97f4a7c15n;

/**
 * The data channel's checksums: XXH3, streamed (14 GB/s here, against 0.65 GB/s for SHA-256 in
 * the same pipeline, where hashing was half of each agent's CPU). Not cryptographic, and it need
 * not be: TLS authenticates every byte against tampering; these catch accidental damage (a bad
 * read, a codec bug, a file changing under the sender).
 */
export function frameChecksum(payload: Uint8Array | readonly Uint8Array[]): bigint {
  if (!Array.isArray(payload))
    return Xxh3.withSeed()
      .update(payload as Uint8Array)
      .digest();
  const h = Xxh3.withSeed();
  for (const p of payload) h.update(p);
  return h.digest();
}

/** A segment's digest: XXH3-64 twice, with two seeds, 128 bits, as 32 hex characters. */
export class SegmentDigest {
  #a = Xxh3.withSeed();
  #b = Xxh3.withSeed(SEED_B);

  update(bytes: Uint8Array): this {
    this.#a.update(bytes);
    this.#b.update(bytes);
    return this;
  }

  digest(): string {
    return this.#a.digest().toString(16).padStart(16, '0') + this.#b.digest().toString(16).padStart(16, '0');
  }
}
