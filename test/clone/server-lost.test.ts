import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadSampleData } from '../../src/sandbox/sample-data.js';
import { sandboxUp } from '../../src/sandbox/sandbox.js';
import {
  REPL_ENV,
  cloneArgs,
  createReplUser,
  otherSessions,
  reseed,
  startServer,
  stopAll,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import { assertStateIs, serverState } from '../helpers/state.js';

let donor: TestServer;
let joiner: TestServer;

describe('a server that disappears mid-copy', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('lost-donor'), startServer('lost-joiner')]);
    const s = await donor.session();
    await loadSampleData(s, { bytes: 30 << 20 });
    await s.close();
    await createReplUser(donor);
  });
  after(stopAll);

  it('a joiner killed during the copy: exit 9 with the journal named; recover restores it once it is back', async () => {
    const beforeState = await serverState(joiner);
    let killed = false;
    const r = await reseed(cloneArgs(donor, joiner, '--parallel', '1', '--chunk-rows', '2000'), {
      env: REPL_ENV,
      onStderr: (text) => {
        if (!killed && text.includes('- copy')) {
          killed = true;
          setTimeout(() => process.kill(joiner.info.pid!, 'SIGKILL'), 200);
        }
      },
    });
    assert.ok(killed);
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stderr, /lost the connection|cannot connect/);
    assert.match(
      r.stderr,
      /rollback incomplete: .*\n(.*\n)*.*journal: .*\.jsonl \(retry with: reseed recover\)/,
    );
    // The donor is left clean although the joiner vanished.
    for (let i = 0; i < 50 && (await otherSessions(donor)).length > 0; i++)
      await new Promise((x) => setTimeout(x, 100));
    assert.deepEqual(await otherSessions(donor), []);
    await sandboxUp(joiner.info.name);
    const rec = await reseed(['recover']);
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    assert.match(rec.stdout, /donor and joiner are as they were/);
    await assertStateIs(joiner, beforeState);
  });
});
