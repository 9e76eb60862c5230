import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { otherSessions, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import type { Server } from '../../src/mysql/server.js';

let donor: TestServer;
let joiner: TestServer;

function clone(...extra: string[]) {
  return reseed(cloneArgs(extra));
}

function cloneArgs(extra: string[]): string[] {
  return [
    'clone',
    '--from',
    donor.uri,
    '--to',
    joiner.uri,
    '--no-replicate',
    '--writable',
    '--force',
    '--json',
    ...extra,
  ];
}

function summaryOf(stdout: string): Record<string, unknown> {
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

/** A client whose long-running UPDATE keeps FLUSH TABLES WITH READ LOCK waiting. */
async function longUpdate(): Promise<{ session: Server; done: Promise<unknown> }> {
  const session = await donor.session();
  const done = session
    .query('UPDATE app.t SET id = id WHERE id = 1 AND SLEEP(30) = 0')
    .catch(() => undefined);
  await new Promise((r) => setTimeout(r, 300));
  return { session, done };
}

describe('the donor read lock', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('lock-donor'), startServer('lock-joiner')]);
    await donor.sql('CREATE DATABASE app');
    await donor.sql('CREATE TABLE app.t (id INT PRIMARY KEY)');
    await donor.sql('INSERT INTO app.t VALUES (1), (2), (3)');
    await donor.sql('CREATE TABLE app.u (id INT PRIMARY KEY)');
  });
  after(stopAll);

  it('is measured and reported when asked for (backup-stage and ftwrl)', async () => {
    for (const mode of ['backup-stage', 'ftwrl']) {
      const r = await clone('--lock-mode', mode);
      assert.equal(r.code, 0, r.stderr);
      const s = summaryOf(r.stdout);
      assert.equal(s.lockMode, mode);
      assert.ok(typeof s.lockHeldMs === 'number' && s.lockHeldMs >= 0 && s.lockHeldMs < 5000);
    }
  });

  it('BACKUP STAGE is not held up by a long-running write (FLUSH TABLES WITH READ LOCK would be)', async () => {
    const blocker = await longUpdate();
    try {
      const r = await clone('--lock-mode', 'backup-stage', '--lock-wait-timeout', '2s', '--long-query', '1h');
      assert.equal(r.code, 0, r.stderr);
    } finally {
      blocker.session.destroy();
      await blocker.done;
    }
  });

  it("kills its own blocked FLUSH after --lock-wait-timeout, so the donor's writers are not stalled", async () => {
    const blocker = await longUpdate();
    try {
      const started = Date.now();
      const clonePromise = clone('--lock-mode', 'ftwrl', '--lock-wait-timeout', '1s', '--long-query', '1s');
      // Meanwhile a writer is never stuck behind our FLUSH for long.
      await new Promise((r) => setTimeout(r, 1500));
      const w = Date.now();
      await donor.sql('INSERT INTO app.u VALUES (100)');
      assert.ok(Date.now() - w < 1500, 'a write went through while the clone was retrying');
      const r = await clonePromise;
      assert.equal(r.code, 5, r.stderr);
      assert.match(
        r.stderr,
        /could not take the donor's read lock \(ftwrl\) within 1000 ms in 3 attempts \(connection \d+ of root has run for \d+s: UPDATE app\.t SET id = id WHERE id = 1 AND SLEEP\(30\) = 0\)/,
      );
      assert.ok(Date.now() - started < 25_000);
      const ours = (await otherSessions(donor)).filter((s) => Number(s.ID) !== blocker.session.connectionId);
      assert.deepEqual(ours, [], 'no FLUSH or session of ours is left');
    } finally {
      blocker.session.destroy();
      await blocker.done;
    }
  });

  it('never holds the lock past --max-lock-time', async () => {
    // The lock is held for well under a millisecond here; a fault hook makes it last longer.
    const r = await reseed(cloneArgs(['--lock-mode', 'ftwrl', '--max-lock-time', '200ms']), {
      env: { RESEED_FAULT_HOLD_LOCK_MS: '1000' },
    });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /reached --max-lock-time \(200 ms\) and was released by the watchdog/);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await otherSessions(donor), []);
    await donor.sql('INSERT INTO app.u VALUES (200)');
  });
});
