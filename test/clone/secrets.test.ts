import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createReplUser, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;
let joiner: TestServer;

const WITH_URI_PASSWORD = () => [
  'clone',
  '--from',
  donor.uri.replace('root@', 'admin:donor-Secret-1@'),
  '--to',
  joiner.uri,
  '--replication-user',
  'repl',
  '--parallel',
  '1',
];

describe('secrets', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('secret-donor'), startServer('secret-joiner')]);
    await donor.sql("CREATE USER 'admin'@'127.0.0.1' IDENTIFIED BY 'donor-Secret-1'");
    await donor.sql("GRANT ALL ON *.* TO 'admin'@'127.0.0.1'");
    await donor.sql('CREATE DATABASE app');
    await donor.sql('CREATE TABLE app.t (id INT PRIMARY KEY)');
    await donor.sql('INSERT INTO app.t SELECT seq FROM app.seq_1_to_200000');
    await createReplUser(donor);
  });
  after(stopAll);

  it('a URI password leaves the process list, and no password reaches output or journal', async () => {
    const r = await reseed([...WITH_URI_PASSWORD(), '--json', '--chunk-rows', '20000'], {
      env: { RESEED_REPLICATION_PASSWORD: 'repl-secret' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /a password in a URI is visible in the process list/);
    for (const secret of ['donor-Secret-1', 'repl-secret']) {
      assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), `${secret} not in the output`);
    }
    const dir = join(process.env.RESEED_STATE_DIR!, 'journal');
    for (const f of readdirSync(dir)) {
      const text = readFileSync(join(dir, f), 'utf8');
      assert.ok(
        !text.includes('donor-Secret-1') && !text.includes('repl-secret'),
        `no secret in journal ${f}`,
      );
      assert.doesNotMatch(text, /\*[0-9A-F]{40}/, 'no password hash either');
    }
  });

  it('rewrites its process title with the URI password masked', async () => {
    let seen = '';
    const r = await reseed([...WITH_URI_PASSWORD(), '--force', '--chunk-rows', '5000'], {
      env: { RESEED_REPLICATION_PASSWORD: 'repl-secret' },
      onStderr: (text, pid) => {
        if (!seen && text.includes('- copy'))
          seen = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(seen.length > 0, 'the command line was read during the copy');
    assert.ok(!seen.includes('donor-Secret-1'), `ps shows: ${seen}`);
    assert.match(seen, /admin:\*\*\*@127\.0\.0\.1/);
  });
});
