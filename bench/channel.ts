// The data channel against socat (issue 9): the bench donor's stopped datadir from one sandbox
// agent to another on loopback, side by side with `tar | socat` and `tar | socat openssl`, with
// and without compression. Ratios in one run; the page cache dropped before each run.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../src/agent/client.js';
import type { JobRecord } from '../src/agent/jobs.js';
import { resolveAgent } from '../src/agent/registry.js';
import { sandboxAgentDown, sandboxAgentUp } from '../src/agent/sandbox-agent.js';
import { freePort, getSandbox, sandboxDown, sandboxRemove, sandboxUp } from '../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../src/sandbox/sandbox.js';
import { sh } from './methods.js';

export interface ChannelRow {
  label: string;
  /** median seconds */
  seconds: number;
  runs: number[];
  wireBytes?: number | undefined;
}

export interface ChannelResult {
  bytes: number;
  files: number;
  rows: ChannelRow[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** socat's TLS needs files: the sandbox agents' CA and certificates serve. */
function tlsFiles(donor: SandboxInfo, joiner: SandboxInfo) {
  const ca = join(donor.dir, '..', 'agent-ca', 'ca.pem');
  return {
    server: `cert=${join(joiner.dir, 'agent', 'cert.pem')},key=${join(joiner.dir, 'agent', 'key.pem')},cafile=${ca},verify=1`,
    client: `cert=${join(donor.dir, 'agent', 'cert.pem')},key=${join(donor.dir, 'agent', 'key.pem')},cafile=${ca},commonname=127.0.0.1,verify=1`,
  };
}

/** `tar -c | [compress |] socat` into `socat | [decompress |] tar -x`: what DBAs script today. */
async function socatRun(
  src: string,
  dest: string,
  o: { tls?: { server: string; client: string }; codec?: 'zstd' | 'lz4'; sync?: boolean },
) {
  rmSync(dest, { recursive: true, force: true });
  const port = await freePort();
  const listen = o.tls ? `OPENSSL-LISTEN:${port},reuseaddr,${o.tls.server}` : `TCP-LISTEN:${port},reuseaddr`;
  const connect = o.tls ? `OPENSSL:127.0.0.1:${port},${o.tls.client}` : `TCP:127.0.0.1:${port}`;
  const comp = o.codec === 'zstd' ? 'zstd -1 -q -c |' : o.codec === 'lz4' ? 'lz4 -1 -q -c |' : '';
  const decomp = o.codec === 'zstd' ? 'zstd -d -q -c |' : o.codec === 'lz4' ? 'lz4 -d -q -c |' : '';
  await sh(`mkdir -p ${dest}`);
  const receiver = sh(`socat -u ${listen} STDOUT | ${decomp} tar -C ${dest} -xf -`);
  await new Promise((r) => setTimeout(r, 300));
  await sh(`tar -C ${src} -cf - . | ${comp} socat -u STDIN ${connect}`);
  await receiver;
  // reseed's receiver syncs each file before it counts it: the same durability, for comparison.
  if (o.sync) await sh(`sync -f ${dest}`);
}

export async function channelBench(opts: {
  donor: SandboxInfo;
  runs: number;
  parallel: number;
  dropCaches: () => Promise<boolean>;
}): Promise<ChannelResult> {
  // The donor's datadir, stopped: files at rest, as a physical copy reads them.
  await sandboxDown(opts.donor.name);
  const donor = getSandbox(opts.donor.name)!;
  const joiner = await sandboxUp('bench-channel-joiner', { bufferPool: '128M' });
  await sandboxAgentUp(donor);
  await sandboxAgentUp(joiner);
  const client = new AgentClient(resolveAgent(joiner.name));
  const src = join(donor.dir, 'data');
  const dest = join(joiner.dir, 'received');
  const size = await sh(`du -sb --apparent-size ${src} | cut -f1; find ${src} -type f | wc -l`);
  const [bytes, files] = size.stdout.trim().split('\n').map(Number) as [number, number];
  const tls = tlsFiles(donor, joiner);
  const cases: { label: string; run: () => Promise<{ wire?: number }> }[] = [];
  for (const codec of ['none', 'lz4', 'zstd'] as const)
    cases.push({
      label: `reseed transfer, TLS, --compress ${codec}`,
      run: async () => {
        rmSync(dest, { recursive: true, force: true });
        const job = await client.call<JobRecord>('POST', '/v1/jobs', {
          kind: 'transfer',
          from: donor.name,
          path: src,
          dest,
          parallel: opts.parallel,
          compress: codec,
        });
        for await (const e of client.events(job.id)) void e;
        const done = await client.call<JobRecord>('GET', `/v1/jobs/${job.id}`);
        if (done.state !== 'done') throw new Error(`transfer ${done.state}: ${done.error?.message}`);
        return { wire: Number(done.result?.wireBytes) };
      },
    });
  cases.push({ label: 'tar | socat (plain TCP)', run: async () => (await socatRun(src, dest, {}), {}) });
  cases.push({
    label: 'tar | socat openssl (TLS)',
    run: async () => (await socatRun(src, dest, { tls }), {}),
  });
  cases.push({
    label: 'tar | socat openssl (TLS), then sync',
    run: async () => (await socatRun(src, dest, { tls, sync: true }), {}),
  });
  cases.push({
    label: 'tar | lz4 | socat openssl',
    run: async () => (await socatRun(src, dest, { tls, codec: 'lz4' }), {}),
  });
  cases.push({
    label: 'tar | zstd -1 | socat openssl',
    run: async () => (await socatRun(src, dest, { tls, codec: 'zstd' }), {}),
  });
  const rows: ChannelRow[] = cases.map((c) => ({ label: c.label, seconds: 0, runs: [] }));
  try {
    for (let round = 0; round < opts.runs; round++)
      for (const [i, c] of cases.entries()) {
        await opts.dropCaches();
        let wire: number | undefined;
        const s = await timed(async () => (wire = (await c.run()).wire));
        rows[i]!.runs.push(s);
        if (wire !== undefined) rows[i]!.wireBytes = wire;
        console.error(`  channel round ${round + 1} ${c.label}: ${s.toFixed(1)} s`);
      }
  } finally {
    await client.close();
    await sandboxAgentDown(getSandbox(joiner.name)!);
    await sandboxAgentDown(getSandbox(donor.name)!);
    await sandboxRemove(joiner.name);
    if (existsSync(dest)) rmSync(dest, { recursive: true, force: true });
    await sandboxUp(donor.name);
  }
  for (const r of rows) r.seconds = median(r.runs);
  return { bytes, files, rows };
}

export function renderChannel(r: ChannelResult, command: string): string {
  const gb = r.bytes / 1e9;
  const by = (label: string) => r.rows.find((x) => x.label === label)!.seconds;
  const tlsSocat = by('tar | socat openssl (TLS)');
  // Each reseed row against socat with the same security and compression.
  const counterpart: Record<string, string> = {
    'reseed transfer, TLS, --compress none': 'tar | socat openssl (TLS)',
    'reseed transfer, TLS, --compress lz4': 'tar | lz4 | socat openssl',
    'reseed transfer, TLS, --compress zstd': 'tar | zstd -1 | socat openssl',
  };
  const lines = [
    '## Data channel (agents) against socat',
    '',
    `The bench donor's stopped datadir (${gb.toFixed(2)} GB, ${r.files} files) from one sandbox agent to another on loopback,`,
    'against `tar | socat` into `socat | tar -x`, the page cache dropped before each run; medians. reseed also',
    'checks an XXH3 checksum per frame and a 128-bit digest per segment on both ends and keeps holes, which',
    "socat and tar do not; socat's TLS is given the same certificates (mutual TLS). reseed's receiver also",
    'syncs every file to disk before it counts it, which tar does not: the "then sync" row adds `sync -f` on the',
    "destination's filesystem after tar, for the same durability. Both ends run on this machine's two cores",
    "(each agent's main thread does its TLS; the receiver's frames are checked and written on a worker thread).",
    '',
    '| method | seconds | MB/s | wire bytes | speed against socat openssl with the same compression | against socat openssl, then sync |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...r.rows.map((x) => {
      const peer = counterpart[x.label];
      const ratio = peer
        ? `${(by(peer) / x.seconds).toFixed(2)}x`
        : `${(tlsSocat / x.seconds).toFixed(2)}x of plain openssl`;
      const durable =
        x.label === 'reseed transfer, TLS, --compress none'
          ? `${(by('tar | socat openssl (TLS), then sync') / x.seconds).toFixed(2)}x`
          : '-';
      return `| ${x.label.replace(/\|/g, '\\|')} | ${x.seconds.toFixed(1)} | ${(r.bytes / 1e6 / x.seconds).toFixed(0)} | ${x.wireBytes ? `${(x.wireBytes / 1e9).toFixed(2)} GB` : '-'} | ${ratio} | ${durable} |`;
    }),
    '',
    `Run: \`${command}\`.`,
  ];
  return lines.join('\n');
}
