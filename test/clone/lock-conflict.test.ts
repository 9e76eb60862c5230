import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { assertSameTables, copyArgs, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;

/**
 * While the clone loads app.t, another joiner session holds the gap after the table's last row
 * (SELECT ... FOR UPDATE), so every appending insert waits; with innodb_lock_wait_timeout = 1
 * the waiting statement fails with error 1205, as a deadlock victim would with 1213, and must
 * run again without losing or doubling a row.
 */
describe('a lock conflict on the joiner', () => {
  before(async () => {
    donor = await startServer('conflict-donor');
    await donor.sql('CREATE DATABASE app');
    await donor.sql('CREATE TABLE app.t (id INT PRIMARY KEY, v CHAR(100) NOT NULL)');
    await donor.sql("INSERT INTO app.t SELECT seq, CONCAT('row ', seq) FROM app.seq_1_to_400000");
  });
  after(stopAll);

  for (const mode of ['auto', 'load-data']) {
    it(`--load-mode ${mode}: the statement that timed out runs again`, async () => {
      const joiner = await startServer(`conflict-${mode}`);
      await joiner.sql('SET GLOBAL innodb_lock_wait_timeout = 1');
      const blocker = await joiner.session();
      try {
        await blocker.query('SET SESSION innodb_lock_wait_timeout = 60');
        const clone = reseed(
          copyArgs(donor, joiner, '--parallel', '1', '--chunk-rows', '20000', '--load-mode', mode, '--json'),
        );
        const exists =
          "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 't'";
        let ended = false;
        void clone.then(() => (ended = true));
        // A clone that ends before it made the table (a refusal) must not leave this loop spinning.
        while (!ended && (await blocker.query(exists)).length === 0) await sleep(5);
        await blocker.query('BEGIN');
        await blocker.query('SELECT id FROM app.t WHERE id > 2000000000 FOR UPDATE');
        await sleep(1500);
        await blocker.query('COMMIT');
        const r = await clone;
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.match(r.stdout, /after a lock conflict on the joiner/);
        await assertSameTables(donor, joiner, ['app.t']);
      } finally {
        await blocker.close();
      }
    });
  }
});
