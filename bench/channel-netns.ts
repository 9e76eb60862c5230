// The data channel across two hosts (issue 9): the bench donor's stopped datadir from an agent in
// one network namespace to an agent in another, over a veth pair limited to 200 Mbit/s each way
// with 50 ms of round trip added; each codec, then a 5 s cut of the link in the middle.
// Needs root (ip netns, tc). This kernel has no netem: tc tbf makes the limit, a delaying TCP
// relay in the receiving namespace makes the latency, `ip link set DEV down` makes the cut.
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { getSandbox, sandboxDown, sandboxUp } from '../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../src/sandbox/sandbox.js';
import { inNs, makeHosts, removeHosts } from '../test/helpers/netns.js';
import type { Hosts } from '../test/helpers/netns.js';
import { sh } from './methods.js';
import { median } from './report.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const RATE = '200mbit';
const BURST = '256kb';
const ONE_WAY_MS = 25;
const CUT_MS = 5000;
const AGENT_PORT = 7420;
const RELAY_PORT = 7421;
const CODECS = ['none', 'lz4', 'zstd', 'auto'] as const;
/** 60s, the default, watches a stream for 10 s of silence; 12s for 4 s, shorter than the cut. */
const RESUME_TIMEOUTS = ['60s', '12s'] as const;

export interface NetnsCodecRow {
  codec: string;
  /** the codec `auto` chose; the one asked for otherwise */
  chosen: string;
  /** median seconds */
  seconds: number;
  runs: number[];
  wireBytes: number;
}

export interface NetnsCutRow {
  resumeTimeout: string;
  /** medians: the whole transfer, when the cut began, link up to the first bytes after it */
  seconds: number;
  runs: number[];
  cutAt: number;
  backAfter: number;
  resumes: number;
}

export interface NetnsResult {
  bytes: number;
  files: number;
  parallel: number;
  runs: number;
  /** median request round trips on an open TLS connection, ms: through the relay, and without it */
  rtt: { relayed: number; direct: number };
  cacheDropped: boolean;
  /** the machine's 1-minute load average before and after: anything else running shows here */
  load: [number, number];
  codecs: NetnsCodecRow[];
  cuts: NetnsCutRow[];
}

/**
 * Runs `argv` in namespace `ns` and resolves once its output says `ready` (killed, and rejected,
 * if it has not within 30 s). Its output is drained for as long as it runs: a child whose pipe
 * fills blocks.
 */
function startIn(ns: string, argv: string[], ready: string): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-4000));
  return new Promise((resolve, reject) => {
    const late = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      keep(d);
      if (!out.includes(ready)) return;
      clearTimeout(late);
      resolve(child);
    });
    child.stderr.on('data', keep);
    child.on('exit', (code) => {
      clearTimeout(late);
      reject(new Error(`${argv.slice(1, 4).join(' ')} exited ${code}: ${out}`));
    });
  });
}

/** SIGTERM to a process this bench started, by its PID; SIGKILL if it is still there 10 s later. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The two hosts: certificates from `reseed agent init`, alpha serving `src`, beta receiving. */
interface Setup {
  hosts: Hosts;
  work: string;
  src: string;
  children: ChildProcess[];
}

async function startHosts(s: Setup): Promise<void> {
  const { hosts: h, work } = s;
  const pki = join(work, 'pki');
  const hostList = `alpha=${h.addr.a},beta=${h.addr.b}`;
  execFileSync(process.execPath, [
    join(root, 'bin', 'reseed'),
    'agent',
    'init',
    '--hosts',
    hostList,
    '--out',
    pki,
  ]);
  const finish = (host: string, o: Record<string, unknown>) => {
    const file = join(pki, host, 'config.json');
    const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    // Hosts without a mysqld, as in test/agent/netns.test.ts.
    delete c.mysql;
    delete c.service;
    delete c.datadir;
    writeFileSync(file, JSON.stringify({ ...c, stateDir: 'state', ...o }));
    return file;
  };
  const alpha = finish('alpha', {
    serve: [s.src],
    receive: [],
    listen: { host: h.addr.a, port: AGENT_PORT },
  });
  // Beta reaches alpha through the relay; alpha's certificate names 127.0.0.1 too.
  const beta = finish('beta', {
    serve: [],
    receive: [join(work, 'dst')],
    listen: { host: h.addr.b, port: AGENT_PORT },
    peers: {
      alpha: { url: `https://127.0.0.1:${RELAY_PORT}`, tokenFile: 'peers/alpha.token' },
    },
  });
  const agent = (file: string) => [process.execPath, join(root, 'bin', 'reseed'), 'agent', '--config', file];
  s.children.push(await startIn(h.ns.a, agent(alpha), 'listening on'));
  s.children.push(await startIn(h.ns.b, agent(beta), 'listening on'));
  const relay = {
    listen: { host: '127.0.0.1', port: RELAY_PORT },
    target: { host: h.addr.a, port: AGENT_PORT },
    oneWayMs: ONE_WAY_MS,
  };
  const code = `import { serveDelayRelay } from ${JSON.stringify(new URL('./delay-relay.ts', import.meta.url).href)};
await serveDelayRelay(${JSON.stringify(relay)});`;
  s.children.push(
    await startIn(
      h.ns.b,
      [process.execPath, '--import', 'tsx', '--input-type=module', '-e', code],
      'relaying',
    ),
  );
}

