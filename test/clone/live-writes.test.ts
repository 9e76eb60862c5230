import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { REPL_ENV, createReplUser, reseed, startServer, stopAll, cloneArgs } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;

describe('clone while the donor takes writes', () => {
  before(async () => {
    donor = await startServer('live-donor');
    await donor.sql('CREATE DATABASE live');
    await donor.sql(
      'CREATE TABLE live.counter (n INT NOT NULL PRIMARY KEY, v INT NOT NULL, note VARCHAR(40))',
    );
    await donor.sql("INSERT INTO live.counter SELECT seq, 0, CONCAT('row ', seq) FROM live.seq_1_to_60000");
    await donor.sql('CREATE TABLE live.log (n INT NOT NULL, at DATETIME(6) NOT NULL)');
    await createReplUser(donor);
  });
  after(stopAll);

  for (const mode of ['gtid', 'file/position'] as const) {
    it(`every write made during the copy arrives exactly once (${mode})`, async () => {
      const joiner = await startServer(`live-joiner-${mode === 'gtid' ? 'gtid' : 'pos'}`);
      const before = await donor.sql('SELECT COUNT(*) AS n FROM live.log');
      const base = Number(before[0]!.n);
      let stop = false;
      let written = 0;
      const writer = (async () => {
        const s = await donor.session();
        try {
          while (!stop) {
            written++;
            await s.query('INSERT INTO live.log VALUES (?, NOW(6))', [base + written]);
            await s.query('UPDATE live.counter SET v = v + 1 WHERE n = ?', [1 + ((written * 7919) % 60000)]);
            await s.query('INSERT INTO live.counter VALUES (?, 0, NULL)', [100000 + base + written]);
          }
        } finally {
          await s.close();
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      const r = await reseed(
        cloneArgs(
          donor,
          joiner,
          '--chunk-rows',
          '2000',
          '--parallel',
          '3',
          '--json',
          '--force',
          ...(mode === 'gtid' ? [] : ['--no-gtid']),
        ),
        {
          env: REPL_ENV,
        },
      );
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await writer;
      assert.equal(r.code, 0, r.stderr);
      assert.ok(written > 10, `the writer made ${written} writes`);

      const [pos] = await donor.sql('SELECT @@gtid_binlog_pos AS g');
      const [w] = await joiner.sql('SELECT MASTER_GTID_WAIT(?, 60) AS r', [pos!.g]);
      assert.equal(Number(w!.r), 0);
      const [a] = await joiner.sql(
        'SELECT COUNT(*) AS n, COUNT(DISTINCT n) AS d, MIN(n) AS lo, MAX(n) AS hi FROM live.log',
      );
      assert.deepEqual(
        [Number(a!.n), Number(a!.d), Number(a!.lo), Number(a!.hi)],
        [base + written, base + written, 1, base + written],
      );
      const [st] = await joiner.sql('SHOW SLAVE STATUS');
      assert.equal(st!.Using_Gtid, mode === 'gtid' ? 'Slave_Pos' : 'No');
      const [sumJ] = await joiner.sql('SELECT COUNT(*) AS n, SUM(v) AS v FROM live.counter');
      const [sumD] = await donor.sql('SELECT COUNT(*) AS n, SUM(v) AS v FROM live.counter');
      assert.deepEqual(sumJ, sumD);
      assert.ok(Number(sumD!.v) >= written);

      const v = await reseed(['verify', '--from', donor.uri, '--to', joiner.uri, '--chunk-rows', '5000']);
      assert.equal(v.code, 0, v.stdout + v.stderr);
    });
  }
});
