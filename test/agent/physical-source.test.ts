import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JobRecord } from '../../src/agent/jobs.js';
import { sandboxAgentDown, sandboxAgentUp } from '../../src/agent/sandbox-agent.js';
import { agentCloneArgs, checksum, restartAgent, sandboxInfo } from '../helpers/clone-agents.js';
import { REPL_ENV, createReplUser, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

/**
 * Physical clones of a donor that is itself a replica (primary -> donor), through agents: with
 * --replicate-from source the joiner follows the primary from the donor's position in its stream
 * as the copy holds it (mysql.gtid_slave_pos); the donor goes on replicating afterwards. The donor
 * and the joiner have their datadirs on btrfs, so the snapshot method runs too: it pauses the
 * donor's applier for the lock and starts it again, also after a kill -9 of the donor's agent.
 */
let primary: TestServer;
let donor: TestServer;
let joiner: TestServer;

async function caughtUp(replica: TestServer, source: TestServer): Promise<void> {
  const [pos] = await source.sql('SELECT @@gtid_binlog_pos AS g');
  const [w] = await replica.sql('SELECT MASTER_GTID_WAIT(?, 30) AS r', [pos!.g]);
  assert.equal(Number(w!.r), 0);
}

describe('physical clones of a donor that is a replica', () => {
  before(async () => {
    [primary, donor, joiner] = await Promise.all([
      startServer('ps-primary'),
      startServer('ps-donor', [], { fs: 'btrfs' }),
      startServer('ps-joiner', [], { fs: 'btrfs' }),
    ]);
    await createReplUser(primary);
    await primary.sql('CREATE DATABASE app');
    await primary.sql('CREATE TABLE app.t (id INT PRIMARY KEY, v INT)');
    await primary.sql('INSERT INTO app.t SELECT seq, seq FROM app.seq_1_to_20000');
    await donor.sql(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.info.port}, MASTER_USER='repl', MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=slave_pos`,
    );
    await donor.sql('START SLAVE');
    await caughtUp(donor, primary);
    // A write of the donor's own: its binlog position then names a GTID the primary never had, so
    // following the primary works only from the donor's position in the primary's stream.
    await donor.sql('CREATE DATABASE donor_own');
    await sandboxAgentUp(sandboxInfo(donor));
    await sandboxAgentUp(sandboxInfo(joiner));
  });
  after(async () => {
    for (const s of [donor, joiner]) if (s) await sandboxAgentDown(sandboxInfo(s)).catch(() => undefined);
    await stopAll();
  });

  it("--method snapshot, the donor's agent killed (kill -9) under the lock: its next start removes the snapshot and starts the paused applier again", async () => {
    await restartAgent(donor, 'snapshot-locked:kill');
    try {
      const r = await reseed(agentCloneArgs(donor, joiner, 'snapshot', '--force', '--resume-timeout', '3s'), {
        env: REPL_ENV,
        signal: AbortSignal.timeout(120_000),
      });
      assert.notEqual(r.code, 0);
      const [paused] = await donor.sql('SHOW SLAVE STATUS');
      assert.equal(paused!.Slave_SQL_Running, 'No', 'the killed agent had paused the applier');
    } finally {
      await restartAgent(donor);
    }
    for (let until = Date.now() + 15_000; ; await new Promise((r) => setTimeout(r, 200))) {
      const [st] = await donor.sql('SHOW SLAVE STATUS');
      if (st!.Slave_SQL_Running === 'Yes') break;
      assert.ok(Date.now() < until, "the donor's applier was not started again");
    }
    const datadir = sandboxInfo(donor).datadir;
    const folder = join(dirname(datadir), `.reseed-snapshots-${basename(datadir)}`);
    const snapshots = (existsSync(folder) ? readdirSync(folder) : []).filter((n) =>
      n.startsWith('reseed-tmp-'),
    );
    assert.deepEqual(snapshots, [], 'no temporary snapshot is left');
    await primary.sql('INSERT INTO app.t VALUES (?, 0)', [2_000_000 + Math.floor(Math.random() * 1e6)]);
    await caughtUp(donor, primary);
  });

  it("--method snapshot, Ctrl-C while the donor's lock waits for a long query: the wait ends at once, its applier never stopped", async () => {
    const blocker = await donor.session();
    const sleeping = blocker.query('SELECT SLEEP(40)').catch(() => undefined);
    try {
      // A query running over 10 s (the lock policy's long query) keeps the lock waiting.
      await new Promise((r) => setTimeout(r, 10_500));
      let pid = 0;
      const run = reseed(agentCloneArgs(donor, joiner, 'snapshot', '--force', '--lock-wait-timeout', '60s'), {
        env: REPL_ENV,
        signal: AbortSignal.timeout(120_000),
        onStderr: (_text, p) => (pid = p),
      });
      await new Promise((r) => setTimeout(r, 3000));
      const [waiting] = await donor.sql('SHOW SLAVE STATUS');
      assert.equal(waiting!.Slave_SQL_Running, 'Yes', 'the applier runs while the lock waits');
      process.kill(pid, 'SIGINT');
      const r = await run;
      assert.equal(r.code, 130, r.stderr);
      const [st] = await donor.sql('SHOW SLAVE STATUS');
      assert.equal(st!.Slave_SQL_Running, 'Yes');
      // The donor's agent stopped waiting: once the long query is gone it takes no lock and no
      // snapshot for the cancelled clone (it did, before, 47 s later).
      blocker.destroy();
      await sleeping;
      await new Promise((r) => setTimeout(r, 3000));
      const datadir = sandboxInfo(donor).datadir;
      const folder = join(dirname(datadir), `.reseed-snapshots-${basename(datadir)}`);
      assert.deepEqual(
        (existsSync(folder) ? readdirSync(folder) : []).filter((n) => n.startsWith('reseed-tmp-')),
        [],
      );
      const log = readFileSync(join(sandboxInfo(donor).dir, 'agent', 'agent.log'), 'utf8');
      assert.doesNotMatch(log.split('joiner went away').at(-1) ?? '', /snapshot taken/);
    } finally {
      blocker.destroy();
      await sleeping;
    }
  });

  for (const [method, whom] of [
    // A snapshot clone last too: the datadir a copy or mariabackup clone swapped in is a btrfs
    // subvolume again, which a snapshot clone can replace.
    ['snapshot', 'source'],
    ['mariabackup', 'source'],
    ['copy', 'source'],
    ['copy', 'donor'],
    ['snapshot', 'donor'],
  ] as const)
    it(`--method ${method} --replicate-from ${whom}: the joiner follows the ${whom}, verified under writes on the primary; the donor replicates on`, async () => {
      // The primary takes writes throughout: the donor and the joiner both move on while the
      // clone verifies (compared live with the donor, a joiner that follows the source differed).
      let writing = true;
      const writer = (async () => {
        const w = await primary.session();
        try {
          for (let i = 0; writing; i++) {
            await w.query('INSERT INTO app.t VALUES (?, 1) ON DUPLICATE KEY UPDATE v = v + 1', [
              5_000_000 + (i % 500),
            ]);
            await new Promise((r) => setTimeout(r, 20));
          }
        } finally {
          await w.close();
        }
      })();
      let r;
      try {
        r = await reseed(
          agentCloneArgs(donor, joiner, method, '--force', '--replicate-from', whom, '--json'),
          {
            env: REPL_ENV,
            signal: AbortSignal.timeout(180_000),
          },
        );
      } finally {
        writing = false;
        await writer;
      }
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as JobRecord;
      const result = job.result as { verify: { identical: boolean }; replication: { from: string } };
      assert.equal(result.verify.identical, true);
      const followed = whom === 'source' ? primary : donor;
      assert.equal(result.replication.from, `127.0.0.1:${followed.info.port}`);
      const [st] = await joiner.sql('SHOW SLAVE STATUS');
      assert.equal(Number(st!.Master_Port), followed.info.port);
      assert.equal(st!.Slave_SQL_Running, 'Yes');
      // A write on the primary reaches the donor (its replication runs again) and the joiner.
      await primary.sql('INSERT INTO app.t VALUES (?, 0)', [30_000 + Math.floor(Math.random() * 1e6)]);
      await caughtUp(donor, primary);
      await caughtUp(joiner, primary);
      assert.equal(await checksum(joiner, 'app.t'), await checksum(primary, 'app.t'));
      const [ds] = await donor.sql('SHOW SLAVE STATUS');
      assert.equal(ds!.Slave_SQL_Running, 'Yes');
      assert.equal(
        statSync(sandboxInfo(joiner).datadir).ino,
        256,
        "the joiner's datadir is a btrfs subvolume still",
      );
      if (method === 'snapshot') {
        const log = readFileSync(join(sandboxInfo(donor).dir, 'agent', 'agent.log'), 'utf8');
        assert.match(log, /the replica's applier paused for the lock/);
        assert.match(log, /the replica's applier started again/);
      }
    });

  it('--replicate-from source: refused when the donor replicates from nobody, before anything changes', async () => {
    await sandboxAgentUp(sandboxInfo(primary));
    try {
      const [before] = await joiner.sql('SELECT @@gtid_slave_pos AS p');
      const pid = () => readFileSync(join(primary.info.dir, 'mariadbd.pid'), 'utf8').trim();
      const primaryPid = pid();
      const r = await reseed(
        agentCloneArgs(primary, joiner, 'copy', '--force', '--replicate-from', 'source'),
        { env: REPL_ENV, signal: AbortSignal.timeout(60_000) },
      );
      assert.notEqual(r.code, 0);
      assert.match(
        r.stderr,
        /--replicate-from source: the donor is not a replica, so it has no source to follow/,
      );
      const [after] = await joiner.sql('SELECT @@gtid_slave_pos AS p');
      assert.equal(after!.p, before!.p);
      assert.equal(pid(), primaryPid, "the primary's mysqld was never stopped");
    } finally {
      await sandboxAgentDown(sandboxInfo(primary));
    }
  });
});
