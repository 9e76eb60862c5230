// Two more measures for `npm run bench`: verify against pt-table-checksum on the same pair, and
// the donor's latency under a fixed-rate sysbench load while reseed clones it, throttle off and on.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../src/mysql/server.js';
import { sandboxEndpoint, sandboxRemove, sandboxUp } from '../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../src/sandbox/sandbox.js';
import type { BenchContext } from './methods.js';
import { sh } from './methods.js';
import { median } from './report.js';

const secs = (ms: number) => (ms / 1000).toFixed(1);

async function onServer(info: SandboxInfo, statements: string[]): Promise<Record<string, unknown>[]> {
  const s = await connect(sandboxEndpoint(info));
  try {
    let last: Record<string, unknown>[] = [];
    for (const q of statements) last = await s.query(q);
    return last;
  } finally {
    await s.close();
  }
}

interface CloneRun {
  wallMs: number;
  summary: Record<string, unknown>;
}

/** reseed clone of the bench schema into `joiner`, under `taskset` when given; the JSON summary. */
async function cloneWithSummary(
  ctx: BenchContext,
  joiner: SandboxInfo,
  extra: string[],
  cpu?: string,
): Promise<CloneRun> {
  const started = Date.now();
  const cmd =
    `${cpu ? `taskset -c ${cpu} ` : ''}${join(ctx.root, 'bin', 'reseed')} clone ` +
    `--from mysql://root@127.0.0.1:${ctx.donor.port} --to mysql://root@127.0.0.1:${joiner.port} ` +
    `--parallel ${ctx.parallel} --json ${extra.join(' ')}`;
  const { stdout } = await sh(cmd, { RESEED_REPLICATION_PASSWORD: 'repl' });
  const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  return { wallMs: Date.now() - started, summary };
}

// ---- 1. verify against pt-table-checksum ----------------------------------------------------

export interface VerifyBench {
  runs: { reseedMs: number; unthrottledMs: number; ptMs: number }[];
  copyMs: number;
}

export async function verifyBench(
  ctx: BenchContext,
  runs: number,
  dropCaches: () => Promise<boolean>,
): Promise<VerifyBench> {
  const name = 'bench-verify-joiner';
  await sandboxRemove(name).catch(() => undefined);
  const joiner = await sandboxUp(name, { bufferPool: '2G' });
  try {
    // Every schema, so that replication is not filtered: pt-table-checksum's own table replicates.
    const clone = await cloneWithSummary(ctx, joiner, ['--replication-user', 'repl']);
    const copyMs = Number((clone.summary.phases as Record<string, number>).copy);
    // pt-table-checksum finds the replica through a DSN table (its processlist discovery cannot
    // see a replica's port on one host); it is replicated to the joiner like its checksums.
    await onServer(ctx.donor, [
      'CREATE DATABASE IF NOT EXISTS percona',
      'CREATE TABLE IF NOT EXISTS percona.dsns (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT, dsn VARCHAR(255) NOT NULL)',
      'DELETE FROM percona.dsns',
      `INSERT INTO percona.dsns (dsn) VALUES ('h=127.0.0.1,P=${joiner.port},u=root')`,
    ]);
    const out: VerifyBench['runs'] = [];
    for (let round = 1; round <= runs; round++) {
      const one = { reseedMs: 0, unthrottledMs: 0, ptMs: 0 };
      const tools = ['reseedMs', 'unthrottledMs', 'ptMs'] as const;
      // Each round starts with another tool, so drift hits all alike.
      const order = tools.map((_, i) => tools[(i + round - 1) % tools.length]!);
      for (const tool of order) {
        await dropCaches();
        const t = Date.now();
        if (tool !== 'ptMs')
          await sh(
            `${join(ctx.root, 'bin', 'reseed')} verify --from mysql://root@127.0.0.1:${ctx.donor.port} ` +
              `--to mysql://root@127.0.0.1:${joiner.port} --schemas bench --parallel ${ctx.parallel}` +
              (tool === 'unthrottledMs' ? ' --no-throttle' : ''),
          );
        else
          await sh(
            `pt-table-checksum h=127.0.0.1,P=${ctx.donor.port},u=root --databases=bench ` +
              `--recursion-method=dsn=h=127.0.0.1,P=${ctx.donor.port},D=percona,t=dsns ` +
              '--replicate=percona.checksums --no-check-binlog-format',
          );
        one[tool] = Date.now() - t;
      }
      console.error(
        `  verify round ${round}: reseed ${secs(one.reseedMs)} s, --no-throttle ${secs(one.unthrottledMs)} s, pt-table-checksum ${secs(one.ptMs)} s`,
      );
      out.push(one);
    }
    return { runs: out, copyMs };
  } finally {
    await onServer(ctx.donor, ['DROP DATABASE IF EXISTS percona']).catch(() => undefined);
    await sandboxRemove(name).catch(() => undefined);
  }
}

