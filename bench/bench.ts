// npm run bench -- [--size 2G] [--runs 3] [--parallel 4] [--no-rss-2x] [--out docs/benchmarks.md]
//                   [--sections clone,verify,impact,channel,physical] [--verify-runs 3] [--alone 30]
//                   [--channel-runs 3] [--physical-runs 3] [--copy-runs 3]
//                   [--snapshot-clones 20] [--snapshot-size 500M] [--snapshot-fs btrfs,zfs]
//                   [--channel-netns-runs 1]
//                   (sections: clone,verify,impact,channel,physical,copy,snapshot,channel-netns; the
//                   default is clone,verify,impact,channel,physical,copy. snapshot and channel-netns
//                   are asked for by name: snapshot makes btrfs and zfs filesystems; channel-netns
//                   runs the agents in two network namespaces over a veth pair limited with tc tbf
//                   to 200 Mbit/s with 50 ms of round trip (a delaying relay), codecs and a 5 s cut;
//                   it needs root, `ip netns`, tc with tbf, and curl; e.g.
//                   npm run bench -- --size 1G --sections channel-netns --channel-netns-runs 1)
// Measures, on one generated dataset, each method into a fresh empty joiner sandbox, rounds
// interleaved, the OS page cache dropped before each run; reports medians and ratios to reseed.
import { writeFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { connect } from '../src/mysql/server.js';
import { sandboxEndpoint, sandboxRemove, sandboxUp } from '../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../src/sandbox/sandbox.js';
import { createDataset, shape } from './dataset.js';
import type { BenchContext, RunResult } from './methods.js';
import {
  ingestLimit,
  mariabackupStream,
  mydumperMyloader,
  mysqldumpPipe,
  prepareCsv,
  reseedClone,
  sh,
} from './methods.js';
import { renderChart, renderReport } from './report.js';
import { impactBench, renderImpact, renderVerify, verifyBench, withSection } from './extra.js';
import { channelBench, renderChannel } from './channel.js';
import { channelNetnsBench, renderNetns } from './channel-netns.js';
import { physicalBench, renderPhysical } from './physical.js';
import { copyBench, renderCopy } from './copy.js';
import { renderSnapshot, snapshotBench } from './snapshot.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '2G' },
    runs: { type: 'string', default: '3' },
    parallel: { type: 'string', default: '4' },
    'rss-2x': { type: 'boolean', default: true },
    'no-rss-2x': { type: 'boolean', default: false },
    out: { type: 'string', default: join(root, 'docs', 'benchmarks.md') },
    methods: { type: 'string', default: 'reseed,mysqldump,mydumper,ingest,mariabackup' },
    sections: { type: 'string', default: 'clone,verify,impact,channel,physical,copy' },
    'copy-runs': { type: 'string', default: '3' },
    'snapshot-clones': { type: 'string', default: '20' },
    'snapshot-size': { type: 'string', default: '500M' },
    'snapshot-fs': { type: 'string', default: 'btrfs,zfs' },
    'physical-runs': { type: 'string', default: '3' },
    'verify-runs': { type: 'string', default: '3' },
    alone: { type: 'string', default: '30' },
    'channel-runs': { type: 'string', default: '3' },
    'channel-netns-runs': { type: 'string', default: '1' },
  },
});

const FULL = 2.2e9;
function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([MG])$/i.exec(text);
  if (!m) throw new Error(`--size takes e.g. 200M or 2G, not ${text}`);
  return Number(m[1]) * (m[2]!.toUpperCase() === 'G' ? 1e9 : 1e6);
}

export const METHODS: Record<
  string,
  { label: string; run: (ctx: BenchContext, joiner: SandboxInfo) => Promise<RunResult> }
