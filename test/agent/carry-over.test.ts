import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Transfers } from '../../src/agent/transfers.js';

// The copy method's second pass takes a file as unchanged since the first (and reads it on
// neither side) only when nothing can have written to it since: same inode, size, mtime and ctime,
// and last modified well before the first pass listed it. In process, on real files.

const dir = mkdtempSync(join(tmpdir(), 'reseed-carry-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Sends every segment of the transfer whole, as a receiver would ask, in 1 MiB segments; with
 * `skipSame`, not the files marked same (a receiver that holds them from the first pass).
 */
async function sendAll(
  transfers: Transfers,
  opened: { id: string; secret: string },
  skipSame = false,
): Promise<void> {
  const t = transfers.authorize(opened.id, `Bearer ${opened.secret}`);
  for (const [entry, e] of transfers.manifest(t).entries.entries()) {
    if (e.kind !== 'file' || (skipSame && e.same)) continue;
    for (let offset = 0; offset < Math.max(1, e.size); offset += 1 << 20) {
      const length = Math.min(1 << 20, e.size - offset);
      for await (const frame of transfers.segment(t, { entry, offset, length, from: 0, codec: 'none' }))
        void frame;
    }
  }
}

function sameNames(transfers: Transfers, opened: { id: string; secret: string }): string[] {
  const t = transfers.authorize(opened.id, `Bearer ${opened.secret}`);
  return transfers
    .manifest(t)
    .entries.filter((e) => e.same)
    .map((e) => e.name)
    .sort();
}

describe('the second pass of a copy: files unchanged since the first', () => {
  it('only files untouched since (and settled before) the first listing are marked same', async () => {
    const old = Date.now() / 1000 - 3600;
    const write = (name: string, bytes: Buffer, settled: boolean) => {
      writeFileSync(join(dir, name), bytes);
      if (settled) utimesSync(join(dir, name), old, old);
    };
    write('cold.ibd', Buffer.alloc(3 << 20, 7), true);
    write('rewritten.ibd', Buffer.alloc(1 << 20, 1), true);
    write('grown.ibd', Buffer.alloc(1 << 20, 2), true);
    write('recent.ibd', Buffer.alloc(1 << 20, 3), false);
    write('empty', Buffer.alloc(0), true);
    const transfers = new Transfers([dir], 60_000);
    try {
      const own = { skip: () => false };
      const first = transfers.open(dir, undefined, 60_000, own);
      await sendAll(transfers, first);
      // After the first pass read them: one file rewritten in place with its mtime put back
      // (only its ctime tells), one grown. recent.ibd was written just before the listing: a
      // write in the same tick of the clock would not have changed its mtime.
      const mtime = statSync(join(dir, 'rewritten.ibd')).mtime;
      writeFileSync(join(dir, 'rewritten.ibd'), Buffer.alloc(1 << 20, 9));
      utimesSync(join(dir, 'rewritten.ibd'), mtime, mtime);
      writeFileSync(join(dir, 'grown.ibd'), Buffer.alloc(2 << 20, 2));
      utimesSync(join(dir, 'grown.ibd'), old, old);
      const second = transfers.open(dir, undefined, 60_000, { ...own, previous: transfers.retire(first.id) });
      assert.deepEqual(sameNames(transfers, second), ['cold.ibd']);
      assert.equal(second.same, 1);
      // Its hashes were carried over: without reading it again, the tree hash is the one of a
      // pass that sends everything.
      await sendAll(transfers, second, true);
      const carried = transfers.treeHash(transfers.authorize(second.id, `Bearer ${second.secret}`));
      const third = transfers.open(dir, undefined, 60_000, own);
      await sendAll(transfers, third);
      assert.equal(carried, transfers.treeHash(transfers.authorize(third.id, `Bearer ${third.secret}`)));
    } finally {
      transfers.stop();
    }
  });

  it('a file the first pass did not send whole is not marked same', async () => {
    const old = Date.now() / 1000 - 3600;
    writeFileSync(join(dir, 'half.ibd'), Buffer.alloc(2 << 20, 5));
    utimesSync(join(dir, 'half.ibd'), old, old);
    const transfers = new Transfers([dir], 60_000);
    try {
      const own = { skip: (rel: string) => rel !== 'half.ibd' };
      const first = transfers.open(dir, undefined, 60_000, own);
      const t = transfers.authorize(first.id, `Bearer ${first.secret}`);
      // Only its first MiB was sent.
      for await (const frame of transfers.segment(t, {
        entry: 0,
        offset: 0,
        length: 1 << 20,
        from: 0,
        codec: 'none',
      }))
        void frame;
      const second = transfers.open(dir, undefined, 60_000, { ...own, previous: transfers.retire(first.id) });
      assert.deepEqual(sameNames(transfers, second), []);
    } finally {
      transfers.stop();
    }
  });
});
