import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { ReseedError } from '../errors.js';
import { faultPoint } from '../fault.js';
import { HOST_STATE_LABEL } from '../clone/undo.js';
import { captureHostState } from '../host/host-state.js';
import { hostUndo } from '../host/host-undo.js';
import type { Journal } from '../journal/journal.js';
import type { Codec } from '../transport/codec.js';
import { receiveTreeInThread } from '../transport/receive-thread.js';
import type { ReceiveReport } from '../transport/receive.js';
import type { AgentClient } from './client.js';
import type { JobContext } from './runner.js';
import { within } from './transfers.js';

export const transferRequestSchema = z
  .object({
    kind: z.literal('transfer'),
    /** the peer agent that serves the tree, by its name in this agent's `peers` */
    from: z.string().min(1),
    /** the directory on the peer's host */
    path: z.string().min(1),
    /** the directory to make on this host, under one of its `receive` directories; must not exist */
    dest: z.string().min(1),
    parallel: z.number().int().min(1).max(64).default(4),
    compress: z.enum(['none', 'lz4', 'zstd', 'auto']).default('none'),
    /** bytes/s the donor's reads may not exceed */
    maxRate: z.number().positive().optional(),
    resumeTimeoutMs: z.number().int().min(1000).max(86_400_000).default(60_000),
    /** delta mode: an older copy of the tree on this host, read (never written) for equal blocks */
    base: z.string().min(1).optional(),
  })
  .strict();
export type TransferRequest = z.infer<typeof transferRequestSchema>;

/**
 * A transfer job on the receiving agent: makes `dest` (journaled: removed again, only if it still
 * holds the job's marker, on failure, cancel, or at the next start after a crash), asks the peer
 * to open the transfer, pulls the tree, closes the transfer, and commits.
 */
export async function runTransfer(
  ctx: JobContext,
  req: TransferRequest,
  peer: AgentClient,
  receiveRoots: string[],
  datadir?: string,
): Promise<ReceiveReport> {
  const { journal, signal } = ctx;
  const dest = resolve(req.dest);
  if (!isAbsolute(req.dest)) throw new ReseedError('USAGE', `dest must be an absolute path, not ${req.dest}`);
  if (existsSync(dest))
    throw new ReseedError(
      'USAGE',
      `${dest} exists: a transfer makes its destination and never writes over anything`,
    );
  if (!existsSync(dirname(dest)))
    throw new ReseedError(
      'USAGE',
      `${dirname(dest)} does not exist on this host: the destination's parent must exist`,
    );
  // Files written into a datadir appear to its mysqld (a stray schema directory, at best): a
  // transfer never writes there. A clone method swaps a datadir whole, beside it.
  if (datadir && within(dirname(dest), [datadir]))
    throw new ReseedError(
      'USAGE',
      `${dest} is inside this host's datadir ${datadir}: a transfer never writes into a datadir (choose a directory beside it)`,
    );
  if (!within(dirname(dest), receiveRoots))
    throw new ReseedError(
      'USAGE',
      `${dest} is not under a directory this agent receives into (receive: ${receiveRoots.join(', ') || 'none'})`,
    );
  if (existsSync(dest))
    throw new ReseedError(
      'USAGE',
      `${dest} exists: a transfer makes its destination and never writes over anything`,
    );
  const base = req.base === undefined ? undefined : resolve(req.base);
  if (base !== undefined) {
    if (!isAbsolute(req.base!))
      throw new ReseedError('USAGE', `--base must be an absolute path, not ${req.base}`);
    if (!existsSync(base) || !statSync(base).isDirectory())
      throw new ReseedError('USAGE', `--base ${base} is not a directory on this host`);
    if (!within(base, [...receiveRoots, ...(datadir ? [datadir] : [])]))
      throw new ReseedError(
        'USAGE',
        `--base ${base} is not under a directory this agent receives into (receive: ${receiveRoots.join(', ') || 'none'}) nor its datadir`,
      );
  }
  const marker = `.reseed-made-${journal.header.id}`;
  ctx.setState('preflight');
  const opened = await peer.call<{ id: string; secret: string; files: number; bytes: number }>(
    'POST',
    '/v1/transfers',
    { path: req.path, maxRate: req.maxRate, idleTimeoutMs: req.resumeTimeoutMs },
    signal,
  );
  try {
    journal.keepState(HOST_STATE_LABEL, { joiner: await captureHostState({ paths: [dest] }) });
    await makeDest(journal, dest, marker);
    ctx.setState('copying');
    ctx.emit({ type: 'plan', files: opened.files, bytes: opened.bytes });
    let last = 0;
    const report = await receiveTreeInThread({
      source: { url: peer.address.url, transfer: opened.id, secret: opened.secret, tls: peer.address },
      dest,
      marker,
      parallel: req.parallel,
      codec: req.compress as Codec | 'auto',
      resumeTimeoutMs: req.resumeTimeoutMs,
      base,
      signal,
      onProgress: (p) => {
        if (Date.now() - last < 250 && p.segmentsDone < p.segments) return;
        last = Date.now();
        ctx.emit({ type: 'progress', phase: 'copy', ...p });
        faultPoint('transfer-progress');
      },
    });
    return report;
  } finally {
    await peer.call('DELETE', `/v1/transfers/${opened.id}`).catch(() => undefined);
  }
}

async function makeDest(journal: Journal, dest: string, marker: string): Promise<void> {
  await journal.apply(
    `make ${dest}`,
    hostUndo('joiner', { kind: 'remove-made-directory', path: dest, marker }),
    () => {
      mkdirSync(dest, { mode: 0o700 });
      writeFileSync(join(dest, marker), `made by reseed, journal ${journal.header.id}\n`);
      return Promise.resolve();
    },
  );
}
