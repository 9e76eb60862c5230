import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { copyArgs, loadFixture, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import type { Server } from '../../src/mysql/server.js';

// What verify's chunk fingerprint must see: every kind of value changed, and the differences a
// weaker fingerprint (a CRC per row, XORed: pt-table-checksum's) cannot see. The joiner is a plain
// copy (no replication), so verify compares live; each case changes the joiner behind the
// donor's back, runs verify, and puts the joiner back.

let donor: TestServer;
let joiner: TestServer;

interface Report {
  ok: boolean;
  differences: { what: string; detail: string }[];
}

async function verifyJson(...extra: string[]): Promise<{ code: number | null; report: Report }> {
  const r = await reseed(['verify', '--from', donor.uri, '--to', joiner.uri, '--json', ...extra]);
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Report;
  return { code: r.code, report };
}

/** Runs `change` on the joiner (not binlogged), expects verify to name `table`, then `undo`. */
async function expectDetected(table: string, change: string[], undo: string[]): Promise<void> {
  const s = await tamperSession();
  try {
    for (const q of change) await s.query(q);
    const { code, report } = await verifyJson('--schemas', table.split('.')[0]!);
    assert.equal(code, 8, `${change.join('; ')}: ${JSON.stringify(report)}`);
    assert.deepEqual(
      report.differences.map((d) => d.what),
      [`table ${table}`],
      change.join('; '),
    );
  } finally {
    for (const q of undo) await s.query(q);
    await s.close();
  }
}

/**
 * A joiner session whose max_allowed_packet (fixed when it connects) lets it write long values;
 * verify's sessions, opened later, get the joiner's 1 MB again.
 */
async function tamperSession(): Promise<Server> {
  await joiner.sql('SET GLOBAL max_allowed_packet = 67108864');
  try {
    const s = await joiner.session();
    await s.query('SET SESSION sql_log_bin = 0');
    return s;
  } finally {
    await joiner.sql('SET GLOBAL max_allowed_packet = 1048576');
  }
}

/** pt-table-checksum's row checksum, XORed over the table: equal on both sides means it is blind. */
async function crc32Xor(server: TestServer, table: string, columns: string): Promise<string> {
  const [row] = await server.sql(
    `SELECT COUNT(*) AS n, BIT_XOR(CAST(CRC32(CONCAT_WS('#', ${columns})) AS UNSIGNED)) AS x FROM ${table}`,
  );
  return `${String(row!.n)}:${String(row!.x)}`;
}

describe('verify sees every difference', () => {
  before(async () => {
    // The joiner's smaller max_allowed_packet makes verify hash long values on their own.
    [donor, joiner] = await Promise.all([
      startServer('detect-donor'),
      startServer('detect-joiner', ['max_allowed_packet = 1M']),
    ]);
    await loadFixture(donor, 'every-type.sql');
    for (const q of [
      'CREATE DATABASE d',
      'CREATE TABLE d.same_delta (id INT PRIMARY KEY, status CHAR(1), note VARCHAR(10))',
      "INSERT INTO d.same_delta VALUES (1, 'A', 'x'), (2, 'A', 'x'), (3, 'C', 'z')",
      'CREATE TABLE d.dups (v VARCHAR(10))',
      "INSERT INTO d.dups VALUES ('r'), ('r'), ('s')",
      'CREATE TABLE d.pairs (id INT PRIMARY KEY, a VARCHAR(10) NULL, b VARCHAR(10) NULL)',
      "INSERT INTO d.pairs VALUES (1, 'ab', 'c'), (2, NULL, 'x'), (3, 'q', NULL)",
      'CREATE TABLE d.bytes (id INT PRIMARY KEY, a VARBINARY(10), b VARBINARY(10), l VARCHAR(10) CHARACTER SET latin1, m VARCHAR(10) CHARACTER SET latin1)',
      "INSERT INTO d.bytes VALUES (1, X'41FF42', X'43', _latin1 X'61FF62', _latin1 X'63')",
      'CREATE TABLE d.long_values (id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT)',
      "INSERT INTO d.long_values VALUES (1, REPEAT(X'00FF5C0A09', 600000), REPEAT('ü', 1500000))",
    ])
      await donor.sql(q);
    const r = await reseed(copyArgs(donor, joiner));
    assert.equal(r.code, 0, r.stderr);
    const { code, report } = await verifyJson();
    assert.equal(code, 0, JSON.stringify(report));
  });
  after(stopAll);

  it('the same change to two rows, which cancels out in an XOR of row CRCs', async () => {
    const s = await tamperSession();
    await s.query("UPDATE d.same_delta SET status = 'B' WHERE id IN (1, 2)");
    // The weaker fingerprint really is blind to it...
    assert.equal(
      await crc32Xor(joiner, 'd.same_delta', 'id, status, note'),
      await crc32Xor(donor, 'd.same_delta', 'id, status, note'),
    );
    await s.query("UPDATE d.same_delta SET status = 'A' WHERE id IN (1, 2)");
    await s.close();
    // ...and verify is not.
    await expectDetected(
      'd.same_delta',
      ["UPDATE d.same_delta SET status = 'B' WHERE id IN (1, 2)"],
      ["UPDATE d.same_delta SET status = 'A' WHERE id IN (1, 2)"],
    );
  });

  it('duplicate rows exchanged for other duplicates in a table without a key', async () => {
    const change = ["DELETE FROM d.dups WHERE v = 'r'", "INSERT INTO d.dups VALUES ('t'), ('t')"];
    const undo = ["DELETE FROM d.dups WHERE v = 't'", "INSERT INTO d.dups VALUES ('r'), ('r')"];
    const s = await tamperSession();
    for (const q of change) await s.query(q);
    assert.equal(await crc32Xor(joiner, 'd.dups', 'v'), await crc32Xor(donor, 'd.dups', 'v'));
    for (const q of undo) await s.query(q);
    await s.close();
    await expectDetected('d.dups', change, undo);
  });

  it('NULL against an empty string, and a value moved across a column boundary', async () => {
    await expectDetected(
      'd.pairs',
      ["UPDATE d.pairs SET a = '' WHERE id = 2"],
      ['UPDATE d.pairs SET a = NULL WHERE id = 2'],
    );
    await expectDetected(
      'd.pairs',
      ["UPDATE d.pairs SET b = '' WHERE id = 3"],
      ['UPDATE d.pairs SET b = NULL WHERE id = 3'],
    );
    await expectDetected(
      'd.pairs',
      ["UPDATE d.pairs SET a = 'a', b = 'bc' WHERE id = 1"],
      ["UPDATE d.pairs SET a = 'ab', b = 'c' WHERE id = 1"],
    );
  });

  it('bytes equal to the separator moved across a column boundary, binary and latin1', async () => {
    await expectDetected(
      'd.bytes',
      ["UPDATE d.bytes SET a = X'41', b = X'42FF43' WHERE id = 1"],
      ["UPDATE d.bytes SET a = X'41FF42', b = X'43' WHERE id = 1"],
    );
    await expectDetected(
      'd.bytes',
      ["UPDATE d.bytes SET l = _latin1 X'61', m = _latin1 X'62FF63' WHERE id = 1"],
      ["UPDATE d.bytes SET l = _latin1 X'61FF62', m = _latin1 X'63' WHERE id = 1"],
    );
  });

  it('one byte changed in values longer than max_allowed_packet', async () => {
    const [packet] = await joiner.sql('SELECT @@max_allowed_packet AS m');
    const [len] = await donor.sql('SELECT LENGTH(b) AS b, LENGTH(t) AS t FROM d.long_values');
    assert.ok(Number(len!.b) > Number(packet!.m) && Number(len!.t) > Number(packet!.m));
    await expectDetected(
      'd.long_values',
      ["UPDATE d.long_values SET b = INSERT(b, 1500000, 1, X'01')"],
      ["UPDATE d.long_values SET b = INSERT(b, 1500000, 1, X'09')"],
    );
    await expectDetected(
      'd.long_values',
      ["UPDATE d.long_values SET t = INSERT(t, 700000, 1, 'u')"],
      ["UPDATE d.long_values SET t = INSERT(t, 700000, 1, 'ü')"],
    );
  });

  // One column of each kind in every-type.sql, changed in one row.
  const columns: [string, string, string][] = [
    ['types.ints', 'bu', 'id = 2'],
    ['types.ints', 'ti', 'id = 4'],
    ['types.nums', 'd', 'id = 1'],
    ['types.nums', 'f', 'id = 2'],
    ['types.nums', 'fd', 'id = 5'],
    ['types.nums', 'b64', 'id = 1'],
    ['types.strs', 'u', 'id = 1'],
    ['types.strs', 'l', 'id = 1'],
    ['types.strs', 'c', 'id = 1'],
    ['types.strs', 'bin', 'id = 1'],
    ['types.strs', 'bl', 'id = 6'],
    ['types.strs', 't', 'id = 6'],
    ['types.strs', 'e', 'id = 1'],
    ['types.strs', 's', 'id = 1'],
    ['types.strs', 'j', 'id = 1'],
    ['types.times', 'dt', 'id = 2'],
    ['types.times', 'ts', 'id = 3'],
    ['types.times', 'tm', 'id = 4'],
    ['types.geo', 'p', 'id = 1'],
  ];
  for (const [table, column, where] of columns) {
    it(`a changed ${table}.${column}`, async () => {
      // The value is saved in a side table, changed to another of its type, and restored.
      const side = `d.saved_${column}`;
      const s = await tamperSession();
      await s.query(`CREATE TABLE ${side} AS SELECT ${column} AS v FROM ${table} WHERE ${where}`);
      await s.close();
      await expectDetected(
        table,
        [`UPDATE ${table} SET ${column} = ${changed(table, column)} WHERE ${where}`],
        [`UPDATE ${table} SET ${column} = (SELECT v FROM ${side}) WHERE ${where}`, `DROP TABLE ${side}`],
      );
    });
  }

  it('the joiner is back as the donor after every case', async () => {
    const { code, report } = await verifyJson();
    assert.equal(code, 0, JSON.stringify(report));
  });
});

/** Another value for the column, of its own type, that differs from every fixture value. */
function changed(table: string, column: string): string {
  if (table === 'types.geo') return 'POINT(1.5, -2.5)';
  if (table === 'types.times') return column === 'tm' ? "'00:00:00.000002'" : "'2001-02-03 04:05:06.000007'";
  const special: Record<string, string> = {
    bu: '18446744073709551614',
    ti: '1',
    d: "'99999999999999999999999999999999999.999999999999999999999999999998'",
    f: '1.5',
    fd: '1e-300',
    b64: "b'1111111111111111111111111111111111111111111111111111111111111110'",
    u: "'emoji 😀 and ünïcödé ✔'",
    l: "_latin1 X'E9E8E0FE'",
    c: "'pad x'",
    bin: "X'0001020300000001'",
    bl: "INSERT(bl, 1000000, 1, X'01')",
    t: "INSERT(t, 150000, 1, 'u')",
    e: "'z'",
    s: "'a,b'",
    j: '\'{"k": [1, 2.5, "y"], "n": null}\'',
  };
  return special[column]!;
}
