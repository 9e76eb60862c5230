import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  REPL_ENV,
  cloneArgs,
  createReplUser,
  otherSessions,
  reseed,
  startServer,
  stopAll,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import { assertStateIs, serverState } from '../helpers/state.js';

/**
 * Issue 7's data-loss and broken-replica cases: each failure path compares the state of both
 * servers before and after (read with plain SQL, independently of reseed's own record).
 */
let donor: TestServer;
let joiner: TestServer;
let other: TestServer;

const journalDir = () => join(process.env.RESEED_STATE_DIR!, 'journal');
const journals = () => (existsSync(journalDir()) ? readdirSync(journalDir()) : []);

async function joinerReplicatesFromOther(): Promise<void> {
  const s = await joiner.session();
  try {
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query('STOP ALL SLAVES');
    await s.query('RESET SLAVE ALL');
    await s.query('RESET MASTER');
    await s.query("SET GLOBAL gtid_slave_pos = ''");
    await s.query(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${other.info.port}, MASTER_USER='repl', MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=slave_pos`,
    );
    await s.query('START SLAVE');
  } finally {
    await s.close();
  }
  await replicaWorks();
}

/** The joiner's replication from `other` works: a write there arrives (so its password is intact). */
async function replicaWorks(): Promise<void> {
  const v = Date.now() % 1_000_000;
  await other.sql('REPLACE INTO side.t VALUES (1, ?)', [v]);
  const [pos] = await other.sql('SELECT @@gtid_binlog_pos AS g');
  const [w] = await joiner.sql('SELECT MASTER_GTID_WAIT(?, 20) AS r', [pos!.g]);
  assert.equal(Number(w!.r), 0, 'the joiner still replicates from its source');
  const [row] = await joiner.sql('SELECT v FROM side.t WHERE id = 1');
  assert.equal(Number(row!.v), v);
}

/** `clone --force --verify`, sent `signal` once `line` shows on its stderr. */
async function forcedCloneSignalled(line: string, signal: NodeJS.Signals) {
  let sent = false;
  const r = await reseed(cloneArgs(donor, joiner, '--force', '--verify'), {
    env: REPL_ENV,
    onStderr: (text, pid) => {
      if (!sent && text.includes(line)) {
        sent = true;
        process.kill(pid, signal);
      }
    },
  });
  return { r, sent };
}

async function resetJoiner(): Promise<void> {
  const s = await joiner.session();
  try {
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query('STOP ALL SLAVES');
    await s.query('RESET SLAVE ALL');
    await s.query("SET GLOBAL replicate_wild_do_table = ''");
    await s.query('SET GLOBAL read_only = OFF');
    for (const r of await s.query(
      "SELECT SCHEMA_NAME AS s FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql','information_schema','performance_schema','sys','test')",
    ))
      await s.query(`DROP DATABASE \`${String(r.s)}\``);
    await s.query('RESET MASTER');
    await s.query("SET GLOBAL gtid_slave_pos = ''");
  } finally {
    await s.close();
  }
}

async function joinerSql(statements: string[]): Promise<void> {
  const s = await joiner.session();
  try {
    await s.query('SET SESSION sql_log_bin = 0');
    for (const sql of statements) await s.query(sql);
  } finally {
    await s.close();
  }
}

