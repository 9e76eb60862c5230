import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { AgentClient } from '../../src/agent/client.js';
import type { JobRecord } from '../../src/agent/jobs.js';
import { resolveAgent } from '../../src/agent/registry.js';
import { sandboxAgentDown } from '../../src/agent/sandbox-agent.js';
import { getSandbox } from '../../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../../src/sandbox/sandbox.js';
import { REPL_ENV, otherSessions, reseed, schemas, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import { agentCloneArgs, checksum, restartAgent, seedPair } from '../helpers/clone-agents.js';

/**
 * Clones run by the joiner's agent, the donor's agent serving: --method mariabackup (real
 * mariadb-backup and mbstream, the joiner's datadir swapped) and --method logical, between two
 * sandboxes with real agents. Every failure ends with the joiner as it was: the same datadir (by
 * inode), its own data (checksums), mysqld running; the donor with no backup process or file left.
 */
let donor: TestServer;
let joiner: TestServer;

const info = (s: TestServer): SandboxInfo => getSandbox(s.info.name)!;
const agentDir = (s: TestServer) => join(s.info.dir, 'agent');

/** --method mariabackup, replacing the joiner's own data (--force) */
const mariabackup = (...extra: string[]) => cloneArgs('mariabackup', '--force', ...extra);

function cloneArgs(method: string, ...extra: string[]): string[] {
  return agentCloneArgs(donor, joiner, method, ...extra);
}

/** The joiner as a failed clone must leave it: its datadir (same inode), its schema and rows, mysqld up. */
function joinerSnapshot() {
  return { inode: statSync(join(joiner.info.dir, 'data')).ino };
}

async function assertJoinerAsBefore(before: { inode: number }, legacy: string): Promise<void> {
  assert.equal(statSync(join(joiner.info.dir, 'data')).ino, before.inode, 'the same datadir is back');
  assert.ok((await schemas(joiner)).includes('legacy'), 'the joiner keeps its own schema');
  assert.equal(await checksum(joiner, 'legacy.keep'), legacy);
  const leftovers = readdirSync(joiner.info.dir).filter((n) => n.includes('.reseed-'));
  assert.deepEqual(leftovers, [], 'no staging or aside directory is left');
}

/** No mariadb-backup left running from the donor agent's directory, and no option file (given 5 s to go). */
async function assertDonorClean(): Promise<void> {
  for (let i = 0; i < 50; i++) {
    try {
      donorClean();
      return;
    } catch {
      await sleep(100);
    }
  }
  donorClean();
}

function donorClean(): void {
  const backups = join(agentDir(donor), 'state', 'backups');
  assert.deepEqual(
    existsSync(backups) ? readdirSync(backups) : [],
    [],
    'no backup directory (option file) left',
  );
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    assert.ok(
      !(cmd.includes('mariadb-backup') && cmd.includes(agentDir(donor))),
      `mariadb-backup ${pid} still runs`,
    );
  }
}

async function lastJob(s: TestServer): Promise<JobRecord> {
  const c = new AgentClient(resolveAgent(s.info.name));
  try {
    const { jobs } = await c.call<{ jobs: JobRecord[] }>('GET', '/v1/jobs');
    return jobs.at(-1)!;
  } finally {
    await c.close();
  }
}

