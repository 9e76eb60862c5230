import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnStreamed } from '../../src/exec/stream.js';

/** Running, not a zombie waiting for a parent that is gone to be reaped. */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

test('stdout is a stream: 512 MiB pass through with bounded memory, byte for byte', async () => {
  const child = spawnStreamed('sh', ['-c', 'head -c 536870912 /dev/zero']);
  const hash = createHash('sha256');
  let bytes = 0;
  let peakRss = 0;
  await pipeline(
    child.stdout!,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        hash.update(chunk);
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        cb();
      },
    }),
  );
  await child.done;
  assert.equal(bytes, 536870912);
  const expected = createHash('sha256').update(Buffer.alloc(536870912)).digest('hex');
  assert.equal(hash.digest('hex'), expected);
  // Nothing was collected: the process never held the half gigabyte it passed on.
  assert.ok(peakRss < 400 * 1024 * 1024, `rss peaked at ${peakRss}`);
});

test('the first bytes arrive while the child still runs', async () => {
  const child = spawnStreamed('sh', ['-c', 'echo first; sleep 30; echo never']);
  const first = await new Promise<string>((resolve) =>
    child.stdout!.once('data', (d: Buffer) => resolve(String(d))),
  );
  assert.equal(first, 'first\n');
  child.kill();
  await assert.rejects(child.done, /sh failed \(SIGTERM\)/);
});

test('a flood on stderr never blocks the child, and a failure quotes its last lines', async () => {
  const seen: string[] = [];
  const child = spawnStreamed(
    'sh',
    [
      '-c',
      'i=0; while [ $i -lt 20000 ]; do echo "progress line $i" >&2; i=$((i+1)); done; echo "[ERROR] disk full" >&2; exit 3',
    ],
    { onStderrLine: (l) => seen.push(l), stdout: 'ignore' },
  );
  await assert.rejects(child.done, (err: Error & { code?: string }) => {
    assert.equal(err.code, 'EXEC_FAILED');
    assert.match(err.message, /sh failed \(exit 3\)/);
    assert.match(err.message, /progress line 19999\n\[ERROR\] disk full$/);
    assert.doesNotMatch(err.message, /progress line 19990\n/);
    return true;
  });
  assert.equal(seen.length, 20001);
});

test('an abort stops the child and everything it started, and says it was an abort', async () => {
  const ac = new AbortController();
  const child = spawnStreamed('sh', ['-c', 'sleep 60 & echo $!; wait'], { signal: ac.signal });
  const grandchild = await new Promise<number>((resolve) =>
    child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))),
  );
  assert.ok(alive(grandchild));
  ac.abort();
  await assert.rejects(child.done, (err: Error & { code?: string }) => err.code === 'ABORTED');
  for (let i = 0; i < 50 && alive(grandchild); i++) await sleep(20);
  assert.ok(!alive(grandchild), 'the child of the child was left running');
});

test('a child that ignores SIGTERM is killed after the grace period', async () => {
  const ac = new AbortController();
  const child = spawnStreamed('sh', ['-c', "trap '' TERM; echo ready; while :; do sleep 0.1; done"], {
    signal: ac.signal,
    killGraceMs: 300,
  });
  await new Promise((resolve) => child.stdout!.once('data', resolve));
  const t = Date.now();
  ac.abort();
  await assert.rejects(child.done, /interrupted/);
  assert.ok(Date.now() - t < 5000);
  assert.ok(!alive(child.pid));
});

test('a program that does not exist is an EXEC_FAILED error naming it', async () => {
  const child = spawnStreamed('reseed-no-such-program', []);
  await assert.rejects(child.done, /could not run reseed-no-such-program: .*ENOENT/);
});

test('an already aborted signal starts nothing', () => {
  const ac = new AbortController();
  ac.abort();
  assert.throws(() => spawnStreamed('sh', ['-c', 'exit 0'], { signal: ac.signal }), /interrupted/);
});
