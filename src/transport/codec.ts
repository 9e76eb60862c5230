import lz4 from 'lz4-napi';
import { createRequire } from 'node:module';
import type * as ZstdModule from 'zstd-napi';
import { ReseedError } from '../errors.js';

/** How a DATA frame's payload is compressed. */
export type Codec = 'none' | 'lz4' | 'zstd';
export const CODECS: readonly Codec[] = ['none', 'lz4', 'zstd'];

const BY_ID: Record<number, Codec> = { 0: 'none', 1: 'lz4', 2: 'zstd' };

export function codecById(id: number): Codec {
  const c = BY_ID[id];
  if (!c) throw new ReseedError('COPY_FAILED', `data channel: unknown codec ${id}`);
  return c;
}

type Zstd = typeof ZstdModule;
let zstdModule: Zstd | null | undefined;

/**
 * zstd-napi is an optional dependency (it is built from source by node-gyp at install): where it
 * did not build, zstd is unavailable and said so, and `auto` falls back to lz4.
 */
export function zstdAvailable(): boolean {
  if (zstdModule === undefined) {
    try {
      zstdModule = createRequire(import.meta.url)('zstd-napi') as Zstd;
    } catch {
      zstdModule = null;
    }
  }
  return zstdModule !== null;
}

function zstd(): Zstd {
  if (!zstdAvailable())
    throw new ReseedError(
      'USAGE',
      'zstd is not available on this host (the optional zstd-napi package did not build): use --compress lz4',
    );
  return zstdModule!;
}

let zstdCompressor: InstanceType<Zstd['Compressor']> | undefined;
let zstdDecompressor: InstanceType<Zstd['Decompressor']> | undefined;

/**
 * The payload to send for `raw`: compressed, or `raw` itself when compression does not make it
 * smaller (random or already compressed data), so incompressible data costs nothing on the wire.
 * zstd at level 1: the channel compresses to save link time, and level 1 keeps up with a fast link.
 */
export function compress(codec: Codec, raw: Buffer): { codec: Codec; payload: Buffer } {
  if (codec === 'none') return { codec, payload: raw };
  let out: Buffer;
  if (codec === 'lz4') out = lz4.compressSync(raw);
  else {
    if (!zstdCompressor) {
      zstdCompressor = new (zstd().Compressor)();
      zstdCompressor.setParameters({ compressionLevel: 1 });
    }
    out = zstdCompressor.compress(raw);
  }
  return out.length < raw.length ? { codec, payload: out } : { codec: 'none', payload: raw };
}

export function decompress(codec: Codec, payload: Buffer, rawLength: number): Buffer {
  try {
    if (codec === 'lz4') return lz4.uncompressSync(payload);
    zstdDecompressor ??= new (zstd().Decompressor)();
    return zstdDecompressor.decompress(payload);
  } catch (err) {
    throw new ReseedError(
      'COPY_FAILED',
      `data channel: a ${codec} frame (${rawLength} bytes) could not be decompressed`,
      {
        cause: err,
      },
    );
  }
}