describe('trust: nothing lost, nothing broken, and "as they were" checked', () => {
  before(async () => {
    [donor, joiner, other] = await Promise.all([
      startServer('trust-donor'),
      startServer('trust-joiner'),
      startServer('trust-other'),
    ]);
    await createReplUser(donor);
    await createReplUser(other);
    await other.sql('CREATE DATABASE side');
    await other.sql('CREATE TABLE side.t (id INT PRIMARY KEY, v INT)');
    for (const db of ['crm', 'shop']) {
      await donor.sql(`CREATE DATABASE ${db}`);
      await donor.sql(`CREATE TABLE ${db}.t (id INT PRIMARY KEY, v VARCHAR(20))`);
      await donor.sql(`INSERT INTO ${db}.t SELECT seq, CONCAT('${db}-', seq) FROM ${db}.seq_1_to_500`);
    }
  });
  after(stopAll);
  beforeEach(resetJoiner);

  it('--schemas with --force replaces only the named schemas; the others are kept, and the plan says so first', async () => {
    await joinerSql([
      'CREATE DATABASE crm',
      'CREATE TABLE crm.t (id INT PRIMARY KEY, v VARCHAR(20))',
      "INSERT INTO crm.t VALUES (1, 'joiner')",
      'CREATE DATABASE keepme',
      'CREATE TABLE keepme.t (id INT PRIMARY KEY)',
      'INSERT INTO keepme.t VALUES (7)',
      'CREATE DATABASE other',
      'CREATE VIEW other.v AS SELECT 1 AS one',
    ]);
    const beforeState = await serverState(joiner);
    const dry = await reseed(cloneArgs(donor, joiner, '--schemas', 'crm', '--force', '--dry-run'), {
      env: REPL_ENV,
    });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stderr, /Plan \(dry run: nothing will be changed\):/);
    assert.match(dry.stderr, /replace on the joiner: crm \(1 objects\)/);
    assert.match(dry.stderr, /keep on the joiner, untouched: keepme, other, test/);
    assert.match(dry.stderr, /limited to crm \(replicate_wild_do_table crm\.%\)/);
    assert.doesNotMatch(dry.stderr, /- copy/);
    await assertStateIs(joiner, beforeState);
    assert.deepEqual(journals(), [], 'a dry run leaves no journal');

    const r = await reseed(cloneArgs(donor, joiner, '--schemas', 'crm', '--force'), { env: REPL_ENV });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /kept\s+keepme, other, test/);
    assert.deepEqual(
      (await joiner.sql('SELECT id FROM keepme.t')).map((x) => Number(x.id)),
      [7],
    );
    assert.equal(Number((await joiner.sql('SELECT one FROM other.v'))[0]!.one), 1);
    assert.equal(Number((await joiner.sql('SELECT COUNT(*) AS n FROM crm.t'))[0]!.n), 500);
    // Replication is limited to crm: a donor write elsewhere does not stop the replica (item 6).
    const [st] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(st!.Replicate_Wild_Do_Table, 'crm.%');
    await donor.sql("INSERT INTO shop.t VALUES (1000, 'not copied')");
    await donor.sql("INSERT INTO crm.t VALUES (1000, 'copied')");
    const [pos] = await donor.sql('SELECT @@gtid_binlog_pos AS g');
    const [w] = await joiner.sql('SELECT MASTER_GTID_WAIT(?, 20) AS r', [pos!.g]);
    assert.equal(Number(w!.r), 0);
    const [after] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(after!.Slave_SQL_Running, 'Yes', String(after!.Last_SQL_Error));
    assert.equal((await joiner.sql('SELECT v FROM crm.t WHERE id = 1000'))[0]!.v, 'copied');
    await donor.sql('DELETE FROM shop.t WHERE id = 1000');
    await donor.sql('DELETE FROM crm.t WHERE id = 1000');
  });

  it('without --force, data the donor does not have is refused (naming --schemas as the way to keep it)', async () => {
    await joinerSql(['CREATE DATABASE keepme', 'CREATE TABLE keepme.t (id INT PRIMARY KEY)']);
    const beforeState = await serverState(joiner);
    const had = journals();
    const r = await reseed(cloneArgs(donor, joiner), { env: REPL_ENV });
    assert.equal(r.code, 4, r.stderr);
    assert.match(
      r.stderr,
      /the joiner holds data the donor does not have, in keepme: use --force .* or name the schemas/,
    );
    await assertStateIs(joiner, beforeState);
    assert.deepEqual(journals(), had, 'a refusal leaves no journal');
  });

  it('a joiner that replicates from another server keeps that replication, password and all, when the clone fails', async () => {
    await joinerReplicatesFromOther();
    for (const fault of ['copied', 'caught-up']) {
      const beforeState = await serverState(joiner, { positions: false });
      const donorBefore = await serverState(donor, { positions: false });
      const r = await reseed(cloneArgs(donor, joiner, '--force'), {
        env: { ...REPL_ENV, RESEED_FAULT: fault },
      });
      assert.match(r.stderr, new RegExp(`fault injected at ${fault}`));
      assert.match(
        r.stderr,
        /replace the joiner's replication from 127\.0\.0\.1:\d+ once the clone is verified/,
      );
      assert.match(r.stderr, /every change was undone/);
      // Its binary log held the other server's transactions: --force deleted it (the plan said so).
      if (fault === 'caught-up') {
        assert.equal(r.code, 11, r.stderr);
        assert.match(
          r.stderr,
          /not undone \(it cannot be, as the plan said\): delete the joiner's binary logs/,
        );
      }
      await assertStateIs(joiner, beforeState, { positions: false });
      await assertStateIs(donor, donorBefore, { positions: false });
      await replicaWorks();
    }
  });

  it('Ctrl-C during --verify leaves the previous replication working', async () => {
    await joinerReplicatesFromOther();
    const beforeState = await serverState(joiner, { positions: false });
    const { r, sent } = await forcedCloneSignalled('- verify', 'SIGINT');
    assert.ok(sent, r.stderr);
    assert.ok(r.code === 130 || r.code === 11, r.stderr);
    assert.match(r.stderr, /interrupted by SIGINT/);
    await assertStateIs(joiner, beforeState, { positions: false });
    await replicaWorks();
  });

  it('re-seeds a replica of the donor itself: its connection is parked, and given back with its password on failure', async () => {
    // The joiner replicates from the donor already, as another account with another password.
    await donor.sql("CREATE USER IF NOT EXISTS 'repl2'@'127.0.0.1' IDENTIFIED BY 'other-secret'");
    await donor.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl2'@'127.0.0.1'");
    await joinerSql([
      'RESET MASTER',
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${donor.info.port}, MASTER_USER='repl2', MASTER_PASSWORD='other-secret', MASTER_USE_GTID=slave_pos`,
      'START SLAVE',
    ]);
    const [pos] = await donor.sql('SELECT @@gtid_binlog_pos AS g');
    await joiner.sql('SELECT MASTER_GTID_WAIT(?, 20)', [pos!.g]);
    const failed = await reseed(cloneArgs(donor, joiner, '--force'), {
      env: { ...REPL_ENV, RESEED_FAULT: 'caught-up' },
    });
    assert.match(failed.stderr, /fault injected at caught-up/);
    assert.match(failed.stderr, /every change was undone/);
    const [st] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(st!.Master_Host, '127.0.0.1');
    assert.equal(st!.Master_User, 'repl2');
    for (let i = 0; i < 40 && (await joiner.sql('SHOW SLAVE STATUS'))[0]!.Slave_IO_Running !== 'Yes'; i++)
      await new Promise((r) => setTimeout(r, 250));
    const [again] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(again!.Slave_IO_Running, 'Yes', `its password still works: ${String(again!.Last_IO_Error)}`);
    const ok = await reseed(cloneArgs(donor, joiner, '--force'), { env: REPL_ENV });
    assert.equal(ok.code, 0, ok.stderr);
    const all = await joiner.sql('SHOW ALL SLAVES STATUS');
    assert.equal(all.length, 1);
    assert.equal(all[0]!.Master_User, 'repl');
    assert.equal(all[0]!.Slave_IO_Running, 'Yes');
  });

  it('a successful clone replaces the previous replication, and says so', async () => {
    await joinerReplicatesFromOther();
    const r = await reseed(cloneArgs(donor, joiner, '--force'), { env: REPL_ENV });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /replaced\s+the joiner's previous replication from 127\.0\.0\.1:\d+/);
    const all = await joiner.sql('SHOW ALL SLAVES STATUS');
    assert.equal(all.length, 1, 'one connection: no staged or probe connection left');
    assert.equal(all[0]!.Connection_name, '');
    assert.equal(Number(all[0]!.Master_Port), donor.info.port);
    assert.equal(all[0]!.Slave_IO_Running, 'Yes');
  });

  it('refuses a joiner whose binary log holds GTIDs of its own without --force, in one line', async () => {
    await joiner.sql("CREATE USER 'local'@'%'"); // written to the joiner's binary log
    const beforeState = await serverState(joiner);
    const r = await reseed(cloneArgs(donor, joiner), { env: REPL_ENV });
    assert.equal(r.code, 4, r.stderr);
    assert.match(
      r.stderr,
      /the joiner's binary log holds transactions \(GTID 0-\d+-\d+: .*\) .* RESET MASTER .* --force/,
    );
    await assertStateIs(joiner, beforeState);
    await joiner.sql("DROP USER 'local'@'%'");
  });

  it('--no-replicate removes the previous replication (the plan says so) and refuses contradicting flags', async () => {
    await joinerReplicatesFromOther();
    const beforeState = await serverState(joiner);
    const bad = await reseed(
      ['clone', '--from', donor.uri, '--to', joiner.uri, '--no-replicate', '--replication-user', 'repl'],
      { env: REPL_ENV },
    );
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--no-replicate contradicts --replication-user/);
    await assertStateIs(joiner, beforeState);
    const r = await reseed(['clone', '--from', donor.uri, '--to', joiner.uri, '--no-replicate', '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /remove the joiner's replication from 127\.0\.0\.1:\d+ once the copy is done/);
    assert.match(r.stdout + r.stderr, /replication\s+not configured/);
    assert.match(
      r.stdout + r.stderr,
      /replaced\s+the joiner's previous replication from 127\.0\.0\.1:\d+ \(removed\)/,
    );
    assert.deepEqual(await joiner.sql('SHOW ALL SLAVES STATUS'), []);
  });

  it('checks the replication account in preflight: missing, wrong password, unreachable host', async () => {
    const beforeState = await serverState(joiner);
    const had = journals();
    const cases: [string[], Record<string, string>, RegExp][] = [
      [
        ['--replication-user', 'nobody'],
        REPL_ENV,
        /the replication account nobody does not exist on the donor/,
      ],
      [[], { RESEED_REPLICATION_PASSWORD: 'wrong' }, /cannot replicate from .* as repl: .*Access denied/],
      [
        ['--replication-host', '127.0.0.1:1'],
        REPL_ENV,
        /cannot replicate from 127\.0\.0\.1:1 as repl: .*Can't connect/,
      ],
      // Another server with the same account and password: reached, but it is not the donor.
      [
        ['--replication-host', `127.0.0.1:${other.info.port}`],
        REPL_ENV,
        /the server at 127\.0\.0\.1:\d+ is not the donor \(its server_id is \d+/,
      ],
      [[], {}, /no password for the replication account repl/],
    ];
    for (const [extra, env, message] of cases) {
      const t = Date.now();
      const r = await reseed([...cloneArgs(donor, joiner), ...extra], { env });
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, message);
      assert.ok(Date.now() - t < 30_000, 'refused quickly');
      await assertStateIs(joiner, beforeState);
      assert.deepEqual(journals(), had, 'a refusal leaves no journal');
    }
    assert.deepEqual(await otherSessions(donor).then((s) => s.filter((x) => x.USER === 'repl')), []);
  });

  it('a kill -9 at each step of the move aside is undone by recover, every table back', async () => {
    const tables = Array.from({ length: 60 }, (_, i) => `t${i}`);
    await joinerSql([
      'CREATE DATABASE crm',
      ...tables.map((t) => `CREATE TABLE crm.${t} (id INT PRIMARY KEY)`),
      ...tables.map((t, i) => `INSERT INTO crm.${t} VALUES (${i})`),
      'CREATE VIEW crm.v AS SELECT COUNT(*) AS n FROM crm.t1',
      'CREATE TRIGGER crm.tr BEFORE INSERT ON crm.t0 FOR EACH ROW SET NEW.id = NEW.id + 1',
      'CREATE FUNCTION crm.f() RETURNS INT DETERMINISTIC RETURN 42',
    ]);
    const beforeState = await serverState(joiner);
    for (const point of [
      'move-aside:objects-saved',
      'move-aside:tables-moved',
      'joiner-prepared',
      'copied',
    ]) {
      const r = await reseed(cloneArgs(donor, joiner, '--schemas', 'crm', '--force'), {
        env: { ...REPL_ENV, RESEED_FAULT: `${point}:kill` },
      });
      assert.equal(r.code, null, `${point}: ${r.stderr}`);
      const rec = await reseed(['recover']);
      assert.equal(rec.code, 0, `${point}: ${rec.stdout}${rec.stderr}`);
      assert.match(rec.stdout, /donor and joiner are as they were/);
      await assertStateIs(joiner, beforeState);
    }
  });

  it('refuses a second operation on the joiner: one holding its lock, or one that did not finish', async () => {
    const beforeState = await serverState(joiner);
    const holder = await joiner.session();
    try {
      await holder.query("SELECT GET_LOCK('reseed:joiner', 0)");
      const busy = await reseed(cloneArgs(donor, joiner), { env: REPL_ENV });
      assert.equal(busy.code, 4, busy.stderr);
      assert.match(
        busy.stderr,
        /another reseed operation is working on the joiner \(its session \d+ holds the lock/,
      );
      const verifying = await reseed(['verify', '--from', donor.uri, '--to', joiner.uri]);
      assert.equal(verifying.code, 4, verifying.stderr);
      assert.match(verifying.stderr, /another reseed operation is working on the joiner/);
    } finally {
      await holder.close();
    }
    await assertStateIs(joiner, beforeState);
    const killed = await reseed(cloneArgs(donor, joiner), {
      env: { ...REPL_ENV, RESEED_FAULT: 'copied:kill' },
    });
    assert.equal(killed.code, null);
    const again = await reseed(cloneArgs(donor, joiner), { env: REPL_ENV });
    assert.equal(again.code, 4, again.stderr);
    assert.match(
      again.stderr,
      /an earlier reseed clone on the joiner did not finish: run `reseed recover` first \(journal .*\.jsonl\)/,
    );
    const rec = await reseed(['recover']);
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    await assertStateIs(joiner, beforeState);
  });

  it('kill -9 during --verify, then recover: as they were, the previous replication working', async () => {
    await joinerReplicatesFromOther();
    const beforeState = await serverState(joiner, { positions: false });
    const { r, sent } = await forcedCloneSignalled('- verify', 'SIGKILL');
    assert.ok(sent && r.code === null, r.stderr);
    const rec = await reseed(['recover']);
    // The joiner's binary log was deleted as planned: the only difference, and recover says so.
    assert.equal(rec.code, 11, rec.stdout + rec.stderr);
    assert.match(
      rec.stdout,
      /not undone \(it cannot be, as the plan said\): delete the joiner's binary logs/,
    );
    assert.match(rec.stdout, /donor and joiner are as they were, but for what could not be undone/);
    await assertStateIs(joiner, beforeState, { positions: false });
    await replicaWorks();
  });

  it('recover never replays a committed journal, and --list never writes', async () => {
    const r = await reseed(cloneArgs(donor, joiner, '--json'), { env: REPL_ENV });
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { journal: string };
    const beforeState = await serverState(joiner, { positions: false });
    for (const args of [
      ['--list', '--journal', summary.journal],
      ['--journal', summary.journal],
    ]) {
      const rec = await reseed(['recover', ...args]);
      assert.equal(rec.code, 0, rec.stderr);
      assert.match(rec.stdout, /finished \(committed\): nothing is owed, nothing will be run/);
    }
    assert.equal((await reseed(['recover', '--list'])).stdout.trim(), 'nothing to recover');
    await assertStateIs(joiner, beforeState, { positions: false });
  });
});
