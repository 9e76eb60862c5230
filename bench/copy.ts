// The copy method and delta mode (issue 10). Copy: reseed's two passes against a raw `cp -a` of
// the same (stopped) datadir, and how long the donor's mysqld was down, against doing it by hand
// (stop, cp, start). Delta: a tree (the bench donor's stopped datadir) in which 5% of the 64 KiB
// blocks were then changed, sent whole and with --base holding the older copy, unthrottled and
// at 50 MB/s (--max-rate: a slow link). Ratios in one run, page cache dropped before each run.
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { AgentClient } from '../src/agent/client.js';
import type { JobRecord } from '../src/agent/jobs.js';
import { resolveAgent } from '../src/agent/registry.js';
import { forgetSandboxAgent, sandboxAgentDown, sandboxAgentUp } from '../src/agent/sandbox-agent.js';
import { connect } from '../src/mysql/server.js';
import {
  getSandbox,
  sandboxDown,
  sandboxEndpoint,
  sandboxRemove,
  sandboxUp,
} from '../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../src/sandbox/sandbox.js';
import { sh } from './methods.js';

export interface CopyResult {
  bytes: number;
  cpSeconds: number[];
  /** stop, cp -a, start: the donor is down the whole time */
  handDownSeconds: number[];
  reseed: {
    seconds: number;
    copySeconds: number;
    downSeconds: number;
    firstPass: number;
    reused: number;
    /** files the second pass did not read: unchanged since the first */
    unchangedFiles: number;
  }[];
  delta: {
    changedBytes: number;
    rows: { label: string; seconds: number; sent: number; reused: number }[];
  };
}

const JOINER = 'bench-copy-joiner';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

async function freshJoiner(): Promise<SandboxInfo> {
  const old = getSandbox(JOINER);
  if (old) {
    await sandboxAgentDown(old);
    await sandboxRemove(JOINER);
    forgetSandboxAgent(JOINER);
  }
  const j = await sandboxUp(JOINER, { bufferPool: '1G' });
  await sandboxAgentUp(j);
  return j;
}

async function job(client: AgentClient, request: Record<string, unknown>): Promise<JobRecord> {
  const j = await client.call<JobRecord>('POST', '/v1/jobs', request);
  for await (const e of client.events(j.id)) void e;
  const done = await client.call<JobRecord>('GET', `/v1/jobs/${j.id}`);
  if (done.state !== 'done')
    throw new Error(`${j.kind} ${done.state}: ${done.error?.message} ${done.error?.hints.join('; ')}`);
  return done;
}

/** 5% of the tree's 64 KiB blocks, chosen at random over all its bytes, overwritten with random bytes. */
async function changeBlocks(dir: string): Promise<number> {
  const list = (await sh(`find ${dir} -type f -size +0 -printf '%s %p\\n'`)).stdout.trim().split('\n');
  const files = list.map((l) => {
    const i = l.indexOf(' ');
    return { size: Number(l.slice(0, i)), path: l.slice(i + 1) };
  });
  let changed = 0;
  for (const f of files) {
    const blocks = Math.floor(f.size / 65536);
    const n = Math.round(blocks * 0.05);
    if (!n) continue;
    const fd = openSync(f.path, 'r+');
    try {
      for (let k = 0; k < n; k++) {
        const at = Math.floor(Math.random() * blocks) * 65536;
        writeSync(fd, randomBytes(65536), 0, 65536, at);
        changed += 65536;
      }
    } finally {
      closeSync(fd);
    }
  }
  return changed;
}

