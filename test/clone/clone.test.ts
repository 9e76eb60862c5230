import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  EVERY_TYPE_TABLES,
  REPL_ENV,
  assertSameHistory,
  assertSameTables,
  loadFixture,
  createReplUser,
  otherSessions,
  reseed,
  startServer,
  stopAll,
  cloneArgs,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;
let joiner: TestServer;

describe('logical clone of every type and shape', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('types-donor'), startServer('types-joiner')]);
    await loadFixture(donor, 'every-type.sql');
    await createReplUser(donor);
  });
  after(stopAll);

  it('clones, replicates, verifies, and leaves the donor clean', async () => {
    const gtidBefore = String((await donor.sql('SELECT @@gtid_binlog_pos AS g'))[0]!.g);
    const r = await reseed(
      cloneArgs(donor, joiner, '--chunk-rows', '300', '--parallel', '3', '--verify', '--json'),
      { env: REPL_ENV },
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines.at(-1)!;
    assert.equal(summary.type, 'summary');
    assert.equal((summary.verify as { ok: boolean }).ok, true);
    assert.equal((summary.coordinates as { gtid: string }).gtid, gtidBefore);
    assert.ok(
      (summary.warnings as string[]).some((w) =>
        /^not protected by the snapshot: types\.not_innodb \(MyISAM\); writes to them/.test(w),
      ),
      JSON.stringify(summary.warnings),
    );
    assert.ok(
      !r.stdout.includes('repl-secret') && !r.stderr.includes('repl-secret'),
      'no password in the output',
    );

    // The joiner: a running, read-only GTID replica positioned exactly at the snapshot.
    const [status] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(status!.Slave_IO_Running, 'Yes');
    assert.equal(status!.Slave_SQL_Running, 'Yes');
    assert.equal(status!.Using_Gtid, 'Slave_Pos');
    const [vars] = await joiner.sql(
      'SELECT @@read_only AS ro, @@gtid_slave_pos AS pos, @@gtid_binlog_pos AS own',
    );
    assert.equal(Number(vars!.ro), 1);
    assert.equal(vars!.pos, gtidBefore);

    // Exact values, checked independently of reseed's own verify.
    await assertSameTables(donor, joiner, EVERY_TYPE_TABLES);
    await assertSameHistory(donor, joiner);
    const hidden = await joiner.sql('SELECT id, hidden FROM types.from_seq ORDER BY id');
    assert.deepEqual(
      hidden.map((r) => [Number(r.id), r.hidden]),
      [
        [100, 'h1'],
        [105, null],
        [110, 'h3'],
      ],
      'invisible columns are copied',
    );
    const seq = 'SELECT next_not_cached_value AS n, increment AS i FROM types.seq';
    assert.deepEqual(await joiner.sql(seq), await donor.sql(seq), "the sequence, where the donor's stood");
    const [f] = await joiner.sql('SELECT CAST(f AS DOUBLE) AS f, HEX(b64) AS b FROM types.nums WHERE id = 1');
    assert.equal(Number(f!.f), 16777216);
    assert.equal(f!.b, 'FFFFFFFFFFFFFFFF');
    const [ai] = await joiner.sql(
      "SELECT AUTO_INCREMENT AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA='types' AND TABLE_NAME='auto'",
    );
    assert.equal(Number(ai!.n), 1000);
    const [greet] = await joiner.sql("SELECT types.greet('x') AS g");
    assert.equal(greet!.g, 'hello x');
    const [ev] = await joiner.sql(
      "SELECT STATUS AS s FROM information_schema.EVENTS WHERE EVENT_NAME = 'tick'",
    );
    assert.equal(ev!.s, 'SLAVESIDE_DISABLED');
    const weird = await joiner.sql('SELECT * FROM `we!rd sch``ema`.`v w` ORDER BY 1');
    assert.equal(weird.length, 2);

    // The donor is left as it was: no session of ours, no lock, nothing in its binlog from us.
    const sessions = await otherSessions(donor);
    assert.deepEqual(
      sessions.filter((s) => s.COMMAND !== 'Sleep' || String(s.USER) !== 'repl'),
      [],
    );
    const [dv] = await donor.sql('SELECT @@gtid_binlog_pos AS g, @@read_only AS ro');
    assert.equal(dv!.g, gtidBefore);
    assert.equal(Number(dv!.ro), 0);

    // Replication works from the copy's exact point: a later write arrives.
    await donor.sql('INSERT INTO types.sparse VALUES (123456789, 42)');
    const until = String((await donor.sql('SELECT @@gtid_binlog_pos AS g'))[0]!.g);
    const [w] = await joiner.sql('SELECT MASTER_GTID_WAIT(?, 30) AS r', [until]);
    assert.equal(Number(w!.r), 0);
    const [row] = await joiner.sql('SELECT v FROM types.sparse WHERE id = 123456789');
    assert.equal(Number(row!.v), 42);

    // And `reseed verify` agrees afterwards (exit 0).
    const v = await reseed(['verify', '--from', donor.uri, '--to', joiner.uri, '--chunk-rows', '500']);
    assert.equal(v.code, 0, v.stderr + v.stdout);
    assert.match(v.stdout, /^identical: /);
  });
});