/** Median time of a request on an open TLS connection from beta's host to alpha's agent, ms. */
function requestRtt(s: Setup, url: string): number {
  const pki = join(s.work, 'pki');
  const token = readFileSync(join(pki, 'alpha', 'token'), 'utf8').trim();
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const out = inNs(
      s.hosts.ns.b,
      ...['curl', '-sS', '-o', '/dev/null', '-H', `authorization: Bearer ${token}`],
      ...['--cacert', join(pki, 'ca', 'ca.pem'), '--cert', join(pki, 'cli', 'cert.pem')],
      ...['--key', join(pki, 'cli', 'key.pem'), '-w', '%{time_appconnect} %{time_starttransfer}'],
      `${url}/v1/health`,
    ).toString();
    // From the TLS handshake's end to the response's first byte: one request, one response.
    const [tls, first] = out.trim().split(' ').map(Number) as [number, number];
    times.push((first - tls) * 1000);
  }
  return median(times);
}

interface TransferResult {
  bytes: number;
  wireBytes: number;
  codec: string;
  resumes: number;
}

interface Transfer {
  /** the plan's bytes, then each progress event: when the agent emitted it, and bytes so far */
  total: number;
  progress: { at: number; bytes: number }[];
  started: number;
  done: Promise<{ seconds: number; result: TransferResult }>;
}

/** `reseed transfer --json` run on beta's host, as a DBA there would; followed as it goes. */
function startTransfer(s: Setup, dest: string, flags: string[]): Transfer {
  const argv = [
    ...['netns', 'exec', s.hosts.ns.b, process.execPath, join(root, 'bin', 'reseed'), 'transfer'],
    ...['--from', `agent://alpha${s.src}`, '--to', `agent://beta${join(s.work, 'dst', dest)}`, '--json'],
    ...flags,
  ];
  const child = spawn('ip', argv, {
    env: { ...process.env, RESEED_AGENTS: join(s.work, 'pki', 'agents.json') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  s.children.push(child);
  const t = { total: Infinity, progress: [] as Transfer['progress'], started: Date.now() };
  const began = process.hrtime.bigint();
  let partial = '';
  let last: Record<string, unknown> = {};
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines.filter((l) => l.startsWith('{'))) {
      last = JSON.parse(line) as Record<string, unknown>;
      if (last.type === 'plan') t.total = Number(last.bytes);
      if (last.type === 'progress')
        t.progress.push({ at: Date.parse(String(last.at)), bytes: Number(last.bytes) });
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const done = new Promise<{ seconds: number; result: TransferResult }>((resolve, reject) =>
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - began) / 1e9;
      s.children = s.children.filter((c) => c !== child);
      if (code === 0 && last.type === 'job') resolve({ seconds, result: last.result as TransferResult });
      else reject(new Error(`reseed transfer ${flags.join(' ')} exited ${code}: ${stderr}`));
    }),
  );
  return Object.assign(t, { done });
}

async function until(t: Transfer, ok: () => boolean): Promise<void> {
  let finished = false;
  void t.done.then(
    () => (finished = true),
    () => (finished = true),
  );
  while (!ok()) {
    if (finished) throw new Error('the transfer ended before the link was cut: a larger --size is needed');
    await sleep(50);
  }
}

/**
 * An uncompressed transfer whose link goes down for CUT_MS once a quarter of the bytes has
 * arrived (every stream busy by then). "Back" is the first progress after the link came up.
 */
async function cutRun(s: Setup, dest: string, parallel: number, resumeTimeout: string) {
  const t = startTransfer(s, dest, [
    ...['--compress', 'none', '--parallel', String(parallel), '--resume-timeout', resumeTimeout],
  ]);
  await until(t, () => (t.progress.at(-1)?.bytes ?? 0) >= t.total / 4);
  const down = Date.now();
  const link = (state: string) => inNs(s.hosts.ns.a, 'ip', 'link', 'set', s.hosts.dev.a, state);
  link('down');
  try {
    await sleep(CUT_MS);
  } finally {
    link('up');
  }
  const up = Date.now();
  const { seconds, result } = await t.done;
  const before = t.progress.filter((p) => p.at <= up).at(-1)?.bytes ?? 0;
  const back = t.progress.find((p) => p.at > up && p.bytes > before);
  if (!back) throw new Error('no progress after the cut, yet the transfer finished');
  return { seconds, result, cutAt: (down - t.started) / 1000, backAfter: (back.at - up) / 1000 };
}

