import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  REPL_ENV,
  createReplUser,
  otherSessions,
  reseed,
  startServer,
  stopAll,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;
let joiner: TestServer;
let other: TestServer;

async function joinerThreads(): Promise<string[]> {
  const [st] = await joiner.sql('SHOW SLAVE STATUS');
  return [String(st!.Slave_IO_Running), String(st!.Slave_SQL_Running), String(st!.Until_Condition)];
}

/** No session of ours left on the donor (two empty reads in a row: a closed one can linger). */
async function assertDonorClean(): Promise<void> {
  let left: unknown[] = [];
  for (let i = 0, empty = 0; i < 100 && empty < 2; i++) {
    left = await otherSessions(donor);
    empty = left.length === 0 ? empty + 1 : 0;
    if (empty < 2) await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(left, []);
}

describe('verify', () => {
  before(async () => {
    [donor, joiner, other] = await Promise.all([
      startServer('verify-donor'),
      startServer('verify-joiner'),
      startServer('verify-other'),
    ]);
    await donor.sql('CREATE DATABASE app');
    await donor.sql(
      'CREATE TABLE app.items (id INT NOT NULL PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2))',
    );
    await donor.sql(
      "INSERT INTO app.items SELECT seq, CONCAT('item ', seq), seq / 10 FROM app.seq_1_to_5000",
    );
    await donor.sql('CREATE VIEW app.cheap AS SELECT id FROM app.items WHERE price < 10');
    await createReplUser(donor);
    const r = await reseed(['clone', '--from', donor.uri, '--to', joiner.uri, '--replication-user', 'repl'], {
      env: REPL_ENV,
    });
    assert.equal(r.code, 0, r.stderr);
  });
  after(stopAll);

  it("finds a row changed on the replica behind replication's back, and names its key range", async () => {
    const s = await joiner.session();
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query("UPDATE app.items SET name = 'tampered' WHERE id = 3210");
    await s.close();
    await donor.sql('INSERT INTO app.items VALUES (9999, ?, 1)', ['after']);
    const r = await reseed(['verify', '--from', donor.uri, '--to', joiner.uri, '--chunk-rows', '1000']);
    assert.equal(r.code, 8, r.stdout + r.stderr);
    assert.match(r.stdout, /^DIFFERENT: 1 tables/);
    assert.match(r.stdout, /method: replica stopped at the donor snapshot/);
    assert.match(r.stdout, /replication: IO thread running, SQL thread running, as verify found it/);
    assert.match(
      r.stdout,
      /table app\.items: key \(id\) > \(\d+\) and <= \(\d+\): donor (\d+) rows, joiner \1 rows, contents differ/,
    );
    assert.equal(
      (r.stdout.match(/table app\.items/g) ?? []).length,
      1,
      'only the chunk with the change differs',
    );
    // Replication runs again after verify, and the donor's later write arrived.
    const [st] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(st!.Slave_SQL_Running, 'Yes');
    const [row] = await joiner.sql('SELECT name FROM app.items WHERE id = 9999');
    assert.equal(row!.name, 'after');
  });

  it('finds missing rows and objects', async () => {
    const s = await joiner.session();
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query("UPDATE app.items SET name = CONCAT('item ', id) WHERE id = 3210");
    await s.query('DELETE FROM app.items WHERE id = 17');
    await s.query('DROP VIEW app.cheap');
    await s.close();
    const r = await reseed(['verify', '--from', donor.uri, '--to', joiner.uri, '--json']);
    assert.equal(r.code, 8);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      ok: boolean;
      differences: { what: string; detail: string }[];
    };
    assert.equal(report.ok, false);
    assert.deepEqual(report.differences.map((d) => d.what).sort(), ['table app.items', 'view app.cheap']);
    assert.match(
      report.differences.find((d) => d.what === 'table app.items')!.detail,
      /donor 5001 rows, joiner 5000 rows/,
    );
  });

  it('refuses --schemas that name no user schema of the donor, changing nothing', async () => {
    const before = await joinerThreads();
    const none = await reseed(['verify', '--from', donor.uri, '--to', joiner.uri, '--schemas', 'nosuch']);
    assert.equal(none.code, 4, none.stdout + none.stderr);
    assert.equal(none.stdout, '');
    assert.match(
      none.stderr,
      /--schemas names schemas the donor does not have: nosuch; nothing was compared or changed/,
    );
    assert.match(none.stderr, /the donor's schemas: app/);
    const system = await reseed([
      'verify',
      '--from',
      donor.uri,
      '--to',
      joiner.uri,
      '--schemas',
      'app,mysql',
    ]);
    assert.equal(system.code, 4, system.stdout + system.stderr);
    assert.match(system.stderr, /--schemas names system schemas, which are never compared: mysql/);
    // A donor with no user schema at all (the sandbox's empty `test` schema dropped).
    await other.sql('DROP DATABASE IF EXISTS test');
    const empty = await reseed(['verify', '--from', other.uri, '--to', joiner.uri]);
    assert.equal(empty.code, 4, empty.stdout + empty.stderr);
    assert.match(empty.stderr, /the donor has no user schema to compare/);
    assert.deepEqual(await joinerThreads(), before);
    await assertDonorClean();
  });

  it('exits 3 at once, leaving no session behind, when a server is unreachable', async () => {
    const closed = 'mysql://root@127.0.0.1:1';
    for (const [from, to, side] of [
      [donor.uri, closed, 'joiner'],
      [closed, joiner.uri, 'donor'],
    ] as const) {
      const started = Date.now();
      const r = await reseed(['verify', '--from', from, '--to', to]);
      assert.ok(Date.now() - started < 8000, `took ${Date.now() - started} ms`);
      assert.equal(r.code, 3, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`^reseed: ${side}: cannot connect to root@127\\.0\\.0\\.1:1: .*\\n`));
      await assertDonorClean();
    }
  });

  it('compares live, and says so, a joiner that does not replicate from the donor', async () => {
    // `other` holds a copy of app, but the joiner replicates from `donor`.
    const r0 = await reseed([
      'clone',
      '--from',
      donor.uri,
      '--to',
      other.uri,
      '--no-replicate',
      '--writable',
    ]);
    assert.equal(r0.code, 0, r0.stderr);
    const before = await joinerThreads();
    const r = await reseed(['verify', '--from', other.uri, '--to', joiner.uri]);
    assert.match(
      r.stdout,
      /method: joiner does not replicate from the donor: compared live \(writes on either side can show as differences\)/,
    );
    assert.match(
      r.stdout,
      /why: the joiner replicates from 127\.0\.0\.1:\d+ \(server_id \d+\), not from the donor \(server_id \d+\)/,
    );
    assert.match(r.stdout, /replication: not touched \(IO thread running, SQL thread running\)/);
    assert.deepEqual(await joinerThreads(), before);
    // A joiner that replicates from nothing: the donor itself, the other way round.
    const back = await reseed(['verify', '--from', joiner.uri, '--to', donor.uri]);
    assert.match(back.stdout, /method: joiner does not replicate from the donor: compared live/);
    assert.match(back.stdout, /why: the joiner has no replication configured/);
    assert.match(back.stdout, /replication: none/);
    assert.equal((await reseed(['recover', '--list'])).stdout.trim(), 'nothing to recover');
  });
});