export function renderVerify(v: VerifyBench, ptVersion: string): string {
  const r = median(v.runs.map((x) => x.reseedMs));
  const u = median(v.runs.map((x) => x.unthrottledMs));
  const p = median(v.runs.map((x) => x.ptMs));
  const met = (ok: boolean) => (ok ? 'met' : '**not met**');
  return [
    '## Verify against pt-table-checksum',
    '',
    `Same pair (the donor and a reseed-made replica of it), page cache dropped before each run, ${v.runs.length} rounds`,
    `alternating which tool goes first; ${ptVersion} through replication (its checksums replicate and the`,
    'replica computes them too), reseed verify holding the replica at the donor snapshot. Both servers share',
    "this machine's 2 cores, so each tool's time is the two servers' checksum work together. reseed's",
    "throttle is on by default; here the joiner's work on the shared cores slows the donor's probe, so it",
    'also backs off for its own load: the --no-throttle row shows verify without it.',
    '',
    '| tool | median | runs (s) | per-chunk detection |',
    '| --- | ---: | --- | --- |',
    `| reseed verify | ${secs(r)} s | ${v.runs.map((x) => secs(x.reseedMs)).join(', ')} | SHA-256 of the chunk's rows in key order (256 bits); order-free tables: exact sum of 64-bit row hashes |`,
    `| reseed verify --no-throttle | ${secs(u)} s | ${v.runs.map((x) => secs(x.unthrottledMs)).join(', ')} | the same |`,
    `| pt-table-checksum | ${secs(p)} s | ${v.runs.map((x) => secs(x.ptMs)).join(', ')} | 32 bits (CRC32 of each row, XORed) |`,
    '',
    '| target | result | measured |',
    '| --- | --- | --- |',
    `| verify <= 0.5x pt-table-checksum | ${met(r <= 0.5 * p)} | ${(r / p).toFixed(2)}x (--no-throttle: ${(u / p).toFixed(2)}x) |`,
    `| verify <= 0.5x the clone's copy time (${secs(v.copyMs)} s) | ${met(r <= 0.5 * v.copyMs)} | ${(r / v.copyMs).toFixed(2)}x (--no-throttle: ${(u / v.copyMs).toFixed(2)}x) |`,
    '| detection >= 64 bits per chunk | met | 256 bits in key order (64 bits order-free), and no blind spot for repeated or duplicated changes (test/verify/detection.test.ts) |',
    '',
  ].join('\n');
}

// ---- 2. the donor's latency during a clone ---------------------------------------------------

const SYSBENCH_TABLES = 4;
const SYSBENCH_ROWS = 100_000;

export interface ImpactRun {
  label: string;
  cloneMs: number | undefined;
  /** sysbench's per-second 99th percentile latencies (ms) over the window */
  p99s: number[];
  throttle?: Record<string, unknown> | undefined;
}

function sysbenchArgs(donor: SandboxInfo, rest: string): string {
  return (
    `oltp_read_write --db-driver=mysql --mysql-socket=${join(donor.dir, 'mariadbd.sock')} --mysql-user=root ` +
    `--mysql-db=sbt --tables=${SYSBENCH_TABLES} --table-size=${SYSBENCH_ROWS} ${rest}`
  );
}

/**
 * Runs the fixed-rate load (40 tx/s, 4 threads) on the donor around `during` and returns the
 * per-second p99 latencies sysbench reported while `during` ran.
 */