> = {
  reseed: { label: 'reseed logical clone', run: reseedClone },
  mysqldump: { label: 'mariadb-dump \\| mariadb', run: mysqldumpPipe },
  mydumper: { label: 'mydumper + myloader', run: mydumperMyloader },
  ingest: { label: 'ingest limit (LOAD DATA INFILE)', run: ingestLimit },
  mariabackup: { label: 'mariabackup stream + prepare', run: mariabackupStream },
};

process.env.RESEED_SANDBOX_DIR ??= '/var/tmp/reseed-bench/sandboxes';
process.env.RESEED_STATE_DIR ??= '/var/tmp/reseed-bench/state';
const work = '/var/tmp/reseed-bench/work';

async function dropCaches(): Promise<boolean> {
  try {
    await sh('sync; echo 3 > /proc/sys/vm/drop_caches');
    return true;
  } catch {
    return false;
  }
}

async function makeDonor(
  name: string,
  scale: number,
): Promise<{ donor: SandboxInfo; bytes: number; tables: string[] }> {
  const donor = await sandboxUp(name, { bufferPool: '2G' });
  const s = await connect(sandboxEndpoint(donor));
  try {
    const [exists] = await s.query(
      "SELECT COUNT(*) AS n FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'bench'",
    );
    if (Number(exists!.n) === 0) {
      const t = Date.now();
      await createDataset(s, shape(scale));
      await s.query("CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'repl'");
      await s.query("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'");
      console.error(`dataset at scale ${scale} made in ${((Date.now() - t) / 1000).toFixed(0)} s`);
    }
    const rows = await s.query(
      "SELECT TABLE_NAME AS t, DATA_LENGTH AS d FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench' ORDER BY 1",
    );
    return { donor, bytes: rows.reduce((a, r) => a + Number(r.d), 0), tables: rows.map((r) => String(r.t)) };
  } finally {
    await s.close();
  }
}