interface BenchOptions {
  donor: SandboxInfo;
  runs: number;
  parallel: number;
  /** a directory this bench may make its own directory in */
  work: string;
  dropCaches: () => Promise<boolean>;
}

export async function channelNetnsBench(opts: BenchOptions): Promise<NetnsResult> {
  // The donor's datadir, stopped: files at rest, as a physical copy reads them.
  await sandboxDown(opts.donor.name);
  const src = getSandbox(opts.donor.name)!.datadir;
  const work = join(opts.work, `channel-netns-${process.pid}`);
  let s: Setup | undefined;
  try {
    const size = await sh(`du -sb --apparent-size ${src} | cut -f1; find ${src} -type f | wc -l`);
    const [bytes, files] = size.stdout.trim().split('\n').map(Number) as [number, number];
    mkdirSync(join(work, 'dst'), { recursive: true });
    s = { hosts: makeHostsOrUndo('rsb'), work, src, children: [] };
    await startHosts(s);
    const rtt = {
      relayed: requestRtt(s, `https://127.0.0.1:${RELAY_PORT}`),
      direct: requestRtt(s, `https://${s.hosts.addr.a}:${AGENT_PORT}`),
    };
    console.error(
      `  channel-netns: request round trip ${rtt.relayed.toFixed(1)} ms (${rtt.direct.toFixed(1)} direct)`,
    );
    const before = loadavg()[0]!;
    const measured = await measure(s, opts);
    const load: [number, number] = [before, loadavg()[0]!];
    return { bytes, files, parallel: opts.parallel, runs: opts.runs, rtt, load, ...measured };
  } finally {
    // The transfer (if one is still running), the relay, the agents; then their namespaces.
    for (const child of [...(s?.children ?? [])].reverse()) await stop(child);
    removeHosts(s?.hosts);
    rmSync(work, { recursive: true, force: true });
    await sandboxUp(opts.donor.name);
  }
}

/** Each codec, then each cut, round after round; every destination removed once measured. */
async function measure(
  s: Setup,
  opts: BenchOptions,
): Promise<Pick<NetnsResult, 'codecs' | 'cuts' | 'cacheDropped'>> {
  let cacheDropped = true;
  const dropCaches = async () => (cacheDropped = (await opts.dropCaches()) && cacheDropped);
  const codecs: NetnsCodecRow[] = CODECS.map((codec) => ({
    codec,
    chosen: codec,
    seconds: 0,
    runs: [],
    wireBytes: 0,
  }));
  const cuts = RESUME_TIMEOUTS.map((resumeTimeout) => ({
    resumeTimeout,
    runs: [] as number[],
    cutAt: [] as number[],
    backAfter: [] as number[],
    resumes: [] as number[],
  }));
  const parallel = String(opts.parallel);
  for (let round = 1; round <= opts.runs; round++) {
    for (const row of codecs) {
      await dropCaches();
      const dest = `${row.codec}-${round}`;
      const { seconds, result } = await startTransfer(s, dest, [
        '--compress',
        row.codec,
        '--parallel',
        parallel,
      ]).done;
      rmSync(join(s.work, 'dst', dest), { recursive: true, force: true });
      Object.assign(row, { chosen: result.codec, wireBytes: result.wireBytes });
      row.runs.push(seconds);
      console.error(`  channel-netns round ${round} --compress ${row.codec}: ${seconds.toFixed(1)} s`);
    }
    for (const row of cuts) {
      await dropCaches();
      const dest = `cut-${row.resumeTimeout}-${round}`;
      const r = await cutRun(s, dest, opts.parallel, row.resumeTimeout);
      rmSync(join(s.work, 'dst', dest), { recursive: true, force: true });
      row.runs.push(r.seconds);
      row.cutAt.push(r.cutAt);
      row.backAfter.push(r.backAfter);
      row.resumes.push(r.result.resumes);
      console.error(
        `  channel-netns round ${round} cut, --resume-timeout ${row.resumeTimeout}: ${r.seconds.toFixed(1)} s, ` +
          `bytes again ${r.backAfter.toFixed(2)} s after the link came up, ${r.result.resumes} resumes`,
      );
    }
  }
  for (const row of codecs) row.seconds = median(row.runs);
  return {
    cacheDropped,
    codecs,
    cuts: cuts.map((c) => ({
      resumeTimeout: c.resumeTimeout,
      runs: c.runs,
      seconds: median(c.runs),
      cutAt: median(c.cutAt),
      backAfter: median(c.backAfter),
      resumes: median(c.resumes),
    })),
  };
}

