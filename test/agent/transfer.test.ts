import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  cpSync,
  existsSync,
  openSync,
  rmSync,
  writeSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { AgentClient } from '../../src/agent/client.js';
import { isFinal } from '../../src/agent/jobs.js';
import type { JobRecord } from '../../src/agent/jobs.js';
import { resolveAgent } from '../../src/agent/registry.js';
import { sandboxAgent, sandboxAgentDown, sandboxAgentUp } from '../../src/agent/sandbox-agent.js';
import { getSandbox, sandboxDown, sandboxHome, sandboxUp } from '../../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../../src/sandbox/sandbox.js';
import { zstdAvailable } from '../../src/transport/codec.js';
import { Relay } from '../helpers/relay.js';
import { reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import { compareTrees, readTree } from '../helpers/tree.js';

/**
 * Two real agents (one per sandbox, TLS with client certificates) move real directory trees:
 * a stopped sandbox's datadir and files from empty to tens of megabytes, sparse, with odd names.
 */
let donor: TestServer;
let joiner: TestServer;
let tree: string;
let api: { donor: AgentClient; joiner: AgentClient };
type Result = { bytes: number; wireBytes: number; zeroBytes: number; resumes: number };

const info = (s: TestServer): SandboxInfo => getSandbox(s.info.name)!;
const dest = (name: string) => join(joiner.info.dir, name);

function buildTree(root: string, datadir: string): void {
  mkdirSync(root, { recursive: true });
  cpSync(datadir, join(root, 'datadir'), { recursive: true });
  writeFileSync(join(root, 'empty'), '');
  writeFileSync(join(root, 'one'), 'x');
  writeFileSync(join(root, 'exactly-1MiB'), Buffer.alloc(1 << 20, 7));
  // 70 MB of text-like data: two segments of 64 MiB and compressible.
  const line = Buffer.from('id=0000000 name=something quite ordinary, value=12345.678\n');
  const big = Buffer.alloc(70_000_000);
  for (let o = 0; o < big.length; o += line.length) line.copy(big, o);
  writeFileSync(join(root, 'big.txt'), big);
  // Sparse: 40 MiB with data only at 1 MiB and at the very end.
  writeFileSync(join(root, 'sparse.ibd'), '');
  truncateSync(join(root, 'sparse.ibd'), 40 << 20);
  execFileSync(
    'dd',
    ['if=/dev/urandom', `of=${join(root, 'sparse.ibd')}`, 'bs=64k', 'count=2', 'seek=16', 'conv=notrunc'],
    { stdio: 'ignore' },
  );
  execFileSync(
    'dd',
    [
      'if=/dev/urandom',
      `of=${join(root, 'sparse.ibd')}`,
      'bs=1k',
      'count=1',
      `seek=${(40 << 10) - 1}`,
      'conv=notrunc',
    ],
    { stdio: 'ignore' },
  );
  mkdirSync(join(root, 'odd'), { mode: 0o750 });
  for (const n of ['with space', 'new\nline', 'ünïcødé-表', '-leading-dash', 'a,comma', 'quote\'"'])
    writeFileSync(join(root, 'odd', n), n);
  writeFileSync(Buffer.from([...Buffer.from(join(root, 'odd') + '/'), 0x66, 0xff, 0xfe]), 'not UTF-8');
  symlinkSync('../big.txt', join(root, 'odd', 'link'));
  writeFileSync(join(root, 'odd', 'private'), 'secret-ish', { mode: 0o600 });
}

async function transfer(name: string, ...extra: string[]) {
  return reseed([
    'transfer',
    '--from',
    `agent://${donor.info.name}${tree}`,
    '--to',
    `agent://${joiner.info.name}${dest(name)}`,
    ...extra,
  ]);
}

async function waitFor(
  client: AgentClient,
  id: string,
  pred: (j: JobRecord) => boolean,
  ms = 30_000,
): Promise<JobRecord> {
  const deadline = Date.now() + ms;
  for (;;) {
    const j = await client.call<JobRecord>('GET', `/v1/jobs/${id}`);
    if (pred(j)) return j;
    if (Date.now() > deadline) throw new Error(`job ${id} is ${j.state}`);
    await sleep(50);
  }
}

/** Once the newest job on the joiner's agent has copied its first bytes. */
async function untilCopying(): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const { jobs } = await api.joiner.call<{ jobs: JobRecord[] }>('GET', '/v1/jobs');
    const j = jobs.at(-1);
    if (j && j.state === 'copying' && Number(j.progress?.bytes ?? 0) > 0) return;
    await sleep(50);
  }
  throw new Error('no job started copying');
}

