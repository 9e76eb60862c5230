import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { JobRecord } from '../../src/agent/jobs.js';
import { sandboxAgent, sandboxAgentDown } from '../../src/agent/sandbox-agent.js';
import { AgentClient } from '../../src/agent/client.js';
import { resolveAgent } from '../../src/agent/registry.js';
import { getSandbox } from '../../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../../src/sandbox/sandbox.js';
import { REPL_ENV, otherSessions, reseed, schemas, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import { agentCloneArgs, checksum, restartAgent, seedPair } from '../helpers/clone-agents.js';

/**
 * --method copy between two sandboxes with real agents: the donor's datadir sent live, then its
 * mysqld stopped cleanly for a delta pass and started again. Every failure ends with the joiner
 * as it was and the donor's mysqld running, with no record of the stop and no guard process left.
 */
let donor: TestServer;
let joiner: TestServer;

const info = (s: TestServer): SandboxInfo => getSandbox(s.info.name)!;
const agentDir = (s: TestServer) => join(s.info.dir, 'agent');

function copyArgs(...extra: string[]): string[] {
  return agentCloneArgs(donor, joiner, 'copy', '--force', ...extra);
}

const datadirInode = () => statSync(join(joiner.info.dir, 'data')).ino;

async function assertJoinerAsBefore(inode: number, legacy: string): Promise<void> {
  assert.equal(datadirInode(), inode, 'the same datadir is back');
  assert.equal(await checksum(joiner, 'legacy.keep'), legacy);
  assert.deepEqual(
    readdirSync(joiner.info.dir).filter((n) => n.includes('.reseed-')),
    [],
    'no staging or aside directory is left',
  );
}

function guards(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes('copy-guard') && cmd.includes(agentDir(donor))) found.push(pid);
    } catch {
      // gone
    }
  }
  return found;
}

/** The donor's mysqld answers, no record of a stop and no guard left (given 10 s), no session of ours. */
async function assertDonorClean(): Promise<void> {
  const records = join(agentDir(donor), 'state', 'copies');
  for (let i = 0; ; i++) {
    const left = existsSync(records) ? readdirSync(records) : [];
    if ((left.length === 0 && guards().length === 0) || i > 100) {
      assert.deepEqual(left, [], 'no record of a stopped mysqld is left');
      assert.deepEqual(guards(), [], 'no guard process is left');
      break;
    }
    await sleep(100);
  }
  const [r] = await donor.sql('SELECT 1 AS one');
  assert.equal(Number(r?.one), 1);
  assert.deepEqual(await otherSessions(donor), []);
}

async function waitForDonor(ms: number): Promise<void> {
  for (const until = Date.now() + ms; ; await sleep(200)) {
    try {
      await donor.sql('SELECT 1');
      return;
    } catch (err) {
      if (Date.now() > until) throw err;
    }
  }
}

