import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { REPL_ENV, createReplUser, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;
let joiner: TestServer;

describe('verify', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('verify-donor'), startServer('verify-joiner')]);
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
});