export async function copyBench(opts: {
  donor: SandboxInfo;
  runs: number;
  parallel: number;
  dropCaches: () => Promise<boolean>;
}): Promise<CopyResult> {
  let donor = getSandbox(opts.donor.name)!;
  if (!donor.running) donor = await sandboxUp(donor.name);
  const c = await connect(sandboxEndpoint(donor));
  // The dataset's donor made 'repl' with another password (physical.ts sets the same).
  await c.query("CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'bench-repl'");
  await c.query("ALTER USER 'repl'@'127.0.0.1' IDENTIFIED BY 'bench-repl'");
  await c.query("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'");
  await c.close();
  await sandboxAgentUp(donor);
  const datadir = join(donor.dir, 'data');
  const bytes = Number((await sh(`du -sb --apparent-size ${datadir} | cut -f1`)).stdout.trim());
  const result: CopyResult = {
    bytes,
    cpSeconds: [],
    handDownSeconds: [],
    reseed: [],
    delta: { changedBytes: 0, rows: [] },
  };
  const scratch = join(donor.dir, 'bench-copy');
  try {
    for (let round = 0; round < opts.runs; round++) {
      // By hand: the donor stopped, its datadir copied beside the joiner's, started again.
      let joiner = await freshJoiner();
      await opts.dropCaches();
      const dest = join(joiner.dir, 'data.copy');
      let cp = 0;
      const down = await timed(async () => {
        await sandboxDown(donor.name);
        cp = await timed(() => sh(`cp -a ${datadir} ${dest}`));
        donor = await sandboxUp(donor.name);
      });
      result.cpSeconds.push(cp);
      result.handDownSeconds.push(down);
      rmSync(dest, { recursive: true, force: true });
      console.error(
        `  copy round ${round + 1}: cp -a ${cp.toFixed(1)} s, donor down ${down.toFixed(1)} s by hand`,
      );
      // reseed: until a running, caught-up replica (verification off, as by hand).
      joiner = await freshJoiner();
      await opts.dropCaches();
      const client = new AgentClient(resolveAgent(joiner.name));
      try {
        let done: JobRecord | undefined;
        const s = await timed(
          async () =>
            (done = await job(client, {
              kind: 'clone',
              from: donor.name,
              method: 'copy',
              parallel: opts.parallel,
              force: true,
              replicationUser: 'repl',
              replicationPassword: 'bench-repl',
              verify: false,
            })),
        );
        const r = done!.result as Record<string, unknown>;
        const phases = r.phases as Record<string, number>;
        result.reseed.push({
          seconds: s,
          copySeconds: phases.copy! / 1000,
          downSeconds: Number(r.donorDownMs) / 1000,
          firstPass: Number(r.firstPassBytes),
          reused: Number(r.reusedBytes),
          unchangedFiles: Number(r.unchangedFiles ?? 0),
        });
        console.error(
          `  copy round ${round + 1}: reseed --method copy ${s.toFixed(1)} s (copy ${(phases.copy! / 1000).toFixed(1)} s, donor down ${(Number(r.donorDownMs) / 1000).toFixed(1)} s)`,
        );
      } finally {
        await client.close();
      }
    }

    // Delta: the stopped datadir as a tree, an older copy of it as the base, 5% of blocks changed.
    const joiner = await freshJoiner();
    const base = join(joiner.dir, 'base');
    await sandboxDown(donor.name);
    await sh(`rm -rf ${scratch} && cp -a ${datadir} ${scratch} && cp -a ${scratch} ${base}`);
    donor = await sandboxUp(donor.name);
    await sandboxAgentUp(donor);
    result.delta.changedBytes = await changeBlocks(scratch);
    const client = new AgentClient(resolveAgent(joiner.name));
    try {
      const cases: { label: string; extra: Record<string, unknown> }[] = [
        { label: 'full send', extra: {} },
        { label: '--base (delta)', extra: { base } },
        { label: 'full send at 50 MB/s (--max-rate 50M)', extra: { maxRate: 50e6 } },
        { label: '--base (delta) at 50 MB/s', extra: { base, maxRate: 50e6 } },
      ];
      for (const k of cases) {
        const dest = join(joiner.dir, 'received');
        rmSync(dest, { recursive: true, force: true });
        await opts.dropCaches();
        let done: JobRecord | undefined;
        const s = await timed(
          async () =>
            (done = await job(client, {
              kind: 'transfer',
              from: donor.name,
              path: scratch,
              dest,
              parallel: opts.parallel,
              ...k.extra,
            })),
        );
        const r = done!.result as Record<string, number>;
        result.delta.rows.push({ label: k.label, seconds: s, sent: r.bytes!, reused: r.reusedBytes ?? 0 });
        console.error(`  delta ${k.label}: ${s.toFixed(1)} s, ${r.bytes} bytes sent`);
        rmSync(dest, { recursive: true, force: true });
      }
    } finally {
      await client.close();
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    const j = getSandbox(JOINER);
    if (j) {
      await sandboxAgentDown(j);
      await sandboxRemove(JOINER);
      forgetSandboxAgent(JOINER);
    }
    await sandboxAgentDown(getSandbox(donor.name)!);
    if (!getSandbox(donor.name)!.running) await sandboxUp(donor.name);
  }
  return result;
}

export function renderCopy(r: CopyResult, command: string): string {
  const gb = r.bytes / 1e9;
  const cp = median(r.cpSeconds);
  const ours = median(r.reseed.map((x) => x.copySeconds));
  const total = median(r.reseed.map((x) => x.seconds));
  const down = median(r.reseed.map((x) => x.downSeconds));
  const handDown = median(r.handDownSeconds);
  const full = r.delta.rows[0];
  const fullSlow = r.delta.rows[2];
  return [
    '## Copy method and delta mode',
    '',
    `The bench donor's datadir (${gb.toFixed(2)} GB) to a fresh sandbox joiner on this machine, page cache dropped`,
    'before each run, medians of the rounds.',
    '',
    '| | seconds (median) | runs | throughput |',
    '| --- | ---: | --- | ---: |',
    `| \`cp -a\` of the stopped datadir | ${cp.toFixed(1)} | ${r.cpSeconds.map((s) => s.toFixed(1)).join(', ')} | ${(gb / cp).toFixed(2)} GB/s |`,
    `| reseed --method copy: both passes, until the donor runs again | ${ours.toFixed(1)} | ${r.reseed.map((x) => x.copySeconds.toFixed(1)).join(', ')} | ${(gb / ours).toFixed(2)} GB/s (${(cp / ours).toFixed(2)}x cp) |`,
    `| reseed --method copy until a running, caught-up replica (no verify) | ${total.toFixed(1)} | ${r.reseed.map((x) => x.seconds.toFixed(1)).join(', ')} | |`,
    '',
    `The donor's mysqld was down ${down.toFixed(1)} s with reseed (runs: ${r.reseed.map((x) => x.downSeconds.toFixed(1)).join(', ')}) against ${handDown.toFixed(1)} s`,
    `stopping it for \`cp -a\` by hand (${(handDown / Math.max(0.001, down)).toFixed(1)}x longer). The second pass sent what changed since the first`,
    `(the quiet bench donor: its redo log and system files) and reused ${r.reseed.map((x) => `${(x.reused / 1e9).toFixed(2)} GB`).join(', ')};`,
    `of that, ${r.reseed.map((x) => `${x.unchangedFiles}`).join(', ')} files unchanged since the first pass were not read again on either side`,
    '(docs/agents.md: same inode, size, mtime and ctime, and settled before the first pass listed them).',
    `Each round's ratio: ${r.reseed.map((x, i) => `${(r.cpSeconds[i]! / x.copySeconds).toFixed(2)}x`).join(', ')} (\`cp -a\` and reseed alternate on the same machine; the spread between rounds is large).`,
    '',
    `Delta mode: ${(r.delta.changedBytes / 1e6).toFixed(0)} MB (5% of the 64 KiB blocks) of the same tree changed after an older copy`,
    'was put on the receiving host; sent whole, and with `reseed transfer --base` holding that copy:',
    '',
    '| | seconds | bytes sent | not sent (equal in the base) | against the full send |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...r.delta.rows.map((x, i) => {
      const ref = i < 2 ? full! : fullSlow!;
      return `| ${x.label} | ${x.seconds.toFixed(1)} | ${(x.sent / 1e6).toFixed(0)} MB | ${(x.reused / 1e6).toFixed(0)} MB | ${(x.seconds / ref.seconds).toFixed(2)}x time |`;
    }),
    '',
    'Both sides read every block of a file the base also holds (the digests), so on loopback delta mode saves',
    'bytes on the wire, not time; on a link slower than the disks it saves both.',
    '',
    `Goal (issue 10): the copy method >= 90% of raw \`cp\` throughput; delta mode's bytes and time when 5% of the blocks changed. Run: \`${command}\`.`,
  ].join('\n');
}