async function runOnce(ctx: BenchContext, method: string, round: number): Promise<RunResult> {
  const name = `bench-joiner-${method}-${round}`;
  await sandboxRemove(name).catch(() => undefined);
  const joiner = await sandboxUp(name, { bufferPool: '2G' });
  try {
    await dropCaches();
    const r = await METHODS[method]!.run(ctx, joiner);
    console.error(`  round ${round} ${method}: ${(r.wallMs / 1000).toFixed(1)} s`);
    return r;
  } finally {
    await sandboxRemove(name).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const scale = parseSize(args.size!) / FULL;
  const runs = Number(args.runs);
  const parallel = Number(args.parallel);
  const methods = args.methods!.split(',');
  const sections = args.sections!.split(',');
  const { donor, bytes, tables } = await makeDonor(`bench-donor-${args.size}`, scale);
  const ctx: BenchContext = { root, donor, parallel, work, tables, csvDir: join(work, 'csv') };
  let report = existsSync(args.out!) ? readFileSync(args.out!, 'utf8') : '';
  if (sections.includes('clone'))
    report = await cloneSection(ctx, { scale, runs, methods, bytes, old: report });
  if (sections.includes('verify')) {
    const v = await verifyBench(ctx, Number(args['verify-runs']), dropCaches);
    const pt = (await sh('pt-table-checksum --version')).stdout.trim();
    report = withSection(report, 'verify', renderVerify(v, pt));
  }
  if (sections.includes('impact'))
    report = withSection(report, 'impact', renderImpact(await impactBench(ctx, Number(args.alone))));
  if (sections.includes('physical')) {
    const p = await physicalBench({ donor, runs: Number(args['physical-runs']), parallel, dropCaches });
    report = withSection(
      report,
      'physical',
      renderPhysical(p, `npm run bench -- ${process.argv.slice(2).join(' ')}`),
    );
  }
  if (sections.includes('copy')) {
    const c = await copyBench({ donor, runs: Number(args['copy-runs']), parallel, dropCaches });
    report = withSection(
      report,
      'copy',
      renderCopy(c, `npm run bench -- ${process.argv.slice(2).join(' ')}`),
    );
    // Kept as each section ends: a later section that fails does not lose it.
    writeFileSync(args.out!, report);
  }
  if (sections.includes('snapshot')) {
    const results = [];
    for (const fs of args['snapshot-fs']!.split(',') as ('btrfs' | 'zfs')[])
      results.push(
        await snapshotBench({
          fs,
          bytes: parseSize(args['snapshot-size']!),
          clones: Number(args['snapshot-clones']),
          dropCaches,
        }),
      );
    report = withSection(
      report,
      'snapshot',
      renderSnapshot(results, `npm run bench -- ${process.argv.slice(2).join(' ')}`),
    );
  }
  if (sections.includes('channel')) {
    const c = await channelBench({ donor, runs: Number(args['channel-runs']), parallel, dropCaches });
    report = withSection(
      report,
      'channel',
      renderChannel(c, `npm run bench -- ${process.argv.slice(2).join(' ')}`),
    );
  }
  if (sections.includes('channel-netns')) {
    const runs = Number(args['channel-netns-runs']);
    const n = await channelNetnsBench({ donor, runs, parallel, work, dropCaches });
    report = withSection(
      report,
      'channel-netns',
      renderNetns(n, `npm run bench -- ${process.argv.slice(2).join(' ')}`),
    );
  }
  writeFileSync(args.out!, report);
  console.error(`wrote ${args.out}`);
}

/** The clone methods' comparison; the other sections of the old report are kept. */
async function cloneSection(
  ctx: BenchContext,
  o: { scale: number; runs: number; methods: string[]; bytes: number; old: string },
): Promise<string> {
  const { runs, methods } = o;
  if (methods.includes('ingest')) await prepareCsv(ctx);
  const cacheDropped = await dropCaches();
  const results: Record<string, RunResult[]> = Object.fromEntries(methods.map((m) => [m, []]));
  for (let round = 1; round <= runs; round++) {
    // Interleaved, and each round starts with another method, so drift hits all alike.
    const order = methods.map((_, i) => methods[(i + round - 1) % methods.length]!);
    for (const m of order) results[m]!.push(await runOnce(ctx, m, round));
  }
  let rss2x: { bytes: number; result: RunResult } | undefined;
  if (args['rss-2x'] && !args['no-rss-2x']) {
    const big = await makeDonor(`bench-donor-2x-${args.size}`, o.scale * 2);
    const r = await runOnce({ ...ctx, donor: big.donor, tables: big.tables }, 'reseed', 0);
    rss2x = { bytes: big.bytes, result: r };
    await sandboxRemove(big.donor.name);
  }
  if (existsSync(ctx.csvDir)) rmSync(ctx.csvDir, { recursive: true, force: true });
  const versions = {
    machine: `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    mariadb: (await sh('mariadbd --version')).stdout.trim(),
    mydumper: (await sh('mydumper --version')).stdout.trim(),
    node: process.version,
    cacheDropped,
  };
  // The chart goes next to the report, named after it (docs/benchmarks.md -> docs/benchmarks.svg).
  const chart = args.out!.replace(/(\.md)?$/, '.svg');
  let report = renderReport({
    size: args.size!,
    bytes: o.bytes,
    runs,
    parallel: ctx.parallel,
    methods,
    labels: Object.fromEntries(methods.map((m) => [m, METHODS[m]!.label])),
    results,
    rss2x,
    versions,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    chart: basename(chart),
  });
  writeFileSync(chart, renderChart(methods.map((m) => ({ label: METHODS[m]!.label, results: results[m]! }))));
  for (const name of ['verify', 'impact', 'channel', 'channel-netns', 'physical', 'copy', 'snapshot']) {
    const m = new RegExp(`<!-- bench:${name} -->\\n([\\s\\S]*?)\\n<!-- /bench:${name} -->`).exec(o.old);
    if (m) report = withSection(report, name, m[1]!);
  }
  return report;
}

await main();
