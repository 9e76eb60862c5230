import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createReplUser, otherSessions, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;
let joiner: TestServer;

interface Threads {
  /** 'Yes' also for an IO thread on its way to connect (Connecting, Preparing): it runs */
  io: 'Yes' | 'No';
  sql: string;
  ioErrno: number;
  sqlErrno: number;
  until: string;
}

/** The joiner's replication threads as SHOW SLAVE STATUS gives them (optionally of a named connection). */
async function threads(connection?: string): Promise<Threads> {
  const s = await joiner.session();
  try {
    if (connection !== undefined) await s.query('SET SESSION default_master_connection = ?', [connection]);
    const [r] = await s.query('SHOW SLAVE STATUS');
    assert.ok(r, 'the joiner replicates');
    return {
      io: r.Slave_IO_Running === 'No' ? 'No' : 'Yes',
      sql: String(r.Slave_SQL_Running),
      ioErrno: Number(r.Last_IO_Errno),
      sqlErrno: Number(r.Last_SQL_Errno),
      until: String(r.Until_Condition),
    };
  } finally {
    await s.close();
  }
}

/** Waits until the joiner has applied everything the donor has. */
async function sync(): Promise<void> {
  const [p] = await donor.sql('SELECT @@gtid_binlog_pos AS g');
  const [r] = await joiner.sql('SELECT MASTER_GTID_WAIT(?, 30) AS r', [p!.g]);
  assert.equal(Number(r!.r), 0, 'the joiner caught up');
}

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * What `query` returns once it stays empty (two reads in a row), or its last answer after `ms`. A
 * session that just closed can linger a moment in the PROCESSLIST.
 */
