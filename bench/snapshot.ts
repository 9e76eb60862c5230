// The snapshot method (issue 11), on each filesystem: the donor's read-lock time over N snapshot
// clones under a write load (p50, p99, max); send/receive throughput, reseed's copy phase against
// `btrfs send | btrfs receive` / `zfs send | zfs recv` by hand of the same snapshot on the same
// filesystems; and `reseed refresh` after 5% of the rows changed: bytes sent and time against a
// full snapshot clone. Both sandboxes on image files of their own (sandbox --fs).
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient } from '../src/agent/client.js';
import type { JobRecord } from '../src/agent/jobs.js';
import { resolveAgent } from '../src/agent/registry.js';
import { forgetSandboxAgent, sandboxAgentDown, sandboxAgentUp } from '../src/agent/sandbox-agent.js';
import { connect } from '../src/mysql/server.js';
import { freePort, getSandbox, sandboxEndpoint, sandboxRemove, sandboxUp } from '../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../src/sandbox/sandbox.js';
import { loadSampleData } from '../src/sandbox/sample-data.js';
import { sh } from './methods.js';

export interface SnapshotFsResult {
  fs: 'btrfs' | 'zfs';
  datadirBytes: number;
  lockMs: number[];
  writesDuring: number;
  clones: { seconds: number; copySeconds: number; bytes: number }[];
  hand: { seconds: number; bytes: number }[];
  /** the same by hand, the stream carried by socat openssl (TLS, the agents' certificates) */
  handTls: { seconds: number; bytes: number }[];
  refresh: { changedRows: number; seconds: number; bytes: number; fullBytes: number } | undefined;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const median = (xs: number[]) => pct(xs, 50);

async function fresh(name: string, fs: 'btrfs' | 'zfs', fsSize: string): Promise<SandboxInfo> {
  const old = getSandbox(name);
  if (old) {
    await sandboxAgentDown(old);
    await sandboxRemove(name);
    forgetSandboxAgent(name);
  }
  const s = await sandboxUp(name, { bufferPool: '512M', fs, fsSize });
  await sandboxAgentUp(s);
  return s;
}

async function job(joiner: string, request: Record<string, unknown>): Promise<JobRecord> {
  const client = new AgentClient(resolveAgent(joiner));
  try {
    const j = await client.call<JobRecord>('POST', '/v1/jobs', request);
    for await (const e of client.events(j.id)) void e;
    const done = await client.call<JobRecord>('GET', `/v1/jobs/${j.id}`);
    if (done.state !== 'done')
      throw new Error(`clone ${done.state}: ${done.error?.message} ${done.error?.hints.join('; ')}`);
    return done;
  } finally {
    await client.close();
  }
}

export async function snapshotBench(o: {
  fs: 'btrfs' | 'zfs';
  bytes: number;
  clones: number;
  dropCaches: () => Promise<boolean>;
}): Promise<SnapshotFsResult> {
  const fsSize = `${Math.ceil((o.bytes * 4) / 2 ** 30) + 2}G`;
  const donor = await fresh(`bench-snap-donor-${o.fs}`, o.fs, fsSize);
  const joiner = await fresh(`bench-snap-joiner-${o.fs}`, o.fs, fsSize);
  const s = await connect(sandboxEndpoint(donor));
  await loadSampleData(s, { bytes: o.bytes });
  await s.query("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'bench-repl'");
  await s.query("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'");
  await s.query('CREATE TABLE shop.bench_writes (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))');
  await s.close();
  const datadirBytes = Number((await sh(`du -sb --apparent-size ${donor.datadir} | cut -f1`)).stdout.trim());
  const result: SnapshotFsResult = {
    fs: o.fs,
    datadirBytes,
    lockMs: [],
    writesDuring: 0,
    clones: [],
    hand: [],
    handTls: [],
    refresh: undefined,
  };
  const request = {
    kind: 'clone',
    from: donor.name,
    method: 'snapshot',
    force: true,
    replicationUser: 'repl',
    replicationPassword: 'bench-repl',
    verify: false,
  };
  // N clones under a steady write load: the lock time is what the donor's clients feel.
  let writing = true;
  const writer = (async () => {
    const w = await connect(sandboxEndpoint(donor));
    try {
      while (writing) {
        await w.query('INSERT INTO shop.bench_writes (at) VALUES (NOW(6))');
        result.writesDuring++;
        await sleep(5);
      }
    } finally {
      await w.close();
    }
  })();
  try {
    for (let i = 0; i < o.clones; i++) {
      await o.dropCaches();
      const t = Date.now();
      const done = await job(joiner.name, request);
      const r = done.result as {
        snapshot: { lockHeldMs: number };
        phases: { copy: number };
        bytes: number;
      };
      result.lockMs.push(r.snapshot.lockHeldMs);
      result.clones.push({
        seconds: (Date.now() - t) / 1000,
        copySeconds: r.phases.copy / 1000,
        bytes: r.bytes,
      });
      console.error(
        `  snapshot ${o.fs} clone ${i + 1}: lock ${r.snapshot.lockHeldMs} ms, copy ${r.phases.copy} ms`,
      );
    }
  } finally {
    writing = false;
    await writer;
  }
  // By hand: a read-only snapshot of the same datadir sent into the joiner's filesystem, through a
  // local pipe, and through socat openssl with the agents' certificates (TLS, as between hosts).
  const ca = join(donor.dir, '..', 'agent-ca', 'ca.pem');
  const listenTls = `cert=${join(joiner.dir, 'agent', 'cert.pem')},key=${join(joiner.dir, 'agent', 'key.pem')},cafile=${ca},verify=1`;
  const connectTls = `cert=${join(donor.dir, 'agent', 'cert.pem')},key=${join(donor.dir, 'agent', 'key.pem')},cafile=${ca},commonname=127.0.0.1,verify=1`;
  const pipeline = async (send: string, receive: string, tls: boolean): Promise<number> => {
    if (!tls)
      return Number((await sh(`${send} | tee >(wc -c >&2) | ${receive}`)).stderr.trim().split('\n').at(-1));
    const port = await freePort();
    const receiver = sh(`socat -u OPENSSL-LISTEN:${port},reuseaddr,${listenTls} STDOUT | ${receive}`);
    await sleep(300);
    const out = await sh(
      `${send} | tee >(wc -c >&2) | socat -u STDIN OPENSSL:127.0.0.1:${port},${connectTls}`,
    );
    await receiver;
    return Number(out.stderr.trim().split('\n').at(-1));
  };
  for (let i = 0; i < Math.min(3, o.clones); i++)
    for (const tls of [false, true]) {
      await o.dropCaches();
      const t = Date.now();
      let bytes: number;
      if (o.fs === 'btrfs') {
        const snap = `${donor.dir}/fs/bench-hand-${i}`;
        const into = `${joiner.dir}/fs/bench-hand-recv`;
        await sh(`btrfs subvolume snapshot -r ${donor.datadir} ${snap} >/dev/null && mkdir -p ${into}`);
        bytes = await pipeline(`btrfs send -q ${snap}`, `btrfs receive -e ${into} >/dev/null`, tls);
        await sh(`btrfs subvolume delete ${into}/bench-hand-${i} ${snap} >/dev/null && rmdir ${into}`);
      } else {
        const ds = (await sh(`zfs list -H -o name ${donor.datadir}`)).stdout.trim();
        const pool = (await sh(`zfs list -H -o name ${joiner.datadir}`)).stdout.trim().split('/')[0]!;
        await sh(`zfs snapshot ${ds}@bench-hand-${i}`);
        bytes = await pipeline(`zfs send ${ds}@bench-hand-${i}`, `zfs recv -u ${pool}/bench-hand`, tls);
        await sh(`zfs destroy -r ${pool}/bench-hand && zfs destroy ${ds}@bench-hand-${i}`);
      }
      const seconds = (Date.now() - t) / 1000;
      (tls ? result.handTls : result.hand).push({ seconds, bytes });
      console.error(
        `  by hand ${o.fs}${tls ? ' through socat openssl' : ''} ${i + 1}: ${seconds.toFixed(1)} s`,
      );
    }
  // Refresh after 5% of the orders changed, the joiner's replication stopped and the donor's binary logs
  // purged (else it catches up alone).
  const c = await connect(sandboxEndpoint(donor));
  const [n] = await c.query('SELECT COUNT(*) AS n FROM shop.orders');
  const changedRows = Math.round(Number(n!.n) * 0.05);
  await c.query(`UPDATE shop.orders SET note = CONCAT('refreshed ', id) WHERE id % 20 = 0`);
  await c.close();
  const j = await connect(sandboxEndpoint(joiner));
  await j.query('STOP SLAVE');
  await j.close();
  // With the donor's binary logs still there, refresh would just start replication: purged, it sends.
  // (PURGE keeps a log InnoDB still needs for crash recovery until its checkpoint passes: retried.)
  const d = await connect(sandboxEndpoint(donor));
  await d.query('FLUSH BINARY LOGS');
  for (let tries = 0; tries < 75; tries++) {
    const logs = await d.query('SHOW BINARY LOGS');
    if (logs.length === 1) break;
    await d.query('PURGE BINARY LOGS TO ?', [String(logs.at(-1)!.Log_name)]);
    await sleep(200);
  }
  await d.close();
  await o.dropCaches();
  const t = Date.now();
  const done = await job(joiner.name, { ...request, refresh: 'auto' });
  const r = done.result as { refresh: { mode: string }; bytes: number; snapshot: { fullBytes?: number } };
  if (r.refresh.mode !== 'incremental') throw new Error(`refresh took ${r.refresh.mode}, not incremental`);
  result.refresh = {
    changedRows,
    seconds: (Date.now() - t) / 1000,
    bytes: r.bytes,
    fullBytes: r.snapshot.fullBytes ?? 0,
  };
  for (const sb of [joiner, donor]) {
    await sandboxAgentDown(getSandbox(sb.name)!);
    await sandboxRemove(sb.name);
    forgetSandboxAgent(sb.name);
  }
  return result;
}

export function renderSnapshot(results: SnapshotFsResult[], command: string): string {
  const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
  const lines = [
    '## Snapshot method (issue 11)',
    '',
    `\`${command}\`; both sandboxes on image files of their own (\`sandbox --fs\`), sample data, a write load`,
    '(one INSERT every 5 ms) on the donor during the clones; page cache dropped before each run;',
    '2 cores. Targets: read-lock time p99 <= 50 ms; send/receive >= 90% of by hand.',
    '',
    '| fs | datadir | clones | lock p50 | lock p99 | lock max | reseed copy phase (median) | by hand send \\| receive (median) | throughput ratio | by hand through socat openssl | ratio to it |',
    '| -- | ------- | ------ | -------- | -------- | -------- | -------------------------- | ------------------------------- | ---------------- | ----------------------------- | ----------- |',
  ];
  for (const r of results) {
    const copy = median(r.clones.map((c) => c.copySeconds));
    const bytes = median(r.clones.map((c) => c.bytes));
    const hand = median(r.hand.map((h) => h.seconds));
    const handBytes = median(r.hand.map((h) => h.bytes));
    const ratio = bytes / copy / (handBytes / hand);
    const tls = r.handTls.length ? median(r.handTls.map((h) => h.seconds)) : undefined;
    const tlsBytes = r.handTls.length ? median(r.handTls.map((h) => h.bytes)) : 0;
    const tlsCells = tls
      ? `${tls.toFixed(1)} s (${mb(tlsBytes)}) | ${(bytes / copy / (tlsBytes / tls)).toFixed(2)}x`
      : '- | -';
    lines.push(
      `| ${r.fs} | ${mb(r.datadirBytes)} | ${r.clones.length} | ${pct(r.lockMs, 50)} ms | ${pct(r.lockMs, 99)} ms | ${Math.max(...r.lockMs)} ms | ${copy.toFixed(1)} s (${mb(bytes)}) | ${hand.toFixed(1)} s (${mb(handBytes)}) | ${ratio.toFixed(2)}x | ${tlsCells} |`,
    );
  }
  lines.push(
    '',
    "The copy phase is reseed's whole copy: the lock and snapshot, the send through the agents' data",
    'channel (TLS, a checksum per frame), the receive, and the writable copy for mysqld; by hand is',
    'the snapshot and `send | receive` on the same host without TLS or checksums, and the same carried by',
    "`socat openssl` with the agents' certificates (mutual TLS, as between hosts; no checksums).",
    '',
    '| fs | refresh after 5% of the orders changed | sent | a full send | time | a full clone (median) |',
    '| -- | --------------------------------------- | ---- | ----------- | ---- | --------------------- |',
  );
  for (const r of results)
    if (r.refresh)
      lines.push(
        `| ${r.fs} | ${r.refresh.changedRows} rows | ${mb(r.refresh.bytes)} | ${mb(r.refresh.fullBytes)} (${((100 * r.refresh.bytes) / Math.max(1, r.refresh.fullBytes)).toFixed(1)}%) | ${r.refresh.seconds.toFixed(1)} s | ${median(r.clones.map((c) => c.seconds)).toFixed(1)} s |`,
      );
  return lines.join('\n') + '\n';
}