async function underLoad(donor: SandboxInfo, during: () => Promise<void>): Promise<number[]> {
  const child = spawn(
    'bash',
    [
      '-c',
      `exec nice -n -10 taskset -c 1 sysbench ${sysbenchArgs(donor, '--threads=4 --rate=40 --time=0 --report-interval=1 --percentile=99')} run`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const started = Date.now();
  try {
    await new Promise((r) => setTimeout(r, 5000));
    const from = (Date.now() - started) / 1000;
    await during();
    const to = (Date.now() - started) / 1000;
    return [...text.matchAll(/\[ *(\d+)s \].*?lat \(ms,99%\): ([\d.]+)/g)]
      .map((m) => [Number(m[1]), Number(m[2])] as const)
      .filter(([s]) => s > from + 1 && s <= to)
      .map(([, v]) => v);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

async function pin(info: SandboxInfo, cpus: string): Promise<void> {
  const pid = readFileSync(join(info.dir, 'mariadbd.pid'), 'utf8').trim();
  await sh(`taskset -a -p -c ${cpus} ${pid} >/dev/null`);
}

export async function impactBench(ctx: BenchContext, aloneSeconds: number): Promise<ImpactRun[]> {
  const [has] = await onServer(ctx.donor, [
    "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'sbt'",
  ]);
  if (Number(has!.n) < SYSBENCH_TABLES) {
    await onServer(ctx.donor, ['DROP DATABASE IF EXISTS sbt', 'CREATE DATABASE sbt']);
    await sh(`sysbench ${sysbenchArgs(ctx.donor, '--threads=2')} prepare >/dev/null`);
  }
  const runs: ImpactRun[] = [];
  // The donor's mysqld alone on CPU 0; the joiner, reseed and sysbench's client on CPU 1.
  await pin(ctx.donor, '0');
  try {
    const alone = await underLoad(ctx.donor, () => new Promise((r) => setTimeout(r, aloneSeconds * 1000)));
    runs.push({ label: 'donor alone', cloneMs: undefined, p99s: alone });
    for (const [label, extra] of [
      ['clone, throttle off (--no-throttle)', ['--no-throttle']],
      ['clone, throttle on (default)', []],
    ] as const) {
      const name = 'bench-impact-joiner';
      await sandboxRemove(name).catch(() => undefined);
      const joiner = await sandboxUp(name, { bufferPool: '2G' });
      try {
        await pin(joiner, '1');
        let clone: CloneRun | undefined;
        const p99s = await underLoad(ctx.donor, async () => {
          clone = await cloneWithSummary(
            ctx,
            joiner,
            ['--schemas', 'bench', '--no-replicate', ...extra],
            '1',
          );
        });
        runs.push({
          label,
          cloneMs: clone!.wallMs,
          p99s,
          throttle: clone!.summary.throttle as Record<string, unknown>,
        });
        console.error(`  ${label}: clone ${secs(clone!.wallMs)} s, p99 median ${median(p99s)} ms`);
      } finally {
        await sandboxRemove(name).catch(() => undefined);
      }
    }
  } finally {
    await pin(ctx.donor, '0-1').catch(() => undefined);
  }
  return runs;
}

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? NaN;
}

export function renderImpact(runs: ImpactRun[]): string {
  const alone = median(runs[0]!.p99s);
  const off = runs[1]!;
  const on = runs[2]!;
  const lines = [
    '## The donor during a clone',
    '',
    `sysbench oltp_read_write at a fixed 40 tx/s (4 threads, ${SYSBENCH_TABLES} tables of ${SYSBENCH_ROWS} rows) on the donor,`,
    "the donor's mysqld pinned alone to CPU 0 (`taskset`), the joiner, reseed and sysbench's client on CPU 1",
    '(sysbench at nice -10 so that the joiner does not delay it). Latency: the median, over the window, of',
    "sysbench's per-second 99th percentile; p90 of those per-second values shows the spikes.",
    '',
    '| run | clone time | p99 (median of per-second) | x alone | p90 of per-second p99 | throttle |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const r of runs) {
    const m = median(r.p99s);
    const t = r.throttle as { slowedMs?: number; reasons?: Record<string, number> } | undefined;
    const th =
      t && t.reasons && Object.keys(t.reasons).length
        ? `slowed ${secs(t.slowedMs ?? 0)} s (${Object.entries(t.reasons)
            .map(([k, n]) => `${k} x${n}`)
            .join(', ')})`
        : t
          ? 'never slowed'
          : '-';
    lines.push(
      `| ${r.label} | ${r.cloneMs === undefined ? '-' : `${secs(r.cloneMs)} s`} | ${m.toFixed(1)} ms | ${(m / alone).toFixed(2)} | ${percentile(r.p99s, 0.9).toFixed(1)} ms | ${th} |`,
    );
  }
  const pOn = median(on.p99s) / alone;
  const tOn = on.cloneMs! / off.cloneMs!;
  const met = (ok: boolean) => (ok ? 'met' : '**not met**');
  lines.push(
    '',
    '| target | result | measured |',
    '| --- | --- | --- |',
    `| p99 during the clone <= 1.25x alone, throttle on | ${met(pOn <= 1.25)} | ${pOn.toFixed(2)}x (off: ${(median(off.p99s) / alone).toFixed(2)}x) |`,
    `| clone time <= 1.5x the unthrottled one | ${met(tOn <= 1.5)} | ${tOn.toFixed(2)}x |`,
    '',
  );
  return lines.join('\n');
}

/** Replaces (or appends) the block between `<!-- bench:NAME -->` markers in `report`. */
export function withSection(report: string, name: string, body: string): string {
  const open = `<!-- bench:${name} -->`;
  const close = `<!-- /bench:${name} -->`;
  const block = `${open}\n${body}\n${close}`;
  const i = report.indexOf(open);
  const j = report.indexOf(close);
  if (i >= 0 && j > i) return report.slice(0, i) + block + report.slice(j + close.length);
  return `${report.trimEnd()}\n\n${block}\n`;
}
