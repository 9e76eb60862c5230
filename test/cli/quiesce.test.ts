import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { otherSessions, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

/**
 * reseed quiesce against a real sandbox: the lock held while a command runs (a commit from
 * another session waits), released when it ends, fails, hangs past --max-lock-time or is
 * interrupted; freeze and thaw with a holder that outlives freeze and never outlives its bound.
 */
let server: TestServer;
const SECRET = 'quiesce-secret-pw';
const env = { MYSQL_PWD: SECRET };
let uri: string;
const sock = () => join(server.info.dir, 'mariadbd.sock');
const work = join(process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test', `quiesce-${process.pid}`);

/** A shell snippet: an INSERT with a 1 s lock wait; exits 0 only if the INSERT timed out waiting for the lock. */
const blockedInsert = () =>
  `MYSQL_PWD= mariadb -S ${sock()} -uroot -e "SET SESSION lock_wait_timeout = 1; INSERT INTO q.t VALUES (NULL)" 2>&1 | grep -q "Lock wait timeout"`;

/** A commit from another session goes through at once: nothing is locked. */
async function assertUnlocked(): Promise<void> {
  const s = await server.session();
  try {
    await s.query('SET SESSION lock_wait_timeout = 2');
    await s.query('INSERT INTO q.t VALUES (NULL)');
  } finally {
    await s.close();
  }
  assert.deepEqual(await otherSessions(server), [], 'no session of ours is left');
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('reseed quiesce', () => {
  before(async () => {
    server = await startServer('quiesce');
    await server.sql('CREATE DATABASE q');
    await server.sql('CREATE TABLE q.t (id INT AUTO_INCREMENT PRIMARY KEY)');
    await server.sql(`CREATE USER snap@'127.0.0.1' IDENTIFIED BY '${SECRET}'`);
    await server.sql(
      `GRANT RELOAD, PROCESS, BINLOG MONITOR, SLAVE MONITOR, SELECT ON *.* TO snap@'127.0.0.1'`,
    );
    uri = `mysql://snap@127.0.0.1:${server.info.port}`;
  });
  after(stopAll);

  it('holds the lock while COMMAND runs (a commit waits), gives it the coordinates, prints them, releases', async () => {
    const r = await reseed(
      [
        'quiesce',
        '--server',
        uri,
        '--coordinates-file',
        `${work}.json`,
        '--',
        'sh',
        '-c',
        `echo "gtid=$RESEED_GTID"; ${blockedInsert()}`,
      ],
      { env, signal: AbortSignal.timeout(60_000) },
    );
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      gtid: string;
      lockHeldMs: number;
      lockMode: string;
      binlog: { file: string };
    };
    const [g] = await server.sql('SELECT @@gtid_binlog_pos AS g');
    assert.equal(out.gtid, String(g?.g), 'the coordinates are the position while locked');
    assert.match(
      r.stderr,
      new RegExp(`gtid=${out.gtid}`),
      "COMMAND's output goes to stderr, with the coordinates in its environment",
    );
    assert.equal(out.lockMode, 'backup-stage');
    assert.ok(out.lockHeldMs >= 900, `held ${out.lockHeldMs} ms: the INSERT waited its second`);
    assert.deepEqual(JSON.parse(readFileSync(`${work}.json`, 'utf8')), out);
    await assertUnlocked();
  });

  it('a COMMAND that fails: exit 10, no coordinates, the lock released', async () => {
    const r = await reseed(['quiesce', '--server', uri, '--', 'sh', '-c', 'exit 3'], { env });
    assert.equal(r.code, 10, r.stderr);
    assert.match(r.stderr, /COMMAND exited 3; the lock was held \d+ ms and is released/);
    assert.equal(r.stdout, '');
    await assertUnlocked();
  });

  it('a COMMAND still running at --max-lock-time: stopped, the lock released, exit 5', async () => {
    const pidFile = `${work}.pid`;
    const started = Date.now();
    const r = await reseed(
      [
        'quiesce',
        '--server',
        uri,
        '--max-lock-time',
        '1s',
        '--',
        'sh',
        '-c',
        `echo $$ > ${pidFile}; exec sleep 60`,
      ],
      { env, signal: AbortSignal.timeout(30_000) },
    );
    assert.equal(r.code, 5, r.stderr);
    assert.match(
      r.stderr,
      /still running at --max-lock-time \(1000 ms\): it was stopped and the lock released/,
    );
    assert.ok(Date.now() - started < 10_000);
    assert.equal(alive(Number(readFileSync(pidFile, 'utf8'))), false, 'COMMAND was stopped');
    await assertUnlocked();
  });

  it('Ctrl-C while COMMAND runs: COMMAND stopped, the lock released, exit 130', async () => {
    let sent = false;
    const r = await reseed(['quiesce', '--server', uri, '--', 'sh', '-c', 'echo ready >&2; exec sleep 60'], {
      env,
      signal: AbortSignal.timeout(30_000),
      onStderr: (text, pid) => {
        if (text.includes('ready') && !sent) {
          sent = true;
          process.kill(pid, 'SIGINT');
        }
      },
    });
    assert.equal(r.code, 130, r.stderr);
    await assertUnlocked();
  });

  it("freeze, then thaw: the lock outlives freeze and ends at thaw; no password on the holder's command line", async () => {
    const f = await reseed(['quiesce', 'freeze', '--server', uri], {
      env,
      signal: AbortSignal.timeout(60_000),
    });
    assert.equal(f.code, 0, f.stderr);
    const frozen = JSON.parse(f.stdout) as { holder: number; gtid: string; state: string };
    assert.ok(alive(frozen.holder));
    assert.ok(!readFileSync(`/proc/${frozen.holder}/cmdline`, 'utf8').includes(SECRET));
    assert.ok(!readFileSync(frozen.state, 'utf8').includes(SECRET), 'nor in its state file');
    // Locked between the two scripts: a commit waits.
    const s = await server.session();
    try {
      await s.query('SET SESSION lock_wait_timeout = 1');
      await assert.rejects(s.query('INSERT INTO q.t VALUES (NULL)'), /Lock wait timeout/);
    } finally {
      await s.close();
    }
    const t = await reseed(['quiesce', 'thaw', '--server', uri]);
    assert.equal(t.code, 0, t.stderr);
    assert.ok((JSON.parse(t.stdout) as { lockHeldMs: number }).lockHeldMs > 0);
    for (let i = 0; i < 50 && alive(frozen.holder); i++) await sleep(100);
    assert.equal(alive(frozen.holder), false);
    assert.equal(existsSync(frozen.state), false);
    await assertUnlocked();
    const again = await reseed(['quiesce', 'thaw', '--server', uri]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /nothing is frozen/);
  });

  it('freeze without thaw: released at --max-lock-time; a late thaw says so (exit 5)', async () => {
    const f = await reseed(['quiesce', 'freeze', '--server', uri, '--max-lock-time', '1s'], { env });
    assert.equal(f.code, 0, f.stderr);
    const frozen = JSON.parse(f.stdout) as { holder: number };
    for (let i = 0; i < 100 && alive(frozen.holder); i++) await sleep(100);
    assert.equal(alive(frozen.holder), false, 'the holder ends at its bound');
    await assertUnlocked();
    const t = await reseed(['quiesce', 'thaw', '--server', uri]);
    assert.equal(t.code, 5, t.stderr);
    assert.match(t.stderr, /released at --max-lock-time \(1000 ms\) before thaw/);
  });

  it('the holder killed (kill -9): the server drops its lock with its session; thaw says it is gone (exit 5)', async () => {
    const f = await reseed(['quiesce', 'freeze', '--server', uri], { env });
    assert.equal(f.code, 0, f.stderr);
    const frozen = JSON.parse(f.stdout) as { holder: number };
    process.kill(frozen.holder, 'SIGKILL');
    for (let i = 0; i < 50 && alive(frozen.holder); i++) await sleep(100);
    for (let i = 0; i < 50 && (await otherSessions(server)).length; i++) await sleep(100);
    await assertUnlocked();
    const t = await reseed(['quiesce', 'thaw', '--server', uri]);
    assert.equal(t.code, 5, t.stderr);
    assert.match(t.stderr, /is gone without releasing \(killed\?\): its lock ended with its session/);
  });

  it('refusals: no command, no --server, a second freeze while frozen', async () => {
    let r = await reseed(['quiesce', '--server', uri]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing required argument 'command'/);
    r = await reseed(['quiesce', 'freeze']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--server is required/);
    const f = await reseed(['quiesce', 'freeze', '--server', uri], { env });
    assert.equal(f.code, 0, f.stderr);
    try {
      r = await reseed(['quiesce', 'freeze', '--server', uri], { env });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /is frozen already by holder \d+/);
    } finally {
      assert.equal((await reseed(['quiesce', 'thaw', '--server', uri])).code, 0);
    }
    await assertUnlocked();
  });
});