/** The donor agent, restarted with RESEED_FAULT set (or unset), for the corruption tests. */
async function restartDonorAgent(fault: string | undefined): Promise<void> {
  await api.donor.close();
  await sandboxAgentDown(info(donor));
  if (fault) process.env.RESEED_FAULT = fault;
  try {
    await sandboxAgentUp(info(donor));
  } finally {
    delete process.env.RESEED_FAULT;
  }
  api.donor = new AgentClient(resolveAgent(donor.info.name));
}

describe('agents and the data channel', () => {
  before(async () => {
    const src = await startServer('ag-src');
    await src.sql('CREATE DATABASE IF NOT EXISTS shop');
    await src.sql('CREATE TABLE IF NOT EXISTS shop.t (id INT PRIMARY KEY, v TEXT)');
    await src.sql("INSERT IGNORE INTO shop.t SELECT seq, REPEAT('v', seq % 100) FROM shop.seq_1_to_20000");
    await sandboxDown(src.info.name);
    donor = await startServer('ag-donor');
    joiner = await startServer('ag-joiner');
    tree = join(donor.info.dir, 'tree');
    buildTree(tree, join(src.info.dir, 'data'));
    await sandboxAgentUp(info(donor));
    await sandboxAgentUp(info(joiner));
    api = {
      donor: new AgentClient(resolveAgent(donor.info.name)),
      joiner: new AgentClient(resolveAgent(joiner.info.name)),
    };
  });
  after(async () => {
    await api?.donor.close();
    await api?.joiner.close();
    for (const s of [donor, joiner]) if (s) await sandboxAgentDown(info(s));
    await stopAll();
  });

  it('a stopped datadir and odd files arrive equal, file by file, holes kept', async () => {
    const r = await transfer('copy-plain', '--json');
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as JobRecord & { result: Result };
    assert.equal(job.state, 'done');
    assert.deepEqual(compareTrees(readTree(tree), readTree(dest('copy-plain'))), []);
    const sparse = readTree(dest('copy-plain')).get(Buffer.from('sparse.ibd').toString('hex'))!;
    assert.ok(
      sparse.allocated! < 4 << 20,
      `the sparse file takes ${sparse.allocated} bytes: its holes were filled`,
    );
    assert.ok(job.result.zeroBytes > 30 << 20);
    assert.equal(job.result.resumes, 0);
    assert.deepEqual(
      readdirSync(dest('copy-plain')).filter((n) => n.startsWith('.reseed')),
      [],
    );
  });

  it('--base: delta mode sends only the blocks that differ from an older copy, which is left as it was', async () => {
    const base = dest('copy-plain');
    const baseBefore = readTree(base);
    // The donor's tree changes: a few blocks of a big file, a file gone, a new one, one shorter.
    const fd = openSync(join(tree, 'big.txt'), 'r+');
    for (const at of [0, 30_000_000, 69_000_000]) writeSync(fd, randomBytes(10_000), 0, 10_000, at);
    closeSync(fd);
    rmSync(join(tree, 'one'));
    writeFileSync(join(tree, 'new-file'), randomBytes(200_000));
    truncateSync(join(tree, 'exactly-1MiB'), 300_000);
    const r = await transfer('copy-delta', '--base', base, '--json');
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      result: Result & { reusedBytes: number };
    };
    assert.deepEqual(compareTrees(readTree(tree), readTree(dest('copy-delta'))), []);
    assert.deepEqual(compareTrees(baseBefore, readTree(base)), [], 'the base was not written');
    assert.ok(job.result.bytes < 2 << 20, `${job.result.bytes} bytes sent`);
    assert.ok(job.result.reusedBytes > 100 << 20, `${job.result.reusedBytes} bytes reused`);
    const sparse = readTree(dest('copy-delta')).get(Buffer.from('sparse.ibd').toString('hex'))!;
    assert.ok(sparse.allocated! < 4 << 20, 'holes of the base stay holes');
    const human = await reseed([
      'job',
      (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { id: string }).id,
      '--on',
      `agent://${joiner.info.name}`,
    ]);
    assert.match(human.stdout, /delta .* equal in --base and copied from it, not sent \(\d+\.\d% saved\)/);
    // A base the agent may not read is refused before anything is made.
    const refused = await transfer('copy-delta2', '--base', '/etc');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /--base \/etc is not under a directory this agent receives into/);
    assert.ok(!existsSync(dest('copy-delta2')));
    writeFileSync(join(tree, 'one'), 'x'); // as the other tests know it
  });

  for (const codec of ['lz4', 'zstd'])
    it(
      `--compress ${codec}: equal, and fewer bytes on the wire`,
      { skip: codec === 'zstd' && !zstdAvailable() && 'zstd-napi did not build here' },
      async () => {
        const r = await transfer(`copy-${codec}`, '--compress', codec, '--json');
        assert.equal(r.code, 0, r.stderr);
        const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { result: Result };
        assert.ok(
          job.result.wireBytes < job.result.bytes / 3,
          `${job.result.wireBytes} of ${job.result.bytes}`,
        );
        assert.deepEqual(compareTrees(readTree(tree), readTree(dest(`copy-${codec}`))), []);
      },
    );

  it('a cut in the middle resumes from the last checked byte, and the data arrives equal', async () => {
    const relay = await new Relay({
      host: '127.0.0.1',
      port: Number(new URL(sandboxAgent(info(donor))!.url).port),
    }).start();
    const registry = join(sandboxHome(), 'agents.json');
    const doc = JSON.parse(readFileSync(registry, 'utf8')) as { agents: Record<string, { url: string }> };
    doc.agents['relayed'] = { ...doc.agents[donor.info.name]!, url: `https://127.0.0.1:${relay.port}` };
    writeFileSync(registry, JSON.stringify(doc));
    try {
      const run = reseed([
        'transfer',
        '--from',
        `agent://relayed${tree}`,
        '--to',
        `agent://${joiner.info.name}${dest('copy-cut')}`,
        '--max-rate',
        '40M',
        '--resume-timeout',
        '20s',
        '--json',
      ]);
      await untilCopying();
      relay.cut();
      await sleep(1500);
      relay.restore();
      await sleep(800);
      relay.blackhole(); // silent this time: the stall timer has to notice
      await sleep(2500);
      relay.restore();
      const r = await run;
      assert.equal(r.code, 0, r.stderr);
      const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { result: Result };
      assert.ok(job.result.resumes >= 2, `resumed ${job.result.resumes} times`);
      assert.deepEqual(compareTrees(readTree(tree), readTree(dest('copy-cut'))), []);

      // A cut longer than --resume-timeout: the job fails, its destination is gone, the donor
      // has no transfer left open.
      const run2 = reseed([
        'transfer',
        '--from',
        `agent://relayed${tree}`,
        '--to',
        `agent://${joiner.info.name}${dest('copy-lost')}`,
        '--max-rate',
        '40M',
        '--resume-timeout',
        '3s',
      ]);
      await untilCopying();
      relay.cut();
      const r2 = await run2;
      assert.equal(r2.code, 6, r2.stderr);
      assert.match(r2.stderr, /the data channel was cut for more than 3 s/);
      assert.match(r2.stderr, /every change was undone/);
      assert.equal(existsSync(dest('copy-lost')), false);
    } finally {
      await relay.stop();
      delete doc.agents['relayed'];
      writeFileSync(registry, JSON.stringify(doc));
    }
    for (
      let i = 0;
      i < 100 && (await api.donor.call<{ transfers: number }>('GET', '/v1/health')).transfers > 0;
      i++
    )
      await sleep(100);
    assert.equal((await api.donor.call<{ transfers: number }>('GET', '/v1/health')).transfers, 0);
  });

  it('a frame damaged after its CRC is caught and asked for again', async () => {
    await restartDonorAgent('corrupt-frame');
    const r = await transfer('copy-crc', '--json');
    assert.equal(r.code, 0, r.stderr);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { result: Result };
    assert.ok(job.result.resumes >= 1);
    assert.deepEqual(compareTrees(readTree(tree), readTree(dest('copy-crc'))), []);
  });

  it('bytes that differ from their segment hash are sent again, then fail the job; nothing is kept', async () => {
    await restartDonorAgent('segment-differs');
    try {
      const r = await transfer('copy-hash');
      assert.equal(r.code, 6, r.stderr);
      assert.match(r.stderr, /hash mismatch for .* \(sent twice\)/);
      assert.equal(existsSync(dest('copy-hash')), false);
    } finally {
      await restartDonorAgent(undefined);
    }
  });

  it('a file written to while it is sent fails the transfer (exit 6), never arrives mixed; nothing is kept', async () => {
    const changing = join(donor.info.dir, 'changing');
    mkdirSync(changing, { recursive: true });
    const file = join(changing, 'live.ibd');
    execFileSync('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=48'], { stdio: 'ignore' });
    const run = reseed([
      'transfer',
      '--from',
      `agent://${donor.info.name}${changing}`,
      '--to',
      `agent://${joiner.info.name}${dest('copy-changing')}`,
      '--max-rate',
      '12M',
    ]);
    // Pages written in place (as mysqld does) while the transfer reads the file.
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await sleep(300);
        execFileSync(
          'dd',
          ['if=/dev/urandom', `of=${file}`, 'bs=16k', 'count=1', `seek=${(i * 97) % 3000}`, 'conv=notrunc'],
          {
            stdio: 'ignore',
          },
        );
      }
    })();
    const r = await run.finally(() => (writing = false));
    await writer;
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, /live\.ibd changed while it was sent/);
    assert.equal(existsSync(dest('copy-changing')), false);
  });

  it('authentication: a wrong or missing token, plaintext, no client certificate, a foreign or closed transfer credential', async () => {
    const before = (await api.joiner.call<{ jobs: unknown[] }>('GET', '/v1/jobs')).jobs.length;
    const addr = resolveAgent(joiner.info.name);
    for (const token of ['wrong-token-wrong-token', ''])
      await assert.rejects(
        new AgentClient({ ...addr, token }).call('POST', '/v1/jobs', {
          kind: 'transfer',
          from: donor.info.name,
          path: tree,
          dest: dest('never'),
        }),
        (err: Error & { code?: string }) => err.code === 'TRANSPORT_AUTH_FAILED',
      );
    assert.equal(
      (await api.joiner.call<{ jobs: unknown[] }>('GET', '/v1/jobs')).jobs.length,
      before,
      'nothing was started',
    );
    assert.equal(existsSync(dest('never')), false);

    const url = new URL(addr.url);
    // Plain HTTP to the TLS port: the connection ends without an HTTP answer.
    const plain = await new Promise<string>((resolve) => {
      const s = netConnect(Number(url.port), url.hostname, () =>
        s.write('GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n'),
      );
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('close', () => resolve(got));
      s.on('error', () => undefined);
    });
    assert.doesNotMatch(plain, /^HTTP\//);
    // TLS without a client certificate: refused during the handshake (mutual TLS).
    const noCert = await new Promise<string>((resolve) => {
      const s = tlsConnect({ host: url.hostname, port: Number(url.port), ca: addr.ca }, () => {
        s.write('GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString()));
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve(got || 'closed'));
    });
    assert.doesNotMatch(noCert, /200 OK/);

    // A transfer's credential opens that transfer only, and only while it is open.
    const opened = await api.donor.call<{ id: string; secret: string }>('POST', '/v1/transfers', {
      path: tree,
    });
    const other = await api.donor.call<{ id: string; secret: string }>('POST', '/v1/transfers', {
      path: tree,
    });
    const manifest = async (id: string, secret: string) => {
      const c = new AgentClient({ ...resolveAgent(donor.info.name), token: secret });
      try {
        return await c.call('GET', `/v1/transfers/${id}/manifest`);
      } finally {
        await c.close();
      }
    };
    await manifest(opened.id, opened.secret);
    await assert.rejects(manifest(opened.id, other.secret), /unknown transfer or wrong credential/);
    await assert.rejects(
      manifest(opened.id, api.donor.address.token),
      /unknown transfer or wrong credential/,
    );
    await api.donor.call('DELETE', `/v1/transfers/${opened.id}`);
    await api.donor.call('DELETE', `/v1/transfers/${other.id}`);
    await assert.rejects(manifest(opened.id, opened.secret), /unknown transfer or wrong credential/);
    // Its own running mysqld's datadir is not sent: a copy of it would not be consistent.
    await assert.rejects(
      api.donor.call('POST', '/v1/transfers', { path: join(donor.info.dir, 'data') }),
      /holds the datadir of this host's mysqld, which is running/,
    );
    await assert.rejects(
      api.donor.call('POST', '/v1/transfers', { path: join(tree, 'one') }),
      /is not a directory/,
    );
    await assert.rejects(
      api.donor.call('POST', '/v1/transfers', { path: join(tree, 'nope') }),
      /does not exist/,
    );
    // Outside the directories it serves, the agent sends nothing.
    await assert.rejects(
      api.donor.call('POST', '/v1/transfers', { path: '/etc' }),
      /is not under a directory this agent serves/,
    );
    // And a job's destination must be under the receiver's directories.
    await assert.rejects(
      api.joiner
        .call('POST', '/v1/jobs', {
          kind: 'transfer',
          from: donor.info.name,
          path: tree,
          dest: '/tmp/elsewhere',
        })
        .then((j) =>
          waitFor(api.joiner, (j as JobRecord).id, (x) => x.state === 'failed').then((x) =>
            Promise.reject(new Error(x.error!.message)),
          ),
        ),
      /is not under a directory this agent receives into/,
    );
  });

  it('one job at a time: a second is refused with 409, naming the first; cancel undoes the first', async () => {
    const first = await api.joiner.call<JobRecord>('POST', '/v1/jobs', {
      kind: 'transfer',
      from: donor.info.name,
      path: tree,
      dest: dest('copy-busy'),
      maxRate: 10 << 20,
    });
    await waitFor(api.joiner, first.id, (j) => j.state === 'copying');
    await assert.rejects(
      api.joiner.call('POST', '/v1/jobs', {
        kind: 'transfer',
        from: donor.info.name,
        path: tree,
        dest: dest('copy-second'),
      }),
      (err: Error & { code?: string }) => err.code === 'AGENT' && err.message.includes(first.id),
    );
    const c = await reseed(['cancel', first.id, '--on', `agent://${joiner.info.name}`]);
    assert.equal(c.code, 0, c.stderr);
    const done = await api.joiner.call<JobRecord>('GET', `/v1/jobs/${first.id}`);
    assert.equal(done.state, 'cancelled');
    assert.ok(
      done.error!.hints.some((h) => /the receiving host is as it was/.test(h)),
      done.error!.hints.join('\n'),
    );
    assert.equal(existsSync(dest('copy-busy')), false);
  });

  it('kill -9 of the receiving agent mid-job: at its next start the job is interrupted and undone', async () => {
    const job = await api.joiner.call<JobRecord>('POST', '/v1/jobs', {
      kind: 'transfer',
      from: donor.info.name,
      path: tree,
      dest: dest('copy-killed'),
      maxRate: 10 << 20,
    });
    await waitFor(api.joiner, job.id, (j) => Number(j.progress?.bytes ?? 0) > 0);
    assert.ok(existsSync(dest('copy-killed')));
    const pid = sandboxAgent(info(joiner))!.pid!;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && sandboxAgent(info(joiner))!.running; i++) await sleep(50);
    await api.joiner.close();
    await sandboxAgentUp(info(joiner));
    api.joiner = new AgentClient(resolveAgent(joiner.info.name));
    const after = await api.joiner.call<JobRecord>('GET', `/v1/jobs/${job.id}`);
    assert.equal(after.state, 'interrupted');
    assert.ok(
      after.error!.hints.some((h) => /every change was undone/.test(h)),
      after.error!.hints.join('\n'),
    );
    assert.equal(existsSync(dest('copy-killed')), false);
    assert.equal((await api.joiner.call<{ activeJob: string | null }>('GET', '/v1/health')).activeJob, null);
  });

  it('the sending agent restarted mid-job: the transfer fails as a copy cut short (TRANSPORT_FAILED, exit 6), nothing kept', async () => {
    /** A slow transfer into `name`, the sending agent restarted by `restart` once bytes flow; its end. */
    const cutShort = async (name: string, restart: () => Promise<void>): Promise<JobRecord> => {
      const job = await api.joiner.call<JobRecord>('POST', '/v1/jobs', {
        kind: 'transfer',
        from: donor.info.name,
        path: tree,
        dest: dest(name),
        maxRate: 10 << 20,
      });
      await waitFor(api.joiner, job.id, (j) => Number(j.progress?.bytes ?? 0) > 0);
      await api.donor.close();
      await restart();
      await sandboxAgentUp(info(donor));
      api.donor = new AgentClient(resolveAgent(donor.info.name));
      const done = await waitFor(api.joiner, job.id, (j) => isFinal(j.state), 60_000);
      assert.equal(done.state, 'failed');
      assert.equal(existsSync(dest(name)), false);
      return done;
    };
    // Killed and started again: the new agent has forgotten the transfer and its credential.
    const killed = await cutShort('copy-sender-restarted', async () => {
      process.kill(sandboxAgent(info(donor))!.pid!, 'SIGKILL');
      for (let i = 0; i < 100 && sandboxAgent(info(donor))!.running; i++) await sleep(50);
    });
    assert.equal(killed.error?.code, 'TRANSPORT_FAILED', JSON.stringify(killed.error));
    assert.match(killed.error!.message, /no longer knows this transfer/);
    // Stopped cleanly instead, it says so in the streams it ends.
    const stopped = await cutShort('copy-sender-stopped', () => sandboxAgentDown(info(donor)));
    assert.match(stopped.error!.message, /the sending agent ended this stream: the agent is stopping/);
  });

  it('no secret in a process list, a log, a job record, an event or an API response', async () => {
    const secrets = [donor, joiner].map((s) =>
      readFileSync(join(s.info.dir, 'agent', 'token'), 'utf8').trim(),
    );
    const opened = await api.donor.call<{ id: string; secret: string }>('POST', '/v1/transfers', {
      path: tree,
    });
    await api.donor.call('DELETE', `/v1/transfers/${opened.id}`);
    secrets.push(opened.secret);
    const places: [string, string][] = [['ps', execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })]];
    for (const s of [donor, joiner]) {
      places.push([`${s.info.name} agent.log`, readFileSync(join(s.info.dir, 'agent', 'agent.log'), 'utf8')]);
      const jobsDir = join(s.info.dir, 'agent', 'state', 'jobs');
      if (existsSync(jobsDir))
        for (const f of readdirSync(jobsDir)) places.push([f, readFileSync(join(jobsDir, f), 'utf8')]);
      const journals = join(s.info.dir, 'agent', 'state', 'journal');
      if (existsSync(journals))
        for (const f of readdirSync(journals)) places.push([f, readFileSync(join(journals, f), 'utf8')]);
    }
    places.push(['GET /v1/jobs', JSON.stringify(await api.joiner.call('GET', '/v1/jobs'))]);
    for (const [where, text] of places)
      for (const s of secrets) assert.ok(!text.includes(s), `a secret is in ${where}`);
    // Nothing but JSON lines in the logs: no listener leak warning from a transfer of many files.
    for (const [where, text] of places.filter(([w]) => w.endsWith('agent.log')))
      assert.ok(!text.includes('MaxListenersExceededWarning'), `a listener leak warning in ${where}`);
  });

  it("sandbox down stops the donor's mysqld, not its agent: its stopped datadir can then be sent", async () => {
    const down = await reseed(['sandbox', 'down', donor.info.name]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(sandboxAgent(info(donor))!.running, true, 'the agent keeps running');
    try {
      const r = await reseed([
        'transfer',
        '--from',
        `agent://${donor.info.name}${join(donor.info.dir, 'data')}`,
        '--to',
        `agent://${joiner.info.name}${dest('datadir')}`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(compareTrees(readTree(join(donor.info.dir, 'data')), readTree(dest('datadir'))), []);
    } finally {
      await sandboxUp(donor.info.name);
    }
  });

  it('serves its OpenAPI document', async () => {
    const doc = await api.joiner.call<{ openapi: string; paths: Record<string, unknown> }>(
      'GET',
      '/v1/openapi.json',
    );
    assert.match(doc.openapi, /^3\./);
    for (const p of [
      '/v1/jobs',
      '/v1/jobs/{id}/events',
      '/v1/jobs/{id}/cancel',
      '/v1/transfers/{id}/segment',
      '/v1/health',
    ])
      assert.ok(doc.paths[p], `${p} is documented`);
  });

  it("never writes into the receiving host's datadir, running or not", async () => {
    const r = await transfer('data/intodatadir');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /a transfer never writes into a datadir/);
    assert.equal(existsSync(join(joiner.info.dir, 'data', 'intodatadir')), false);
  });
});
