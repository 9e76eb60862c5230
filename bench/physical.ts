// The mariabackup method (issue 10) against the hand-made pipeline it replaces: until a running,
// caught-up replica. Hand: `mariadb-backup --backup --stream | mbstream -x`, `--prepare`, stop
// the joiner, swap its datadir, start it, CHANGE MASTER, wait. reseed: the same through two
// agents, with TLS, checksummed frames, the journal, preflight and the swap (verification off,
// as the hand pipeline has none; its time is measured separately). Ratios in one run, page cache
// dropped before each run, rounds interleaved.
import { renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient } from '../src/agent/client.js';
import type { JobRecord } from '../src/agent/jobs.js';
import { resolveAgent } from '../src/agent/registry.js';
import { forgetSandboxAgent, sandboxAgentDown, sandboxAgentUp } from '../src/agent/sandbox-agent.js';
import { connect } from '../src/mysql/server.js';
import {
  freePort,
  getSandbox,
  sandboxDown,
  sandboxEndpoint,
  sandboxRemove,
  sandboxUp,
} from '../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../src/sandbox/sandbox.js';
import { sh } from './methods.js';

export interface PhysicalRow {
  label: string;
  runs: number[];
  seconds: number;
  /** reseed only: the donor's commits blocked (ms), phases */
  blockedMs?: number[];
  phases?: Record<string, number>;
}

