import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  REPL_ENV,
  createReplUser,
  otherSessions,
  reseed,
  schemas,
  startServer,
  stopAll,
  cloneArgs,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import { assertStateIs, serverState } from '../helpers/state.js';
import { loadSampleData } from '../../src/sandbox/sample-data.js';

let donor: TestServer;
let joiner: TestServer;
/** The joiner as it was before any clone touched it (compared after every interrupted one). */
let joinerBefore: Record<string, unknown>;

/** Runs a slow clone and sends `signal` once the copy has started. */
function interruptedClone(signal: NodeJS.Signals) {
  let sent = false;
  return reseed(cloneArgs(donor, joiner, '--parallel', '1', '--chunk-rows', '2000'), {
    env: REPL_ENV,
    onStderr: (text, pid) => {
      if (!sent && text.includes('- copy')) {
        sent = true;
        setTimeout(() => process.kill(pid, signal), 300);
      }
    },
  });
}

async function assertDonorClean(options: { allowIdle?: boolean } = {}): Promise<void> {
  // Our sessions are gone (a killed client's sessions end when the server notices the socket).
  for (let i = 0; i < 150; i++) {
    if ((await otherSessions(donor)).length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const left = await otherSessions(donor);
  // Under a loaded machine a session of a kill -9'd client has outlived the wait, idle ('Sleep')
  // or, once in CI, 'Busy' with no statement, until the server noticed the closed socket. It
  // runs nothing; whether it holds a lock is checked below. Nothing may run a statement.
  const idle = (s: Record<string, unknown>) =>
    ['Sleep', 'Busy'].includes(String(s.COMMAND)) && s.INFO === null;
  assert.deepEqual(options.allowIdle ? left.filter((s) => !idle(s)) : left, []);
  // No read lock: a write goes through at once.
  const s = await donor.session();
  try {
    await s.query('SET SESSION lock_wait_timeout = 2');
    await s.query('CREATE TABLE IF NOT EXISTS test.lock_probe (n INT)');
    await s.query('INSERT INTO test.lock_probe VALUES (1)');
  } finally {
    await s.close();
  }
  const [v] = await donor.sql('SELECT @@read_only AS ro');
  assert.equal(Number(v!.ro), 0);
}

describe('interrupting a clone', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('intr-donor'), startServer('intr-joiner')]);
    const s = await donor.session();
    await loadSampleData(s, { bytes: 40 << 20 });
    await s.close();
    await createReplUser(donor);
    joinerBefore = await serverState(joiner);
  });
  after(stopAll);

  it('Ctrl-C undoes everything and says so', async () => {
    const r = await interruptedClone('SIGINT');
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted by SIGINT/);
    assert.match(r.stderr, /every change was undone \(\d+ step\(s\)\)/);
    assert.match(
      r.stderr,
      /compared with the state recorded before the first change: donor and joiner are as they were/,
    );
    await assertStateIs(joiner, joinerBefore);
    await assertDonorClean();
    // Nothing of ours runs on the joiner either: the statements in flight were killed there.
    assert.deepEqual(await otherSessions(joiner), []);
    const list = await reseed(['recover', '--list']);
    assert.equal(list.stdout.trim(), 'nothing to recover');
  });

  it('Ctrl-C twice exits at once and leaves the undo to `reseed recover`', async () => {
    let sent = false;
    const r = await reseed(cloneArgs(donor, joiner, '--parallel', '1', '--chunk-rows', '2000'), {
      env: REPL_ENV,
      onStderr: (text, pid) => {
        if (!sent && text.includes('- copy')) {
          sent = true;
          setTimeout(() => {
            process.kill(pid, 'SIGINT');
            setTimeout(() => process.kill(pid, 'SIGINT'), 20);
          }, 300);
        }
      },
    });
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /SIGINT again: exiting now; run `reseed recover` to finish the undo/);
    const rec = await reseed(['recover']);
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    assert.match(rec.stdout, /donor and joiner are as they were/);
    await assertStateIs(joiner, joinerBefore);
    await assertDonorClean({ allowIdle: true });
  });

  it('after kill -9, `reseed recover` finishes the undo', async () => {
    const r = await interruptedClone('SIGKILL');
    assert.equal(r.code, null);
    assert.ok((await schemas(joiner)).includes('shop'), 'the killed clone left its schema behind');
    const list = await reseed(['recover', '--list']);
    assert.match(list.stdout, /owed: create schema shop on the joiner \(on the joiner\)/);
    const rec = await reseed(['recover']);
    assert.equal(rec.code, 0, rec.stderr);
    assert.match(rec.stdout, /undone: create schema shop on the joiner/);
    await assertStateIs(joiner, joinerBefore);
    await assertDonorClean({ allowIdle: true });
    assert.equal((await reseed(['recover'])).stdout.trim(), 'nothing to recover');
  });
});
