import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  REPL_ENV,
  createReplUser,
  reseed,
  schemas,
  startServer,
  stopAll,
  cloneArgs,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;
let joiner: TestServer;

async function joinerOld(): Promise<string[]> {
  return (await joiner.sql('SELECT v FROM old.keep ORDER BY v')).map((r) => String(r.v));
}

async function assertJoinerAsBefore(): Promise<void> {
  assert.deepEqual(await schemas(joiner), ['old', 'shop', 'test']);
  assert.deepEqual(await joinerOld(), ['a', 'b']);
  const [t] = await joiner.sql('SELECT v FROM shop.t');
  assert.equal(t!.v, 'joiner');
  await joiner.sql('SET SESSION sql_log_bin = 0');
  const s = await joiner.session();
  try {
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query("INSERT INTO old.keep VALUES ('c')");
    assert.deepEqual(
      (await s.query('SELECT v FROM old.keep ORDER BY v')).map((r) => String(r.v)),
      ['a', 'b', 'C'],
      'the trigger is back',
    );
    await s.query("DELETE FROM old.keep WHERE v = 'C'");
  } finally {
    await s.close();
  }
  assert.equal(Number((await joiner.sql('SELECT old.f() AS f'))[0]!.f), 7);
  assert.equal((await joiner.sql('SELECT COUNT(*) AS n FROM old.v'))[0]!.n, '2');
  assert.deepEqual(
    await joiner.sql("SELECT User FROM mysql.user WHERE User IN ('app', 'aaa_ro', 'reader')"),
    [],
    'the copied accounts and role were dropped',
  );
  const [st] = await joiner.sql('SHOW SLAVE STATUS');
  assert.equal(st, undefined, 'no replication left configured');
  assert.deepEqual(await joiner.sql('SHOW ALL SLAVES STATUS'), []);
}

describe('--force and --users', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('force-donor'), startServer('force-joiner')]);
    await donor.sql('CREATE DATABASE shop');
    await donor.sql('CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(10))');
    await donor.sql("INSERT INTO shop.t VALUES (1, 'donor')");
    await donor.sql("CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw'");
    await donor.sql("GRANT SELECT, INSERT ON shop.* TO 'app'@'%'");
    // A role, granted to an account that sorts before it, and that account's default role.
    await donor.sql('CREATE ROLE reader');
    await donor.sql('GRANT SELECT ON shop.* TO reader');
    await donor.sql("CREATE USER 'aaa_ro'@'%' IDENTIFIED BY 'ro-pw'");
    await donor.sql("GRANT reader TO 'aaa_ro'@'%'");
    await donor.sql("SET DEFAULT ROLE reader FOR 'aaa_ro'@'%'");
    await createReplUser(donor);
    // The joiner's own data, with a view, a trigger and a routine that must come back intact.
    await joiner.sql('CREATE DATABASE old');
    await joiner.sql('CREATE TABLE old.keep (v VARCHAR(10))');
    await joiner.sql("INSERT INTO old.keep VALUES ('a'), ('b')");
    await joiner.sql('CREATE VIEW old.v AS SELECT v FROM old.keep');
    await joiner.sql('CREATE TRIGGER old.tr BEFORE INSERT ON old.keep FOR EACH ROW SET NEW.v = UPPER(NEW.v)');
    await joiner.sql('CREATE FUNCTION old.f() RETURNS INT DETERMINISTIC RETURN 7');
    await joiner.sql('CREATE DATABASE shop');
    await joiner.sql('CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(10))');
    await joiner.sql("INSERT INTO shop.t VALUES (1, 'joiner')");
  });
  after(stopAll);

  it('a wrong replication password is refused before anything changes', async () => {
    const r = await reseed(cloneArgs(donor, joiner, '--force', '--users'), {
      env: { RESEED_REPLICATION_PASSWORD: 'wrong' },
    });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /the joiner cannot replicate from 127\.0\.0\.1:\d+ as repl: .*Access denied/);
    assert.match(r.stderr, /nothing was changed/);
    await assertJoinerAsBefore();
  });

  it("a --force clone that fails after the copy puts the joiner's data back as it was", async () => {
    const r = await reseed(cloneArgs(donor, joiner, '--force', '--users'), {
      env: { ...REPL_ENV, RESEED_FAULT: 'caught-up' },
    });
    assert.equal(r.code, 11, r.stderr);
    assert.match(r.stderr, /fault injected at caught-up/);
    assert.match(r.stderr, /every change was undone/);
    // The plan said so: the joiner's own binary log had to go (RESET MASTER), and the comparison says so.
    assert.match(r.stderr, /delete the joiner's binary logs/);
    assert.match(r.stderr, /these differ:\n\s+joiner: binary log GTID position was '0-\d+-\d+', now ''/);
    await assertJoinerAsBefore();
  });

  it("--force replaces the joiner's data and --users copies accounts", async () => {
    const r = await reseed(cloneArgs(donor, joiner, '--force', '--users'), { env: REPL_ENV });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      await schemas(joiner),
      ['shop', 'test'],
      "the joiner holds the donor's data only; nothing left aside",
    );
    assert.match(r.stderr, /DROP from the joiner \(the donor has no such schema\): old/, 'the plan said so');
    assert.match(r.stdout, /dropped\s+old \(not on the donor; --force\)/, 'and the summary, on stdout');
    const [t] = await joiner.sql('SELECT v FROM shop.t');
    assert.equal(t!.v, 'donor');
    const grants = await joiner.sql("SHOW GRANTS FOR 'app'@'%'");
    assert.match(String(Object.values(grants[1]!)[0]), /GRANT SELECT, INSERT ON `shop`\.\* TO `app`@`%`/);
    const [a] = await donor.sql("SELECT authentication_string AS h FROM mysql.user WHERE User = 'app'");
    const [b] = await joiner.sql("SELECT authentication_string AS h FROM mysql.user WHERE User = 'app'");
    assert.equal(b!.h, a!.h, 'same password hash');
    const [role] = await joiner.sql("SELECT is_role AS r FROM mysql.user WHERE User = 'reader'");
    assert.equal(role!.r, 'Y', 'the role is copied as a role');
    const roleGrants = (await joiner.sql('SHOW GRANTS FOR reader')).map((g) => String(Object.values(g)[0]));
    assert.ok(roleGrants.includes('GRANT SELECT ON `shop`.* TO `reader`'), roleGrants.join('\n'));
    const userGrants = (await joiner.sql("SHOW GRANTS FOR 'aaa_ro'@'%'")).map((g) =>
      String(Object.values(g)[0]),
    );
    assert.ok(userGrants.includes('GRANT `reader` TO `aaa_ro`@`%`'), userGrants.join('\n'));
    const [d] = await joiner.sql("SELECT default_role AS d FROM mysql.user WHERE User = 'aaa_ro'");
    assert.equal(d!.d, 'reader', 'the default role too');
  });
});