export interface PhysicalResult {
  bytes: number;
  rows: PhysicalRow[];
  verifySeconds: number | undefined;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const JOINER = 'bench-physical-joiner';

async function freshJoiner(): Promise<SandboxInfo> {
  const old = getSandbox(JOINER);
  if (old) {
    await sandboxAgentDown(old);
    await sandboxRemove(JOINER);
  }
  return sandboxUp(JOINER, { bufferPool: '1G' });
}

async function query(s: SandboxInfo, sql: string[]): Promise<Record<string, unknown>[]> {
  const c = await connect(sandboxEndpoint(s));
  try {
    let last: Record<string, unknown>[] = [];
    for (const q of sql) last = await c.query(q);
    return last;
  } finally {
    await c.close();
  }
}

/** socat's TLS needs files: the donor agent's certificate serves both ends (one CA signed it). */
function socatTls(donor: SandboxInfo) {
  const a = join(donor.dir, 'agent');
  const ca = join(donor.dir, '..', 'agent-ca', 'ca.pem');
  const files = `cert=${join(a, 'cert.pem')},key=${join(a, 'key.pem')},cafile=${ca},verify=1`;
  return { server: files, client: `${files},commonname=127.0.0.1` };
}

/**
 * What a DBA types: stream, extract, prepare, swap, start, point replication, wait. With `tls`,
 * the stream crosses `socat openssl` (as it would between hosts) instead of a local pipe.
 */
async function handPipeline(
  donor: SandboxInfo,
  joiner: SandboxInfo,
  parallel: number,
  tls = false,
): Promise<void> {
  const staging = join(joiner.dir, 'staging');
  const tmp = join(joiner.dir, 'bk-tmp');
  await sh(`rm -rf ${staging} ${tmp} && mkdir -p ${staging} ${tmp}`);
  const backup = `mariadb-backup --backup --stream=xbstream --host=127.0.0.1 --port=${donor.port} --user=root --target-dir=${tmp} --parallel=${parallel} 2>/dev/null`;
  if (tls) {
    const t = socatTls(donor);
    const port = await freePort();
    const receiver = sh(
      `socat -u OPENSSL-LISTEN:${port},reuseaddr,${t.server} STDOUT | mbstream -x -C ${staging} -p ${parallel}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    await sh(`${backup} | socat -u STDIN OPENSSL:127.0.0.1:${port},${t.client}`);
    await receiver;
  } else await sh(`${backup} | mbstream -x -C ${staging} -p ${parallel}`);
  await sh(`mariadb-backup --prepare --target-dir=${staging} --use-memory=1G 2>/dev/null`);
  const copied = Number((await sh(`du -sb ${staging} | cut -f1`)).stdout.trim());
  console.error(`    by hand: ${(copied / 1e9).toFixed(2)} GB extracted and prepared`);
  const gtid = (await sh(`cut -f3 ${staging}/xtrabackup_binlog_info`)).stdout.trim();
  await sandboxDown(joiner.name);
  renameSync(join(joiner.dir, 'data'), join(joiner.dir, 'data.old'));
  renameSync(staging, join(joiner.dir, 'data'));
  await sandboxUp(joiner.name);
  await query(joiner, [
    'STOP ALL SLAVES',
    'RESET SLAVE ALL',
    'RESET MASTER',
    `SET GLOBAL gtid_slave_pos = '${gtid}'`,
    `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${donor.port}, MASTER_USER='repl', MASTER_PASSWORD='bench-repl', MASTER_USE_GTID=slave_pos`,
    'START SLAVE',
  ]);
  const [pos] = await query(donor, ['SELECT @@gtid_binlog_pos AS g']);
  const [r] = await query(joiner, [`SELECT MASTER_GTID_WAIT('${String(pos?.g)}', 600) AS r`]);
  if (Number(r?.r) !== 0) throw new Error('the hand-made replica did not catch up');
  rmSync(join(joiner.dir, 'data.old'), { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
}

async function reseedRun(
  donor: SandboxInfo,
  joiner: SandboxInfo,
  parallel: number,
  verify: boolean,
): Promise<JobRecord> {
  const client = new AgentClient(resolveAgent(joiner.name));
  try {
    const job = await client.call<JobRecord>('POST', '/v1/jobs', {
      kind: 'clone',
      from: donor.name,
      method: 'mariabackup',
      parallel,
      replicationUser: 'repl',
      replicationPassword: 'bench-repl',
      verify,
    });
    for await (const e of client.events(job.id)) void e;
    const done = await client.call<JobRecord>('GET', `/v1/jobs/${job.id}`);
    if (done.state !== 'done')
      throw new Error(`clone ${done.state}: ${done.error?.message} ${done.error?.hints.join('; ')}`);
    return done;
  } finally {
    await client.close();
    await sandboxAgentDown(getSandbox(joiner.name)!);
  }
}

export async function physicalBench(opts: {
  donor: SandboxInfo;
  runs: number;
  parallel: number;
  dropCaches: () => Promise<boolean>;
}): Promise<PhysicalResult> {
  const donor = getSandbox(opts.donor.name)!;
  if (!donor.running) await sandboxUp(donor.name);
  await query(donor, [
    "CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'bench-repl'",
    "ALTER USER 'repl'@'127.0.0.1' IDENTIFIED BY 'bench-repl'",
    "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'",
  ]);
  await sandboxAgentUp(donor);
  const bytes = Number(
    (await sh(`du -sb --apparent-size ${join(donor.dir, 'data')} | cut -f1`)).stdout.trim(),
  );
  const rows: PhysicalRow[] = [
    {
      label: 'mariadb-backup --stream | mbstream -x, prepare, swap, start, CHANGE MASTER (by hand)',
      runs: [],
      seconds: 0,
    },
    {
      label: 'reseed clone --method mariabackup (agents, TLS, checksums, journal, swap)',
      runs: [],
      seconds: 0,
      blockedMs: [],
    },
    { label: 'the same by hand, the stream through socat openssl (TLS)', runs: [], seconds: 0 },
  ];
  let verifySeconds: number | undefined;
  try {
    for (let round = 0; round < opts.runs; round++) {
      const order = [0, 1, 2].map((_, k) => (k + round) % 3);
      for (const i of order) {
        const joiner = await freshJoiner();
        // The agent is a standing daemon on the joiner's host: started before the clock.
        if (i === 1) await sandboxAgentUp(joiner);
        await opts.dropCaches();
        const t = Date.now();
        if (i !== 1) await handPipeline(donor, joiner, opts.parallel, i === 2);
        else {
          const job = await reseedRun(donor, joiner, opts.parallel, false);
          rows[1]!.blockedMs!.push(Number(job.result?.donorCommitBlockedMs ?? 0));
          rows[1]!.phases = job.result?.phases as Record<string, number>;
        }
        const s = (Date.now() - t) / 1000;
        rows[i]!.runs.push(s);
        console.error(`  physical round ${round + 1} ${rows[i]!.label}: ${s.toFixed(1)} s`);
      }
    }
    // Once more with verification, for its cost.
    const joiner = await freshJoiner();
    await sandboxAgentUp(joiner);
    await opts.dropCaches();
    const job = await reseedRun(donor, joiner, opts.parallel, true);
    verifySeconds = Number((job.result?.phases as Record<string, number>).verify ?? 0) / 1000;
  } finally {
    const j = getSandbox(JOINER);
    if (j) {
      await sandboxAgentDown(j);
      await sandboxRemove(JOINER);
      forgetSandboxAgent(JOINER);
    }
    await sandboxAgentDown(getSandbox(donor.name)!);
  }
  for (const r of rows) r.seconds = median(r.runs);
  return { bytes, rows, verifySeconds };
}

export function renderPhysical(r: PhysicalResult, command: string): string {
  const [hand, ours, handTls] = r.rows as [PhysicalRow, PhysicalRow, PhysicalRow];
  const phases = Object.entries(ours.phases ?? {})
    .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`)
    .join(', ');
  return [
    '## Physical clone: --method mariabackup against the hand-made pipeline',
    '',
    `The bench donor (${(r.bytes / 1e9).toFixed(2)} GB datadir, running) to a fresh sandbox joiner (1 GiB buffer pool) on this`,
    'machine, until a running, caught-up replica; page cache dropped before each run, rounds interleaved, medians.',
    'Verification is off in both (the hand pipeline has none); its cost is measured once apart.',
    '',
    '| method | seconds (median) | runs | against the hand pipeline |',
    '| --- | ---: | --- | ---: |',
    ...[hand, handTls, ours].map(
      (x) =>
        `| ${x.label.replace(/\|/g, '\\|')} | ${x.seconds.toFixed(1)} | ${x.runs.map((s) => s.toFixed(1)).join(', ')} | ${(x.seconds / hand.seconds).toFixed(2)}x |`,
    ),
    '',
    `reseed's last run by phase: ${phases}. The donor's commits were blocked (BACKUP STAGE BLOCK_COMMIT to END) for ${ours.blockedMs!.map((m) => `${m} ms`).join(', ')}.`,
    r.verifySeconds !== undefined
      ? `With verification (every table checksummed on both sides at one position) the clone takes ${r.verifySeconds.toFixed(1)} s more.`
      : '',
    '',
    `Goal (issue 10): reseed <= 1.1x the hand pipeline. Run: \`${command}\`.`,
  ].join('\n');
}
