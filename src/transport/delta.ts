import { open } from 'node:fs/promises';
import { ReseedError } from '../errors.js';
import { SegmentDigest } from './digest.js';

/** Delta mode's unit: a changed 16 KiB InnoDB page costs at most this much on the wire. */
export const DELTA_BLOCK = 64 * 1024;
/** Differing blocks next to each other are asked for together, up to this much per request. */
const MAX_RUN = 16 << 20;
const READ = 4 << 20;

/**
 * The digest of each `block` bytes of [offset, offset + length) of a file, and of the whole range
 * (the same digest the data channel's END frame carries, so a range proven equal here counts as
 * sent). A file shorter than the range changed while it was read: that is an error.
 */
export async function blockSums(
  path: Buffer | string,
  offset: number,
  length: number,
  block: number,
  /** a base file may be shorter: its blocks end where it does (the last one may be partial) */
  short = false,
): Promise<{ digest: string; blocks: string[] }> {
  if (!(block > 0) || READ % block !== 0)
    throw new ReseedError('USAGE', `a delta block of ${block} bytes does not divide ${READ}`);
  const whole = new SegmentDigest();
  const blocks: string[] = [];
  const file = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(Math.min(READ, Math.max(block, length)));
    for (let done = 0; done < length;) {
      const want = Math.min(buf.length, length - done);
      const { bytesRead } = await file.read(buf, 0, want, offset + done);
      if (bytesRead < want && short) {
        const chunk = buf.subarray(0, bytesRead);
        for (let b = 0; b < chunk.length; b += block)
          blocks.push(new SegmentDigest().update(chunk.subarray(b, b + block)).digest());
        break;
      }
      if (bytesRead < want)
        throw new ReseedError(
          'COPY_FAILED',
          `${path.toString()} is shorter than when the transfer began (it changed)`,
        );
      const chunk = buf.subarray(0, bytesRead);
      whole.update(chunk);
      for (let b = 0; b < chunk.length; b += block)
        blocks.push(new SegmentDigest().update(chunk.subarray(b, b + block)).digest());
      done += bytesRead;
    }
  } finally {
    await file.close();
  }
  return { digest: whole.digest(), blocks };
}

/**
 * The ranges to fetch: runs of blocks whose digests differ (or that one side lacks), adjacent
 * ones merged up to 16 MiB, within [offset, offset + length).
 */
export function differingRuns(
  mine: string[],
  theirs: string[],
  offset: number,
  length: number,
  block: number,
): { offset: number; length: number }[] {
  const runs: { offset: number; length: number }[] = [];
  for (let i = 0; i < theirs.length; i++) {
    if (mine[i] === theirs[i]) continue;
    const start = offset + i * block;
    const len = Math.min(block, offset + length - start);
    const last = runs[runs.length - 1];
    if (last && last.offset + last.length === start && last.length + len <= MAX_RUN) last.length += len;
    else runs.push({ offset: start, length: len });
  }
  return runs;
}

/** The complement of `runs` within [offset, offset + length): what a base already holds. */
export function equalRuns(
  runs: { offset: number; length: number }[],
  offset: number,
  length: number,
): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  let at = offset;
  for (const r of runs) {
    if (r.offset > at) out.push({ offset: at, length: r.offset - at });
    at = r.offset + r.length;
  }
  if (at < offset + length) out.push({ offset: at, length: offset + length - at });
  return out;
}