/**
 * makeHosts; when it fails half-way, what it made is removed (named as that helper names it: a
 * veth pair not yet moved into a namespace is left in this one).
 */
function makeHostsOrUndo(tag: string): Hosts {
  try {
    return makeHosts(tag, '250.0', RATE, BURST);
  } catch (err) {
    const id = process.pid;
    removeHosts({
      ns: { a: `${tag}-a-${id}`, b: `${tag}-b-${id}` },
      addr: { a: '', b: '' },
      dev: { a: `${tag}a${id}`, b: `${tag}b${id}` },
    });
    try {
      execFileSync('ip', ['link', 'del', `${tag}a${id}`], { stdio: 'ignore' });
    } catch {
      // not made, or gone with its namespace
    }
    throw err;
  }
}

const signed = (x: number) => `${x < 0 ? '' : '+'}${x.toFixed(1)}`;

export function renderNetns(r: NetnsResult, command: string): string {
  const none = r.codecs.find((x) => x.codec === 'none')!.seconds;
  const mb = r.bytes / 1e6;
  const lines = [
    '## Data channel across two hosts: 200 Mbit/s, 50 ms round trip',
    '',
    `The bench donor's stopped datadir (${(r.bytes / 1e9).toFixed(2)} GB, ${r.files} files) from an agent in one network namespace`,
    "to an agent in another (set up as `reseed agent init` describes: certificates for the hosts' addresses,",
    `mutual TLS), \`reseed transfer --parallel ${r.parallel}\` run on the receiving host; the page cache dropped before`,
    `each run: ${r.cacheDropped ? 'yes' : 'NO (not permitted here)'}; medians of ${r.runs}. The namespaces are joined by a veth pair, each end limited to 200 Mbit/s by`,
    `\`tc qdisc add dev DEV root tbf rate ${RATE} burst ${BURST} latency 100ms\`. This kernel has no netem: the`,
    `round trip comes from a TCP relay in the receiving namespace that holds every chunk ${ONE_WAY_MS} ms in each direction,`,
    'and the receiving agent reaches the sending one through it. Measured from the receiving host with curl, a request',
    `on an open TLS connection took ${r.rtt.relayed.toFixed(1)} ms through the path (${r.rtt.direct.toFixed(1)} ms without the relay; median of 5).`,
    'The relay ends TCP on both of its sides, so every request and response of the protocol waits the round trip, but',
    "TCP's congestion window on the limited link grows at the pace of the veth's own round trip, with nothing added. Both agents,",
    `the relay and the CLI share this machine's two cores (1-minute load average ${r.load[0].toFixed(1)} before, ${r.load[1].toFixed(1)} after).`,
    '',
    '| --compress | seconds | MB/s | wire bytes | wire Mbit/s | time against none | runs (s) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...r.codecs.map(
      (x) =>
        `| ${x.codec === 'auto' ? `auto (chose ${x.chosen})` : x.codec} | ${x.seconds.toFixed(1)} | ${(mb / x.seconds).toFixed(1)} | ` +
        `${(x.wireBytes / 1e9).toFixed(2)} GB | ${((x.wireBytes * 8) / x.seconds / 1e6).toFixed(0)} | ` +
        `${(x.seconds / none).toFixed(2)} | ${x.runs.map((s) => s.toFixed(1)).join(', ')} |`,
    ),
    '',
    `A ${CUT_MS / 1000} s cut: an uncompressed transfer, the sending end of the link taken down (\`ip link set DEV down\`)`,
    `once a quarter of the bytes had arrived, up again ${CUT_MS / 1000} s later. "Bytes again" is the time from the link coming up to`,
    "the job's first progress event after it (the agent emits one per received frame, at most every 250 ms). A stream",
    'silent for a third of --resume-timeout (at most 10 s) is taken as cut and asked again from its last checked byte;',
    'a shorter silence is left to TCP, which retransmits once the link is back.',
    '',
    '| --resume-timeout | seconds | against the uncut run | beyond the 5 s cut | cut at | bytes again | resumes | runs (s) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...r.cuts.map(
      (c) =>
        `| ${c.resumeTimeout} | ${c.seconds.toFixed(1)} | ${signed(c.seconds - none)} s | ${signed(c.seconds - none - CUT_MS / 1000)} s | ${c.cutAt.toFixed(1)} s | ` +
        `${c.backAfter.toFixed(2)} s | ${c.resumes} | ${c.runs.map((s) => s.toFixed(1)).join(', ')} |`,
    ),
    '',
    `Run (as root: it makes network namespaces, a veth pair and tc qdiscs, and removes them): \`${command}\`.`,
  ];
  return lines.join('\n');
}