describe('--method copy through agents', () => {
  let legacy: string;
  before(async () => {
    donor = await startServer('cp-donor');
    joiner = await startServer('cp-joiner');
    legacy = await seedPair(donor, joiner, 'Aria');
  });
  after(async () => {
    for (const s of [donor, joiner]) if (s) await sandboxAgentDown(info(s)).catch(() => undefined);
    await stopAll();
  });

  it('refusals: contradicting flags, and a joiner with data of its own without --force; the donor never stops', async () => {
    const [pid] = await donor.sql('SELECT @@pid_file AS f');
    const donorPid = readFileSync(String(pid?.f), 'utf8').trim();
    let r = await reseed(
      copyArgs('--max-downtime', '1m').map((a) => (a === 'copy' ? 'mariabackup' : a)),
      {
        env: REPL_ENV,
      },
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--max-downtime applies through agents to --method copy only/);
    r = await reseed([
      'clone',
      '--from',
      'mysql://root@127.0.0.1:1',
      '--to',
      'mysql://root@127.0.0.1:2',
      '--delta',
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--delta applies to --method copy, through agents/);
    r = await reseed(copyArgs('--schemas', 'shop'), { env: REPL_ENV });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /--method copy copies the whole datadir: --schemas applies to --method logical only/,
    );
    r = await reseed([
      'clone',
      '--from',
      'mysql://root@127.0.0.1:1',
      '--to',
      'mysql://root@127.0.0.1:2',
      '--method',
      'copy',
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--method copy needs a reseed agent on each host/);
    const inode = datadirInode();
    r = await reseed(
      copyArgs().filter((a) => a !== '--force'),
      { env: REPL_ENV, signal: AbortSignal.timeout(60_000) },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the joiner holds data of its own, in legacy \(1 tables\)/);
    assert.equal(
      readFileSync(String(pid?.f), 'utf8').trim(),
      donorPid,
      "the donor's mysqld was not restarted",
    );
    await assertJoinerAsBefore(inode, legacy);
    await assertDonorClean();
  });

  it("a failure in the second pass: the donor's mysqld is started again, the joiner as it was", async () => {
    const inode = datadirInode();
    await restartAgent(joiner, 'copy-second-pass');
    try {
      const r = await reseed(copyArgs(), { env: REPL_ENV, signal: AbortSignal.timeout(120_000) });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /fault injected at copy-second-pass/);
      assert.match(r.stderr, /as they were/, r.stderr);
    } finally {
      await restartAgent(joiner);
    }
    await assertJoinerAsBefore(inode, legacy);
    await assertDonorClean();
  });

  it('--max-downtime: past it the donor agent starts mysqld again and the clone fails with its reason', async () => {
    const inode = datadirInode();
    await restartAgent(donor, 'copy-stopped:stall');
    try {
      const r = await reseed(copyArgs('--max-downtime', '1s'), {
        env: REPL_ENV,
        signal: AbortSignal.timeout(120_000),
      });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /down for 1 s \(--max-downtime\): started again/, r.stderr);
      // The user is told how long the donor was down, whatever ended the clone.
      assert.match(
        r.stderr,
        /warning: the donor's mysqld was started again \(\w+\): it was down [\d.]+ s/,
        r.stderr,
      );
      assert.match(r.stderr, /as they were/, r.stderr);
    } finally {
      await restartAgent(donor);
    }
    await assertJoinerAsBefore(inode, legacy);
    await assertDonorClean();
  });

  it("a joiner that stops asking for the second pass (its agent killed): the donor's mysqld is started again after the copy's idle bound, not --max-downtime", async () => {
    const api = new AgentClient(resolveAgent(donor.info.name));
    try {
      // What a joiner's agent does up to the second pass, then nothing: it was killed.
      const opened = await api.call<{ id: string }>('POST', '/v1/copies', {
        idleTimeoutMs: 2000,
        maxDowntimeMs: 600_000,
      });
      const started = Date.now();
      await api.call('POST', `/v1/copies/${opened.id}/freeze`, { lockWaitTimeoutMs: 10_000 });
      await waitForDonor(30_000);
      const back = Date.now() - started;
      assert.ok(back < 20_000, `the donor's mysqld came back after ${back} ms`);
      // mysqld may answer a moment before the agent's start of it returns and the copy says so.
      let report = await api.call<{ state: string; error?: string }>('GET', `/v1/copies/${opened.id}`);
      for (let i = 0; i < 100 && report.state === 'down'; i++) {
        await sleep(100);
        report = await api.call<{ state: string; error?: string }>('GET', `/v1/copies/${opened.id}`);
      }
      assert.equal(report.state, 'failed');
      assert.match(report.error ?? '', /the joiner stopped asking for the second pass/);
      await api.call('DELETE', `/v1/copies/${opened.id}`);
    } finally {
      await api.close();
    }
    await assertDonorClean();
  });

  it("the donor's agent killed (kill -9) with mysqld stopped: its guard starts mysqld at once; the clone is undone", async () => {
    const inode = datadirInode();
    await restartAgent(donor, 'copy-stopped:kill');
    try {
      const r = await reseed(copyArgs('--resume-timeout', '3s'), {
        env: REPL_ENV,
        signal: AbortSignal.timeout(120_000),
      });
      assert.notEqual(r.code, 0);
      assert.match(
        r.stderr,
        /the donor's agent stopped answering (while it stopped its mysqld|during the second pass)/,
        r.stderr,
      );
      assert.match(
        r.stderr,
        /start the donor's agent again too \(a sandbox: reseed sandbox up NAME --agent\)/,
        r.stderr,
      );
      assert.match(r.stderr, /as they were/, r.stderr);
      // No agent runs on the donor now: the guard alone brought mysqld back.
      await waitForDonor(30_000);
      assert.deepEqual(guards(), [], 'the guard exits once mysqld runs');
    } finally {
      await restartAgent(donor);
    }
    await assertJoinerAsBefore(inode, legacy);
    await assertDonorClean();
  });

  it("the donor's agent killed (kill -9) in the first pass: the clone fails within --resume-timeout, not segment by segment", async () => {
    const inode = datadirInode();
    const joinerApi = new AgentClient(resolveAgent(joiner.info.name));
    try {
      const before = (await joinerApi.call<{ jobs: JobRecord[] }>('GET', '/v1/jobs')).jobs.at(-1)?.id;
      const started = Date.now();
      const run = reseed(copyArgs('--resume-timeout', '3s'), {
        env: REPL_ENV,
        signal: AbortSignal.timeout(120_000),
      });
      // Once the first pass has bytes, the donor's agent dies.
      for (let i = 0; i < 600; i++) {
        const { jobs } = await joinerApi.call<{ jobs: JobRecord[] }>('GET', '/v1/jobs');
        const job = jobs.at(-1);
        const p = job?.progress as { pass?: number; bytes?: number } | undefined;
        if (job?.id !== before && p?.pass === 1 && Number(p.bytes) > 0) break;
        await sleep(20);
      }
      process.kill(sandboxAgent(info(donor))!.pid!, 'SIGKILL');
      const r = await run;
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /as they were/, r.stderr);
      // Its mysqld was never stopped: nothing says it was, or waits for it.
      assert.doesNotMatch(r.stderr, /first pass done|mysqld does not answer|was started again/, r.stderr);
      assert.ok(Date.now() - started < 60_000, `failed after ${Date.now() - started} ms`);
    } finally {
      await joinerApi.close();
      await restartAgent(donor);
    }
    await assertJoinerAsBefore(inode, legacy);
    await assertDonorClean();
  });

  it('under writes: a verified replica of the stopped donor, what was written since arrives, the donor clean', async () => {
    let writing = true;
    let written = 0;
    let refused = 0;
    // A client of the donor: its writes fail while mysqld is down, and it reconnects.
    const writer = (async () => {
      while (writing) {
        try {
          const s = await donor.session();
          try {
            while (writing) {
              await s.query('INSERT INTO shop.w (at) VALUES (NOW(6))');
              written++;
              await sleep(2);
            }
          } finally {
            await s.close().catch(() => undefined);
          }
        } catch {
          refused++;
          await sleep(50);
        }
      }
    })();
    let r;
    try {
      // --max-rate caps the donor agent's reads: the first pass cannot go faster than it.
      r = await reseed(copyArgs('--json', '--max-rate', '50M'), {
        env: REPL_ENV,
        signal: AbortSignal.timeout(180_000),
      });
      // Writes go on after the clone too: replication carries them.
      await sleep(500);
    } finally {
      writing = false;
      await writer;
    }
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.ok(written > 10, `${written} rows written`);
    assert.ok(refused > 0, 'the donor refused writes while it was stopped');
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as JobRecord;
    const result = job.result as {
      verify: { identical: boolean };
      donorDownMs: number;
      donorCommitBlockedMs: number;
      reusedBytes: number;
      unchangedFiles: number;
      firstPassBytes: number;
      phases: { copy: number };
      coordinates: { gtid: string };
    };
    assert.equal(result.verify.identical, true);
    assert.ok(result.donorDownMs > 0 && result.donorDownMs <= result.donorCommitBlockedMs);
    assert.ok(result.reusedBytes > 0, 'the second pass reused blocks of the first');
    // Files untouched since the first pass listed them were not read again (the system tables).
    assert.ok(result.unchangedFiles > 0, 'files unchanged since the first pass were not read again');
    assert.ok(result.firstPassBytes > 0);
    assert.ok(
      result.phases.copy >= (result.firstPassBytes / (50 * 2 ** 20)) * 1000 * 0.9,
      `the first pass's ${result.firstPassBytes} bytes took ${result.phases.copy} ms: --max-rate 50M not kept`,
    );
    assert.match(result.coordinates.gtid, /^\d+-\d+-\d+/);
    const [g] = await donor.sql('SELECT @@gtid_binlog_pos AS g');
    const [w] = await joiner.sql('SELECT MASTER_GTID_WAIT(?, 30) AS r', [String(g?.g)]);
    assert.equal(Number(w?.r), 0);
    for (const t of ['shop.items', 'shop.notes', 'shop.w'])
      assert.equal(await checksum(joiner, t), await checksum(donor, t), t);
    const [st] = await joiner.sql('SHOW SLAVE STATUS');
    assert.equal(st?.Slave_IO_Running, 'Yes');
    assert.equal(st?.Slave_SQL_Running, 'Yes');
    const [ro] = await joiner.sql('SELECT @@read_only AS r');
    assert.equal(Number(ro?.r), 1);
    assert.ok(!(await schemas(joiner)).includes('legacy'), "the joiner's own data was replaced (--force)");
    await assertDonorClean();
    const status = await reseed(['job', job.id, '--on', `agent://${joiner.info.name}`]);
    assert.match(status.stdout, /mysqld stopped .* commits blocked/);
    assert.match(status.stdout, /unchanged and not sent/);
  });

  it('--delta: the joiner, an older copy of the donor, is the base of the first pass; the replica verified again', async () => {
    await donor.sql("INSERT INTO shop.items SELECT seq + 30000, 'more', 1 FROM shop.seq_1_to_2000");
    const r = await reseed(copyArgs('--delta', '--json'), {
      env: REPL_ENV,
      signal: AbortSignal.timeout(180_000),
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as JobRecord;
    const result = job.result as {
      verify: { identical: boolean };
      firstPassReusedBytes: number;
      firstPassBytes: number;
    };
    assert.equal(result.verify.identical, true);
    assert.ok(
      result.firstPassReusedBytes > result.firstPassBytes,
      `first pass: ${result.firstPassBytes} sent, ${result.firstPassReusedBytes} equal in the joiner's datadir`,
    );
    for (const t of ['shop.items', 'shop.notes', 'shop.w'])
      assert.equal(await checksum(joiner, t), await checksum(donor, t), t);
    await assertDonorClean();
  });
});