async function settled(query: () => Promise<unknown[]>, ms = 10_000): Promise<unknown[]> {
  const deadline = Date.now() + ms;
  let empty = 0;
  for (;;) {
    const rows = await query();
    empty = rows.length === 0 ? empty + 1 : 0;
    if (empty === 2 || Date.now() > deadline) return rows;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** No session or transaction (snapshot) of ours on the donor, no MASTER_GTID_WAIT on the joiner. */
async function assertNothingLeft(): Promise<void> {
  assert.deepEqual(await settled(() => otherSessions(donor)), []);
  assert.deepEqual(await donor.sql('SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX'), []);
  const waits = () =>
    joiner.sql(
      "SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE INFO LIKE '%MASTER_GTID_WAIT(%' AND ID <> CONNECTION_ID()",
    );
  assert.deepEqual(await settled(waits, 5000), []);
}

async function assertNothingToRecover(): Promise<void> {
  assert.equal((await reseed(['recover', '--list'])).stdout.trim(), 'nothing to recover');
}

const verifyArgs = (...extra: string[]) => ['verify', '--from', donor.uri, '--to', joiner.uri, ...extra];

/** Runs verify and sends `signal` once it waits for the replica; resolves with when it was sent. */
async function interruptedVerify(signal: NodeJS.Signals, ...extra: string[]) {
  let sentAt = 0;
  const r = await reseed(verifyArgs(...extra), {
    onStderr: (text, pid) => {
      if (!sentAt && text.includes('- catch-up')) {
        sentAt = Date.now();
        // Let a step or two of the wait go by.
        setTimeout(() => process.kill(pid, signal), 1500);
      }
    },
  });
  assert.ok(sentAt > 0, `verify never waited for the replica: ${r.stdout}${r.stderr}`);
  return { ...r, afterSignalMs: Date.now() - sentAt - 1500 };
}

describe('verify leaves replication as it found it', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('vsafe-donor'), startServer('vsafe-joiner')]);
    await createReplUser(donor);
    // A replica by hand, from the donor's first transaction on (its binlog is complete).
    await joiner.sql(
      `CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${donor.info.port}, MASTER_USER = 'repl',
         MASTER_PASSWORD = 'repl-secret', MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1`,
    );
    await joiner.sql('START SLAVE');
    await donor.sql('CREATE DATABASE app');
    await donor.sql('CREATE TABLE app.items (id INT NOT NULL PRIMARY KEY, name VARCHAR(20))');
    await donor.sql("INSERT INTO app.items SELECT seq, CONCAT('item ', seq) FROM app.seq_1_to_5000");
    await sync();
  });
  after(stopAll);

  it('fails at once on a replica whose SQL thread stopped on an error, changing nothing', async () => {
    const s = await joiner.session();
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query("INSERT INTO app.items VALUES (100001, 'joiner only')");
    await s.close();
    await donor.sql("INSERT INTO app.items VALUES (100001, 'donor')");
    await until('the SQL thread to stop', async () => (await threads()).sqlErrno === 1062);
    const found = await threads();

    const started = Date.now();
    const r = await reseed(verifyArgs());
    assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
    assert.equal(r.code, 7, r.stdout + r.stderr);
    assert.match(r.stderr, /is broken: its SQL thread stopped with error 1062: .*Duplicate entry/);
    assert.match(r.stderr, /nothing was changed/);
    assert.deepEqual(await threads(), found);
    await assertNothingLeft();
    await assertNothingToRecover();

    // Repaired by hand for the next tests.
    const t = await joiner.session();
    await t.query('SET SESSION sql_log_bin = 0');
    await t.query('DELETE FROM app.items WHERE id = 100001');
    await t.close();
    await joiner.sql('START SLAVE SQL_THREAD');
    await sync();
  });

  it('refuses a replica whose SQL thread is stopped, applying nothing it holds back', async () => {
    await donor.sql('CREATE TABLE app.victim (id INT NOT NULL PRIMARY KEY)');
    await donor.sql('INSERT INTO app.victim VALUES (1), (2), (3)');
    await sync();
    // The operator keeps a bad statement from the replica: it waits in the relay log.
    await joiner.sql('STOP SLAVE SQL_THREAD');
    await donor.sql('DROP TABLE app.victim');
    const [p] = await donor.sql('SELECT @@gtid_binlog_pos AS g');
    await until('the joiner to receive the DROP', async () => {
      const [r] = await joiner.sql('SHOW SLAVE STATUS');
      return r!.Gtid_IO_Pos === p!.g;
    });
    const before = await threads();
    const [applied] = await joiner.sql('SELECT @@gtid_slave_pos AS g');

    const r = await reseed(verifyArgs());
    assert.equal(r.code, 4, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^reseed: the joiner's SQL thread is stopped, and comparing at one position would apply the transactions it holds back: start it yourself \(START SLAVE SQL_THREAD\), or pass --apply-held to let verify run it up to the donor's snapshot and stop it again; nothing was changed\n$/,
    );
    assert.deepEqual(await threads(), before);
    assert.deepEqual(await joiner.sql('SELECT @@gtid_slave_pos AS g'), [applied]);
    assert.deepEqual(await joiner.sql('SELECT id FROM app.victim ORDER BY id'), [
      { id: 1 },
      { id: 2 },
      { id: 3 },
    ]);
    await assertNothingLeft();
    await assertNothingToRecover();

    // The operator lets it through.
    await joiner.sql('START SLAVE SQL_THREAD');
    await sync();
  });

  for (const [stop, found, ...flags] of [
    ['STOP SLAVE SQL_THREAD', 'IO thread running, SQL thread stopped', '--apply-held'],
    ['STOP SLAVE IO_THREAD', 'IO thread stopped, SQL thread running'],
    ['STOP SLAVE', 'IO thread stopped, SQL thread stopped', '--apply-held'],
  ] as const) {
    it(`after ${stop}${flags.length ? ', with --apply-held' : ''}: runs the replica up to the snapshot and stops it again`, async () => {
      await joiner.sql(stop);
      const before = await threads();
      await donor.sql("UPDATE app.items SET name = 'changed' WHERE id = 42");
      const r = await reseed(verifyArgs(...flags));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^identical: 1 tables/);
      assert.match(r.stdout, /method: replica stopped at the donor snapshot/);
      assert.match(r.stdout, new RegExp(`replication: ${found}, as verify found it`));
      assert.deepEqual(await threads(), before);
      // The replica did run up to the snapshot.
      const [row] = await joiner.sql('SELECT name FROM app.items WHERE id = 42');
      assert.equal(row!.name, 'changed');
      await assertNothingLeft();
      await assertNothingToRecover();
      await joiner.sql('START SLAVE');
      await sync();
      await donor.sql("UPDATE app.items SET name = 'item 42' WHERE id = 42");
      await sync();
    });
  }

  describe('interrupted while waiting for a replica that is behind', () => {
    before(async () => {
      // A delayed replica: the donor's next write reaches the joiner in an hour.
      await joiner.sql('STOP SLAVE');
      await joiner.sql('CHANGE MASTER TO MASTER_DELAY = 3600');
      await joiner.sql('START SLAVE');
      await donor.sql("INSERT INTO app.items VALUES (200001, 'delayed')");
    });
    after(async () => {
      await joiner.sql('STOP SLAVE');
      await joiner.sql('CHANGE MASTER TO MASTER_DELAY = 0');
      await joiner.sql('START SLAVE');
      await sync();
    });

    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      it(`${signal}: exits 130 within seconds, threads as found, nothing left running`, async () => {
        const found = await threads();
        assert.deepEqual([found.io, found.sql], ['Yes', 'Yes']);
        const r = await interruptedVerify(signal);
        assert.equal(r.code, 130, r.stdout + r.stderr);
        assert.ok(r.afterSignalMs < 5000, `exited ${r.afterSignalMs} ms after ${signal}`);
        assert.match(r.stderr, new RegExp(`interrupted by ${signal}`));
        assert.match(r.stderr, /IO thread running, SQL thread running, as verify found it/);
        assert.deepEqual(await threads(), { ...found, until: 'None' });
        await assertNothingLeft();
        await assertNothingToRecover();
      });
    }

    it('after kill -9, `reseed recover` gives the threads back, the stopped SQL thread stopped', async () => {
      await joiner.sql('STOP SLAVE SQL_THREAD');
      const found = await threads();
      assert.deepEqual([found.io, found.sql], ['Yes', 'No']);
      const r = await interruptedVerify('SIGKILL', '--apply-held');
      assert.equal(r.code, null);
      assert.equal((await threads()).until, 'Gtid', 'the killed verify left the replica on its UNTIL run');
      const list = await reseed(['recover', '--list']);
      assert.match(list.stdout, /verify .* owed: pause the joiner's replication for verify/s);
      const rec = await reseed(['recover']);
      assert.equal(rec.code, 0, rec.stdout + rec.stderr);
      assert.match(rec.stdout, /undone: pause the joiner's replication for verify/);
      assert.deepEqual(await threads(), { ...found, until: 'None' });
      await assertNothingLeft();
      await assertNothingToRecover();
    });
  });

  it('fails at once when the replica breaks while verify waits for it', async () => {
    // The donor's row reaches the joiner's applier 4 s late, and collides with one made there.
    await joiner.sql('STOP SLAVE');
    await joiner.sql('CHANGE MASTER TO MASTER_DELAY = 4');
    await joiner.sql('START SLAVE');
    await donor.sql("INSERT INTO app.items VALUES (300001, 'donor')");
    const s = await joiner.session();
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query("INSERT INTO app.items VALUES (300001, 'joiner only')");
    await s.close();
    const started = Date.now();
    const r = await reseed(verifyArgs());
    assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
    assert.equal(r.code, 7, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /is broken: its SQL thread stopped with error 1062: .*Duplicate entry .*verify stopped waiting/,
    );
    // START SLAVE would clear the error: the SQL thread keeps it for the operator to read.
    assert.match(
      r.stderr,
      /the joiner's replication: SQL thread stopped on error 1062 during verify: left stopped so that SHOW SLAVE STATUS shows the error; START SLAVE when it is fixed/,
    );
    const after = await threads();
    assert.equal(after.sql, 'No');
    assert.equal(after.sqlErrno, 1062);
    // MariaDB keeps verify's UNTIL until the SQL thread starts, and its IO thread obeys it.
    assert.match(
      r.stderr,
      /; IO thread stopped, though found running: it cannot run before the SQL thread does \(the joiner keeps verify's UNTIL until then\), and START SLAVE starts both/,
    );
    assert.deepEqual([after.io, after.until], ['No', 'Gtid']);
    await assertNothingLeft();
    await assertNothingToRecover();
    // Repaired by hand for the next test.
    await joiner.sql('STOP SLAVE');
    const t = await joiner.session();
    await t.query('SET SESSION sql_log_bin = 0');
    await t.query('DELETE FROM app.items WHERE id = 300001');
    await t.close();
    await joiner.sql('CHANGE MASTER TO MASTER_DELAY = 0');
    await joiner.sql('START SLAVE');
    await sync();
  });

  it('holds a named multi-source connection with --replica-connection', async () => {
    // The default connection becomes 'staged' (two connections to one source conflict).
    await joiner.sql('STOP SLAVE');
    await joiner.sql('RESET SLAVE ALL');
    const s = await joiner.session();
    await s.query("SET SESSION default_master_connection = 'staged'");
    await s.query(
      `CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ${donor.info.port}, MASTER_USER = 'repl',
         MASTER_PASSWORD = 'repl-secret', MASTER_USE_GTID = slave_pos`,
    );
    await s.query('START SLAVE IO_THREAD');
    await s.close();
    await donor.sql("UPDATE app.items SET name = 'staged' WHERE id = 7");
    const found = await threads('staged');

    const r = await reseed(verifyArgs('--replica-connection', 'staged', '--apply-held'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /method: replica stopped at the donor snapshot/);
    assert.match(r.stdout, /replication: IO thread running, SQL thread stopped, as verify found it/);
    assert.deepEqual(await threads('staged'), found);
    const [row] = await joiner.sql('SELECT name FROM app.items WHERE id = 7');
    assert.equal(row!.name, 'staged');
    const all = await joiner.sql('SHOW ALL SLAVES STATUS');
    assert.deepEqual(
      all.map((c) => c.Connection_name),
      ['staged'],
    );
    await assertNothingToRecover();

    // Without the name, verify sees no default connection: live, untouched.
    const live = await reseed(verifyArgs());
    assert.match(live.stdout, /method: joiner does not replicate from the donor: compared live/);
    assert.match(live.stdout, /why: the joiner has no replication configured/);
    assert.deepEqual(await threads('staged'), found);

    const bad = await reseed(verifyArgs('--replica-connection', 'nosuch'));
    assert.equal(bad.code, 4, bad.stderr);
    assert.match(bad.stderr, /the joiner has no replication connection 'nosuch'; nothing was changed/);
  });
});
