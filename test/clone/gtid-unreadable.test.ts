import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  REPL_ENV,
  assertSameTables,
  cloneArgs,
  createReplUser,
  reseed,
  startServer,
  stopAll,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

// MariaDB's BINLOG_GTID_POS(file, pos) returns NULL when it cannot read the binary log up to the
// position: here an event (a 3 MB row) longer than the donor's max_allowed_packet, lowered after
// the row was written (first-user trial). That NULL must never be taken for "no GTID": a replica
// would start from the beginning of the donor's binary log, a verify compare at no position.

let donor: TestServer;

describe('a snapshot whose GTID position BINLOG_GTID_POS cannot read', () => {
  before(async () => {
    donor = await startServer('gtidnull-donor', ['max_allowed_packet = 64M']);
    await createReplUser(donor);
    await donor.sql('CREATE DATABASE app');
    await donor.sql('CREATE TABLE app.t (id INT PRIMARY KEY, b MEDIUMBLOB)');
    await donor.sql("INSERT INTO app.t SELECT seq, REPEAT('x', 100) FROM app.seq_1_to_1000");
    await donor.sql("INSERT INTO app.t VALUES (5000, REPEAT('y', 3000000))");
    await donor.sql("INSERT INTO app.t VALUES (5001, 'after')");
    await donor.sql('SET GLOBAL max_allowed_packet = 1048576');
  });
  after(stopAll);

  it('--lock-mode none: refused with the reason (exit 5), nothing changed', async () => {
    const joiner = await startServer('gtidnull-none');
    const r = await reseed(cloneArgs(donor, joiner, '--lock-mode', 'none', '--no-throttle'), {
      env: REPL_ENV,
    });
    assert.equal(r.code, 5, r.stderr + r.stdout);
    assert.match(r.stderr, /GTID position could not be read: BINLOG_GTID_POS\('[^']+', \d+\) returned NULL/);
    const schemas = await joiner.sql("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'");
    assert.equal(schemas.length, 0);
  });

  it('--lock-mode auto: the position is read under a brief lock; the replica starts from it', async () => {
    const joiner = await startServer('gtidnull-auto');
    const r = await reseed(cloneArgs(donor, joiner, '--no-throttle', '--verify', '--json'), {
      env: REPL_ENV,
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      coordinates: { gtid: string };
      lockMode: string;
    };
    const [g] = await donor.sql('SELECT @@gtid_binlog_pos AS g');
    assert.equal(summary.coordinates.gtid, String(g?.g));
    assert.notEqual(summary.lockMode, 'none');
    await assertSameTables(donor, joiner, ['app.t']);
    const [st] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(st?.Slave_SQL_Running, 'Yes');
  });
});
