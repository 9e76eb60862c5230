import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { REPL_ENV, createReplUser, reseed, startServer, stopAll, cloneArgs } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let primary: TestServer;
let donor: TestServer;

async function caughtUp(replica: TestServer, source: TestServer): Promise<void> {
  const [pos] = await source.sql('SELECT @@gtid_binlog_pos AS g');
  const [w] = await replica.sql('SELECT MASTER_GTID_WAIT(?, 30) AS r', [pos!.g]);
  assert.equal(Number(w!.r), 0);
}

describe('a donor that is itself a replica', () => {
  before(async () => {
    [primary, donor] = await Promise.all([startServer('chain-primary'), startServer('chain-donor')]);
    await createReplUser(primary);
    await primary.sql('CREATE DATABASE app');
    await primary.sql('CREATE TABLE app.t (id INT PRIMARY KEY, v INT)');
    await primary.sql('INSERT INTO app.t SELECT seq, seq FROM app.seq_1_to_1000');
    // The donor replicates from the primary, by GTID, with log_slave_updates (the sandbox default).
    await donor.sql(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.info.port}, MASTER_USER='repl', MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=slave_pos`,
    );
    await donor.sql('START SLAVE');
    await caughtUp(donor, primary);
  });
  after(stopAll);

  for (const whom of ['donor', 'source'] as const) {
    it(`records the source position too, and the joiner follows the ${whom}`, async () => {
      const joiner = await startServer(`chain-joiner-${whom}`);
      const r = await reseed(cloneArgs(donor, joiner, '--replicate-from', whom, '--json'), {
        env: REPL_ENV,
      });
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
        coordinates: { gtid: string; source?: { port: number; gtid: string } };
      };
      assert.equal(s.coordinates.source?.port, primary.info.port);
      assert.equal(
        s.coordinates.source?.gtid,
        s.coordinates.gtid,
        'GTIDs are global: the same position in both streams',
      );
      const [st] = await joiner.sql('SHOW SLAVE STATUS');
      assert.equal(Number(st!.Master_Port), whom === 'source' ? primary.info.port : donor.info.port);
      // The donor's own replication runs again, and a write on the primary reaches the joiner.
      const [ds] = await donor.sql('SHOW SLAVE STATUS');
      assert.equal(ds!.Slave_SQL_Running, 'Yes');
      await primary.sql('INSERT INTO app.t VALUES (?, 0)', [5000 + (whom === 'source' ? 1 : 0)]);
      await caughtUp(donor, primary);
      await caughtUp(joiner, primary);
      const [n] = await joiner.sql('SELECT COUNT(*) AS n FROM app.t');
      assert.equal(Number(n!.n), whom === 'donor' ? 1001 : 1002);
    });
  }

  it('refuses --replicate-from source when the donor is not a replica', async () => {
    const joiner = await startServer('chain-joiner-x');
    const r = await reseed(
      [
        'clone',
        '--from',
        primary.uri,
        '--to',
        joiner.uri,
        '--replication-user',
        'repl',
        '--replicate-from',
        'source',
      ],
      { env: REPL_ENV },
    );
    assert.equal(r.code, 4);
    assert.match(r.stderr, /--replicate-from source: the donor is not a replica/);
  });
});
