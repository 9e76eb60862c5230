import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { finishInitConfig, startAgentProcess } from '../helpers/agents.js';
import { ROOT } from '../helpers/sandboxes.js';
import { compareTrees, readTree } from '../helpers/tree.js';
import { inNs, makeHosts, removeHosts } from '../helpers/netns.js';
import type { Hosts } from '../helpers/netns.js';
import { zstdAvailable } from '../../src/transport/codec.js';

/**
 * Two agents on two "hosts": network namespaces joined by a veth pair, set up as `reseed agent
 * init` describes (certificates for the hosts' addresses, mutual TLS, peers by address), the
 * link limited with tc tbf, cut by taking the link down. netem does not exist on this kernel.
 */
let h: Hosts;
const work = join(process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test', `netns-${process.pid}`);
const agents: ChildProcess[] = [];

/** `reseed transfer` run on host b (in its namespace), as a DBA there would; its output as it comes. */
function transfer(dest: string, ...extra: string[]) {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      h.ns.b,
      process.execPath,
      join(ROOT, 'bin', 'reseed'),
      'transfer',
      '--from',
      `agent://alpha${join(work, 'src')}`,
      '--to',
      `agent://beta${join(work, 'dst', dest)}`,
      '--json',
      ...extra,
    ],
    {
      env: { ...process.env, RESEED_AGENTS: join(work, 'pki', 'agents.json') },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { done, out: () => stdout };
}

/** Waits for the first progress event of a --json transfer still running. */
async function untilBytes(out: () => string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (/"type":"progress"[^\n]*"bytes":[1-9]/.test(out())) return;
    await sleep(50);
  }
  throw new Error('the transfer never started copying');
}

describe('agents on two hosts (network namespaces)', () => {
  before(async () => {
    mkdirSync(join(work, 'src', 'sub'), { recursive: true });
    mkdirSync(join(work, 'dst'), { recursive: true });
    // 48 MB, not compressible, so the link's limit is what paces it.
    execFileSync('dd', ['if=/dev/urandom', `of=${join(work, 'src', 'data.bin')}`, 'bs=1M', 'count=40'], {
      stdio: 'ignore',
    });
    execFileSync(
      'dd',
      ['if=/dev/urandom', `of=${join(work, 'src', 'sub', 'more.bin')}`, 'bs=1M', 'count=8'],
      { stdio: 'ignore' },
    );
    writeFileSync(join(work, 'src', 'sub', 'small'), 'x');
    // 100 Mbit/s each way.
    h = makeHosts('rs', `${process.pid % 200}.0`, '100mbit', '128kb');
    execFileSync(process.execPath, [
      join(ROOT, 'bin', 'reseed'),
      'agent',
      'init',
      '--hosts',
      `alpha=${h.addr.a},beta=${h.addr.b}`,
      '--out',
      join(work, 'pki'),
    ]);
    for (const [host, x] of [
      ['alpha', 'a'],
      ['beta', 'b'],
    ] as const) {
      const file = join(work, 'pki', host, 'config.json');
      finishInitConfig(file, {
        serve: [join(work, 'src')],
        receive: [join(work, 'dst')],
        listen: { host: h.addr[x], port: 7420 },
      });
      agents.push(await startAgentProcess(file, h.ns[x]));
    }
  });
  after(() => {
    for (const a of agents) if (a.exitCode === null) a.kill('SIGKILL');
    removeHosts(h);
  });

  it('the tree crosses a 100 Mbit/s link between two hosts, equal', async () => {
    const r = await transfer('copy', '--parallel', '2').done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(compareTrees(readTree(join(work, 'src')), readTree(join(work, 'dst', 'copy'))), []);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      result: { bytes: number; durationMs: number };
    };
    const mbit = (job.result.bytes * 8) / (job.result.durationMs / 1000) / 1e6;
    assert.ok(mbit < 110, `${mbit.toFixed(0)} Mbit/s through a 100 Mbit/s link: the limit did not apply`);
  });

  it('--compress auto measures the 100 Mbit/s link and picks zstd', async () => {
    const r = await transfer('copy-auto', '--compress', 'auto').done;
    assert.equal(r.code, 0, r.stderr);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { result: { codec: string } };
    assert.equal(job.result.codec, zstdAvailable() ? 'zstd' : 'lz4');
    assert.deepEqual(compareTrees(readTree(join(work, 'src')), readTree(join(work, 'dst', 'copy-auto'))), []);
  });

  it('2% of the packets dropped each way (nftables): TCP retransmits, the tree arrives equal', async () => {
    // netem's loss does not exist on this kernel: an nftables rule in each namespace drops packets
    // at random as they leave.
    const ruleset = (dev: string) =>
      [
        'table inet reseed_loss {',
        '  chain out {',
        '    type filter hook output priority 0; policy accept;',
        `    oifname "${dev}" numgen random mod 100 < 2 counter drop`,
        '  }',
        '}',
      ].join('\n');
    for (const x of ['a', 'b'] as const) {
      const file = join(work, `loss-${x}.nft`);
      writeFileSync(file, ruleset(h.dev[x]));
      inNs(h.ns[x], 'nft', '-f', file);
    }
    try {
      const r = await transfer('copy-lossy').done;
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        compareTrees(readTree(join(work, 'src')), readTree(join(work, 'dst', 'copy-lossy'))),
        [],
      );
      // The rule did drop packets (its counter), on the data's way.
      const listed = inNs(h.ns.a, 'nft', 'list', 'table', 'inet', 'reseed_loss').toString();
      assert.ok(Number(/packets (\d+)/.exec(listed)?.[1] ?? 0) > 10, listed);
    } finally {
      for (const x of ['a', 'b'] as const) inNs(h.ns[x], 'nft', 'delete', 'table', 'inet', 'reseed_loss');
    }
  });

  it('the link down for 6 s: the streams stall, then resume; down for good: it fails and leaves nothing', async () => {
    // A stream silent for a third of --resume-timeout (4 s here) is taken as cut. A shorter cut
    // is no cut at all for the transfer: TCP retransmits through it.
    const run = transfer('copy-cut', '--resume-timeout', '12s');
    await untilBytes(run.out);
    inNs(h.ns.a, 'ip', 'link', 'set', h.dev.a, 'down');
    await sleep(6000);
    inNs(h.ns.a, 'ip', 'link', 'set', h.dev.a, 'up');
    const r = await run.done;
    assert.equal(r.code, 0, r.stderr);
    const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { result: { resumes: number } };
    assert.ok(job.result.resumes >= 1, `resumed ${job.result.resumes} times`);
    assert.deepEqual(compareTrees(readTree(join(work, 'src')), readTree(join(work, 'dst', 'copy-cut'))), []);

    const lost = transfer('copy-lost', '--resume-timeout', '4s');
    await untilBytes(lost.out);
    inNs(h.ns.a, 'ip', 'link', 'set', h.dev.a, 'down');
    try {
      const r2 = await lost.done;
      assert.equal(r2.code, 6, r2.stderr);
      assert.match(r2.stderr, /cut for more than 4 s/);
      assert.equal(existsSync(join(work, 'dst', 'copy-lost')), false, r2.stderr);
    } finally {
      inNs(h.ns.a, 'ip', 'link', 'set', h.dev.a, 'up');
    }
  });
});