describe('clones through agents', () => {
  let legacy: string;
  before(async () => {
    donor = await startServer('cl-donor');
    joiner = await startServer('cl-joiner');
    legacy = await seedPair(donor, joiner, 'MyISAM');
  });
  after(async () => {
    for (const s of [donor, joiner]) if (s) await sandboxAgentDown(info(s)).catch(() => undefined);
    await stopAll();
  });

  it('refusals: before anything changes, one line per problem', async () => {
    const before = joinerSnapshot();
    // Refused by the CLI, before a job is made.
    const noPassword = await reseed(cloneArgs('mariabackup'));
    assert.equal(noPassword.code, 2, noPassword.stderr);
    assert.match(noPassword.stderr, /no password for the replication account repl/);
    // The joiner's own data is never replaced without --force; a replication address that does not answer is refused.
    const ownData = await reseed(cloneArgs('mariabackup', '--replication-host', '127.0.0.1:1'), {
      env: REPL_ENV,
    });
    assert.equal(ownData.code, 4, ownData.stderr);
    assert.match(ownData.stderr, /the joiner holds data of its own, in legacy \(1 tables\)/);
    assert.match(ownData.stderr, /the joiner cannot replicate from 127\.0\.0\.1:1/);
    assert.match(ownData.stderr, /nothing was changed/);
    const direct = await reseed([
      'clone',
      '--from',
      donor.uri,
      '--to',
      joiner.uri,
      '--method',
      'mariabackup',
    ]);
    assert.equal(direct.code, 2, direct.stderr);
    assert.match(direct.stderr, /needs a reseed agent on each host/);
    const schemasFlag = await reseed(cloneArgs('mariabackup', '--schemas', 'shop'), { env: REPL_ENV });
    assert.equal(schemasFlag.code, 2);
    assert.match(schemasFlag.stderr, /--schemas applies to --method logical only/);
    const same = await reseed([
      'clone',
      '--from',
      `agent://${joiner.info.name}`,
      '--to',
      `agent://${joiner.info.name}`,
    ]);
    assert.equal(same.code, 2);
    assert.match(same.stderr, /same agent/);
    const dry = await reseed(mariabackup('--dry-run'), { env: REPL_ENV });
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stderr, /replaces the joiner's whole datadir/);
    assert.match(dry.stderr, /accounts and passwords/);
    assert.match(dry.stderr, /--force: the joiner's own data is replaced: legacy/);
    assert.match(dry.stderr, /left read-only/);
    await assertJoinerAsBefore(before, legacy);
  });

  // A failure at each phase: mid-stream, after prepare, after the swap and start, after catch-up.
  for (const [fault, phase] of [
    ['physical-streaming', 'while the backup streams'],
    ['physical-prepared', 'after prepare'],
    ['physical-started', 'after the swap, mysqld started on the copy'],
    ['physical-caught-up', 'after replication caught up'],
  ] as const)
    it(`a failure ${phase} leaves the joiner as it was and the donor clean`, async () => {
      const before = joinerSnapshot();
      // A read-only joiner (a replica, usually): mysqld restarted on its old datadir reads
      // read_only from its configuration (OFF here), and the undo must set it again.
      const readOnly = fault === 'physical-started';
      if (readOnly) await joiner.sql('SET GLOBAL read_only = ON');
      await restartAgent(joiner, fault);
      try {
        const r = await reseed(mariabackup(), {
          env: REPL_ENV,
          signal: AbortSignal.timeout(120_000),
        });
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, new RegExp(`fault injected at ${fault}`));
        assert.match(r.stderr, /as they were/, r.stderr);
      } finally {
        await restartAgent(joiner);
      }
      await assertJoinerAsBefore(before, legacy);
      if (readOnly) {
        const [ro] = await joiner.sql('SELECT @@read_only AS r');
        assert.equal(Number(ro!.r), 1, 'read_only is ON again');
        await joiner.sql('SET GLOBAL read_only = OFF');
      }
      await assertDonorClean();
      assert.deepEqual(await otherSessions(donor), []);
    });

  it('the joiner agent killed (kill -9) mid-swap: its next start undoes the job', async () => {
    const before = joinerSnapshot();
    await restartAgent(joiner, 'physical-swapped:kill');
    const r = await reseed(mariabackup(), { env: REPL_ENV, signal: AbortSignal.timeout(120_000) });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /lost the agent/);
    // The datadir is the prepared copy now, mysqld stopped: the agent's next start undoes it.
    await restartAgent(joiner);
    const job = await lastJob(joiner);
    assert.equal(job.state, 'interrupted');
    assert.ok(
      job.error?.hints.some((h) => /as they were/.test(h)),
      JSON.stringify(job.error),
    );
    await assertJoinerAsBefore(before, legacy);
    await assertDonorClean();
  });

  it("the donor's agent killed (kill -9) mid-stream: the clone fails and is undone; the donor's next start leaves it clean", async () => {
    const before = joinerSnapshot();
    await restartAgent(donor, 'backup-streaming:kill');
    try {
      const r = await reseed(mariabackup('--resume-timeout', '3s'), {
        env: REPL_ENV,
        signal: AbortSignal.timeout(120_000),
      });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /as they were/, r.stderr);
    } finally {
      // Its next start stops a mariadb-backup still running from its directory and removes the option file.
      await restartAgent(donor);
    }
    await assertJoinerAsBefore(before, legacy);
    await assertDonorClean();
    assert.deepEqual(await otherSessions(donor), []);
  });

  it('--method logical runs inside the joiner agent', async () => {
    const r = await reseed(cloneArgs('logical', '--schemas', 'shop', '--force', '--json'), {
      env: REPL_ENV,
      signal: AbortSignal.timeout(120_000),
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as JobRecord;
    assert.equal(job.state, 'done');
    assert.equal((job.result?.verify as { ok: boolean }).ok, true);
    assert.equal(await checksum(joiner, 'shop.items'), await checksum(donor, 'shop.items'));
    assert.ok((await schemas(joiner)).includes('legacy'), "--schemas shop keeps the joiner's other schemas");
  });

  it('--method mariabackup under writes: a verified replica, the old datadir gone, the donor clean', async () => {
    let writing = true;
    let written = 0;
    const writer = (async () => {
      const s = await donor.session();
      try {
        while (writing) {
          await s.query('INSERT INTO shop.w (at) VALUES (NOW(6))');
          written++;
          await sleep(2);
        }
      } finally {
        await s.close();
      }
    })();
    let r;
    try {
      r = await reseed(mariabackup('--compress', 'lz4', '--json'), {
        env: REPL_ENV,
        signal: AbortSignal.timeout(180_000),
      });
    } finally {
      writing = false;
      await writer;
    }
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.ok(written > 10, `${written} rows written during the clone`);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as JobRecord;
    const result = job.result as {
      verify: { identical: boolean };
      donorCommitBlockedMs: number;
      coordinates: { gtid: string };
    };
    assert.equal(result.verify.identical, true);
    assert.ok(result.donorCommitBlockedMs >= 0 && result.donorCommitBlockedMs < 30_000);
    assert.match(result.coordinates.gtid, /^\d+-\d+-\d+/);
    // Still replicating: what was written after the copy arrives.
    const [g] = await donor.sql('SELECT @@gtid_binlog_pos AS g');
    const [w] = await joiner.sql('SELECT MASTER_GTID_WAIT(?, 30) AS r', [String(g?.g)]);
    assert.equal(Number(w?.r), 0);
    for (const t of ['shop.items', 'shop.notes', 'shop.w'])
      assert.equal(await checksum(joiner, t), await checksum(donor, t), t);
    const [st] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(st?.Slave_IO_Running, 'Yes');
    assert.equal(st?.Slave_SQL_Running, 'Yes');
    const [ro] = await joiner.sql('SELECT @@read_only AS r');
    assert.equal(Number(ro?.r), 1, 'the joiner is left read-only');
    // The whole datadir was replaced: the joiner's own schema is gone with it, and so is the old datadir.
    assert.ok(!(await schemas(joiner)).includes('legacy'));
    assert.deepEqual(
      readdirSync(joiner.info.dir).filter((n) => n.includes('.reseed-')),
      [],
    );
    await assertDonorClean();
    // No secret in the job's record, its events, or the agents' logs.
    for (const dir of [agentDir(joiner), agentDir(donor)]) {
      const files = [
        join(dir, 'agent.log'),
        ...readdirSync(join(dir, 'state', 'jobs')).map((f) => join(dir, 'state', 'jobs', f)),
      ];
      for (const f of files)
        assert.ok(
          !readFileSync(f, 'utf8').includes(REPL_ENV.RESEED_REPLICATION_PASSWORD),
          `${f} holds the password`,
        );
    }
    const status = await reseed(['jobs', '--on', `agent://${joiner.info.name}`]);
    assert.match(status.stdout, /clone\s+done/);
  });

  it('--method mariabackup --no-replicate: a copy that replicates from nobody', async () => {
    const r = await reseed(
      mariabackup('--no-replicate').filter((a, k, all) => a !== 'repl' && all[k] !== '--replication-user'),
      {
        signal: AbortSignal.timeout(120_000),
      },
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /replication not configured/);
    assert.deepEqual(await joiner.sql('SHOW ALL SLAVES STATUS'), []);
    assert.equal(await checksum(joiner, 'shop.items'), await checksum(donor, 'shop.items'));
    const [g] = await joiner.sql('SELECT @@gtid_slave_pos AS g');
    assert.equal(g?.g, '');
  });
});
