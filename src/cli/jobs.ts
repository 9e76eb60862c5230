import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { AgentClient } from '../agent/client.js';
import type { JobEvent, JobRecord } from '../agent/jobs.js';
import { resolveAgent } from '../agent/registry.js';
import { ReseedError, errorMessage } from '../errors.js';
import { CODECS } from '../transport/codec.js';
import { parseRate } from '../throttle/donor-throttle.js';
import { parseDuration, parsePositiveInt, reportError } from './common.js';
import { formatBytes, formatMs } from './output.js';

/** `agent://NAME/ABSOLUTE/PATH` */
function parseAgentPath(text: string, option: string): { agent: string; path: string } {
  const m = /^agent:\/\/([^/]+)(\/.*)$/.exec(text);
  if (!m) throw new ReseedError('USAGE', `${option} takes agent://NAME/ABSOLUTE/PATH, not "${text}"`);
  return { agent: m[1]!, path: m[2]! };
}

function agentOption(cmd: Command): Command {
  return cmd.requiredOption(
    '--on <agent>',
    'the agent: agent://NAME (from agents.json; see reseed agent init)',
  );
}

export function transferCommand(): Command {
  return new Command('transfer')
    .summary("copy a directory tree from one agent's host to another's over the data channel")
    .description(
      'The receiving agent (--to) runs the job: it asks the sending agent (--from, one of its peers) ' +
        "to serve the tree, pulls it over TLS in parallel streams, checks every frame's checksum and " +
        "every segment's digest (XXH3) and the whole tree's hash, resumes after a cut, and makes the " +
        'destination itself (it must not exist); on failure or Ctrl-C the destination is removed. ' +
        "The path on the sending host must be under its `serve` directories (a running mysqld's own " +
        "datadir is refused), the destination under the receiver's `receive` directories. Agents are " +
        "named in agents.json (RESEED_AGENTS, ~/.reseed/agents.json, and the sandboxes' one): see docs/agents.md.",
    )
    .requiredOption('--from <agent-path>', 'agent://NAME/PATH: the tree to send')
    .requiredOption('--to <agent-path>', 'agent://NAME/PATH: the directory to make')
    .option('--parallel <n>', 'streams', '4')
    .addOption(
      new Option('--compress <codec>', 'compression of the frames; auto: chosen from the measured link speed')
        .choices([...CODECS, 'auto'])
        .default('none'),
    )
    .option('--max-rate <rate>', "cap on the sender's reads, bytes/s (k, M, G suffixes)")
    .option(
      '--base <dir>',
      'delta mode, for slow links: a directory on the receiving host holding an older copy of the tree (read, never written); blocks equal there are copied from it, only the others are sent',
    )
    .option(
      '--resume-timeout <duration>',
      'how long the link may be cut before the transfer fails (e.g. 60s, 5m; a bare number is seconds; at least 1s)',
      '60s',
    )
    .option('--json', "the job's events, one JSON object per line, then the job")
    .action(async (flags: TransferFlags) => {
      process.exitCode = await transfer(flags).catch((err: unknown) => reportError(err, flags.json === true));
    });
}

interface TransferFlags {
  from: string;
  to: string;
  parallel: string;
  compress: string;
  maxRate?: string;
  resumeTimeout: string;
  base?: string;
  json?: boolean;
}

async function transfer(flags: TransferFlags): Promise<number> {
  const from = parseAgentPath(flags.from, '--from');
  const to = parseAgentPath(flags.to, '--to');
  const request = {
    kind: 'transfer',
    from: from.agent,
    path: from.path,
    dest: to.path,
    parallel: parsePositiveInt('--parallel', flags.parallel, 64),
    compress: flags.compress,
    ...(flags.maxRate !== undefined ? { maxRate: rate(flags.maxRate) } : {}),
    resumeTimeoutMs: resumeTimeout(flags.resumeTimeout),
    ...(flags.base !== undefined ? { base: flags.base } : {}),
  };
  const client = new AgentClient(resolveAgent(to.agent));
  try {
    const job = await client.call<JobRecord>('POST', '/v1/jobs', request);
    if (!flags.json) process.stderr.write(`job ${job.id} on ${to.agent}\n`);
    return await follow(client, to.agent, job.id, flags.json === true, true);
  } finally {
    await client.close();
  }
}

/**
 * Follows a job's events to its end: a progress bar on a terminal (or JSON lines), then the
 * outcome. With `cancelOnInterrupt`, the first Ctrl-C cancels the job (the agent undoes it and
 * this keeps following); a second one leaves it cancelling and exits.
 */
export async function follow(
  client: AgentClient,
  agentName: string,
  id: string,
  json: boolean,
  cancelOnInterrupt: boolean,
): Promise<number> {
  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts === 1 && cancelOnInterrupt) {
      process.stderr.write('\ncancelling the job (its changes are undone); Ctrl-C again to stop waiting\n');
      void client.call('POST', `/v1/jobs/${id}/cancel`).catch(() => undefined);
    } else abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const bar =
    !json && process.stderr.isTTY
      ? new cliProgress.SingleBar(
          {
            format: '{phase} [{bar}] {percentage}% {done}/{all} {rate}/s ETA {eta_formatted}',
            etaBuffer: 50,
            stream: process.stderr,
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  const view: FollowView = { bar, key: undefined, since: Date.now(), lastLag: 0 };
  try {
    for await (const e of client.events(id, 0, abort.signal)) {
      if (json) process.stdout.write(JSON.stringify(e) + '\n');
      else showEvent(e, view);
    }
  } catch (err) {
    bar?.stop();
    const on = `--on agent://${agentName}`;
    if (!abort.signal.aborted)
      throw new ReseedError(
        'CONNECT_FAILED',
        `lost the agent while following job ${id}: ${errorMessage(err)}`,
        {
          hints: [
            'the agent stopped or restarted: a job it was running is cancelled and undone (or, after a crash, undone at its next start)',
            `once the agent is back: reseed job ${id} ${on}`,
          ],
        },
      );
    process.stderr.write(`stopped following job ${id}; it goes on on the agent (reseed job ${id} ${on})\n`);
    return 130;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const job = await client.call<JobRecord>('GET', `/v1/jobs/${id}`);
  if (json) process.stdout.write(JSON.stringify({ type: 'job', ...job }) + '\n');
  // The error goes to stderr once (exitOf), not also in the summary.
  else process.stdout.write(renderJob(job, errorReported(job)));
  return exitOf(job);
}

/** What following a job shows now: the bar of one phase (and pass), restarted when that changes. */
interface FollowView {
  bar: cliProgress.SingleBar | undefined;
  key: string | undefined;
  since: number;
  lastLag: number;
}

/**
 * One event on the terminal: a bar per phase (and per pass of the copy method) with its rate and
 * ETA, a line per phase, the plan, warnings, and the replica's lag while it catches up (at most
 * every 5 s). Without a terminal: the states, phases and the rest as lines.
 */
function showEvent(e: JobEvent, view: FollowView): void {
  const { bar } = view;
  const line = (text: string) => {
    if (view.key !== undefined) bar?.stop();
    view.key = undefined;
    process.stderr.write(text);
  };
  if (e.type === 'progress') {
    if (!bar) return;
    const bytes = Number(e.bytes ?? 0);
    const total = Math.max(bytes, Number(e.totalBytes ?? 0));
    const key = `${String(e.phase ?? 'copy')}${e.pass ? ` pass ${String(e.pass)}` : ''}`;
    const payload = () => ({
      phase: key,
      done: formatBytes(bytes),
      all: formatBytes(total),
      rate: formatBytes(bytes / Math.max(0.001, (Date.now() - view.since) / 1000)),
    });
    if (view.key !== key) {
      if (view.key !== undefined) bar.stop();
      view.key = key;
      view.since = Date.now();
      bar.start(total || 1, bytes, payload());
    } else {
      if (total) bar.setTotal(total);
      bar.update(bytes, payload());
    }
  } else if (e.type === 'state') {
    if (!bar) process.stderr.write(`${String(e.state)}\n`);
  } else if (e.type === 'plan' && Array.isArray(e.lines))
    line(
      `plan${e.dryRun ? ' (dry run: nothing changes)' : ''}:\n${(e.lines as string[]).map((l) => `  - ${l}\n`).join('')}`,
    );
  // A phase inside another (verify's catch-up to the donor's snapshot) says what it is part of.
  else if (e.type === 'phase')
    line(e.detail ? `  phase ${String(e.phase)}: ${String(e.detail)}\n` : `  phase ${String(e.phase)}\n`);
  else if (e.type === 'warning') line(`warning: ${String(e.message)}\n`);
  else if (e.type === 'note') line(`  ${String(e.message)}\n`);
  else if (e.type === 'lag' && Date.now() - view.lastLag >= 5000) {
    view.lastLag = Date.now();
    const behind = e.secondsBehind === null || e.secondsBehind === undefined ? '?' : String(e.secondsBehind);
    const tx = typeof e.transactionsBehind === 'number' ? `, ${e.transactionsBehind} transactions` : '';
    line(`  catch-up: ${behind} s behind${tx}\n`);
  }
}

/** Whether exitOf prints the job's error (to stderr): a failure, or an undo that left something. */
function errorReported(job: JobRecord): boolean {
  if (job.state === 'done') return false;
  // Cancelled or interrupted, and the undo left something different or undone: that is what the
  // exit code says (11 or 9), not the cancel.
  const left = job.error?.code === 'STATE_DIFFERS' || job.error?.code === 'JOURNAL';
  return !((job.state === 'cancelled' || job.state === 'interrupted') && !left);
}

function exitOf(job: JobRecord): number {
  if (job.state === 'done') return 0;
  if (!errorReported(job)) return 130;
  return reportError(
    new ReseedError((job.error?.code ?? 'AGENT') as never, job.error?.message ?? 'failed', {
      hints: job.error?.hints ?? [],
    }),
    false,
  );
}

export function renderJob(job: JobRecord, omitError = false): string {
  const lines = [
    `job ${job.id}: ${(job.request as { refresh?: string }).refresh ? 'refresh' : job.kind} ${job.state} (created ${job.createdAt}, last change ${job.updatedAt})`,
  ];
  const r = job.result as Record<string, number | string> | undefined;
  if (r && job.kind === 'transfer') {
    const secs = Math.max(0.001, Number(r.durationMs) / 1000);
    lines.push(
      `  copied      ${r.files} files, ${r.directories} directories, ${r.symlinks} symlinks, ${formatBytes(Number(r.bytes))} in ${formatMs(Number(r.durationMs))} (${formatBytes(Number(r.bytes) / secs)}/s)`,
      `  on the wire ${formatBytes(Number(r.wireBytes))} (${r.codec === 'none' ? 'uncompressed' : String(r.codec)})${Number(r.zeroBytes) ? `, ${formatBytes(Number(r.zeroBytes))} sent as holes` : ''}`,
      `  resumed     ${r.resumes} time(s) after a cut${Number(r.resent) ? `; ${r.resent} segment(s) sent again after a hash mismatch` : ''}`,
      ...(Number(r.reusedBytes)
        ? [
            `  delta       ${formatBytes(Number(r.reusedBytes))} equal in --base and copied from it, not sent (${((100 * Number(r.reusedBytes)) / Math.max(1, Number(r.reusedBytes) + Number(r.bytes))).toFixed(1)}% saved)`,
          ]
        : []),
      `  tree hash   ${r.treeHash} (equal on both hosts)`,
    );
  }
  if (r && job.kind === 'clone') lines.push(...renderCloneResult(job.result!));
  if (job.error && !omitError) {
    lines.push(`  error       ${job.error.code}: ${job.error.message}`);
    for (const h of job.error.hints) lines.push(`    ${h}`);
  } else if (job.error) lines.push(`  error       ${job.error.code} (said on stderr)`);
  return lines.join('\n') + '\n';
}

export function jobsCommands(): Command[] {
  const jobs = agentOption(new Command('jobs').summary("list an agent's jobs"))
    .option('--json', 'print the jobs as JSON')
    .action(async (flags: { on: string; json?: boolean }) => {
      process.exitCode = await withClient(flags.on, async (c) => {
        const { jobs: list } = await c.call<{ jobs: JobRecord[] }>('GET', '/v1/jobs');
        if (flags.json) process.stdout.write(JSON.stringify(list) + '\n');
        else
          process.stdout.write(
            list.length
              ? list
                  .map(
                    (j) =>
                      `${j.id}  ${j.kind.padEnd(9)} ${j.state.padEnd(11)} ${j.updatedAt}  ${describeRequest(j)}${j.error ? `  (${j.error.code}: ${j.error.message})` : ''}`,
                  )
                  .join('\n') + '\n'
              : 'no jobs\n',
          );
        return 0;
      });
    });
  const job = agentOption(
    new Command('job').summary('show a job; --follow its events until it ends').argument('<id>'),
  )
    .option('--follow', 'show its progress until it ends (Ctrl-C stops following, not the job)')
    .option('--json', 'JSON')
    .action(async (id: string, flags: { on: string; follow?: boolean; json?: boolean }) => {
      process.exitCode = await withClient(flags.on, async (c) => {
        if (flags.follow) return follow(c, agentNameOf(flags.on), id, flags.json === true, false);
        const j = await c.call<JobRecord>('GET', `/v1/jobs/${encodeURIComponent(id)}`);
        process.stdout.write(flags.json ? JSON.stringify(j) + '\n' : renderJob(j));
        return 0;
      });
    });
  const cancel = agentOption(
    new Command('cancel').summary('cancel a job: the agent undoes its changes').argument('<id>'),
  )
    .option('--no-wait', 'return at once instead of waiting for the undo')
    .action(async (id: string, flags: { on: string; wait: boolean }) => {
      process.exitCode = await withClient(flags.on, async (c) => {
        await c.call('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
        if (!flags.wait) {
          process.stdout.write(`cancel of job ${id} requested; the agent undoes its changes\n`);
          return 0;
        }
        const code = await follow(c, agentNameOf(flags.on), id, false, false);
        return code === 130 ? 0 : code;
      });
    });
  const bases = agentOption(
    new Command('bases').summary(
      "the snapshots a donor's agent keeps as its replicas' bases (--method snapshot, reseed refresh)",
    ),
  )
    .option('--remove <replica>', 'remove the base kept for this replica (its next refresh is a full send)')
    .option('--json', 'JSON')
    .action(async (flags: { on: string; remove?: string; json?: boolean }) => {
      process.exitCode = await withClient(flags.on, async (c) => {
        if (flags.remove !== undefined) {
          await c.call('DELETE', `/v1/snapshot-bases/${encodeURIComponent(flags.remove)}`);
          process.stdout.write(`the base kept for ${flags.remove} is removed\n`);
          return 0;
        }
        const { bases: list } = await c.call<{
          bases: { replica: string; snapshot: string; bytes?: number | null }[];
        }>('GET', '/v1/snapshot-bases');
        if (flags.json) process.stdout.write(JSON.stringify(list) + '\n');
        else
          process.stdout.write(
            list.length
              ? list
                  .map(
                    (b) =>
                      `${b.replica.padEnd(20)} ${b.snapshot}  costs ${b.bytes === null || b.bytes === undefined ? '?' : formatBytes(b.bytes)} (blocks only it holds)`,
                  )
                  .join('\n') + '\n'
              : 'no bases kept\n',
          );
        return 0;
      });
    });
  return [jobs, job, cancel, bases];
}

async function withClient(ref: string, fn: (c: AgentClient) => Promise<number>): Promise<number> {
  try {
    const c = new AgentClient(resolveAgent(ref));
    try {
      return await fn(c);
    } finally {
      await c.close();
    }
  } catch (err) {
    return reportError(err, false);
  }
}

function rate(text: string): number {
  const r = parseRate(text);
  if (r === undefined || r <= 0)
    throw new ReseedError('USAGE', `--max-rate takes bytes per second such as 50M or 1G, not "${text}"`);
  return r;
}

function agentNameOf(ref: string): string {
  return ref.replace(/^agent:\/\//, '').replace(/\/.*$/, '');
}

function describeRequest(j: JobRecord): string {
  const r = j.request as { from?: string; path?: string; dest?: string; method?: string };
  if (j.kind === 'clone')
    return `${(r as { refresh?: string }).refresh ? 'refresh' : `--method ${r.method ?? 'logical'}`} from agent://${r.from ?? '?'}`;
  return r.from ? `agent://${r.from}${r.path ?? ''} -> ${r.dest ?? ''}` : '';
}

/** A clone job's result (a logical CloneSummary or a physical one), in the CLI's words. */
function renderCloneResult(r: Record<string, unknown>): string[] {
  const n = (k: string) => Number(r[k] ?? 0);
  const out: string[] = [];
  const refresh = r.refresh as { mode: string; why: string } | undefined;
  if (refresh) out.push(`  refresh     ${refresh.mode}: ${refresh.why}`);
  if (r.dryRun) return [...out, '  dry run     nothing was changed'];
  const phases = Object.entries((r.phases ?? {}) as Record<string, number>)
    .map(([k, v]) => `${k} ${formatMs(v)}`)
    .join(', ');
  if (refresh?.mode === 'catch-up') {
    // Nothing was sent or locked: only replication ran.
    out.push(
      `  took        ${formatMs(n('durationMs'))}${phases ? ` (${phases})` : ''}; nothing sent, the donor not locked`,
    );
    return [...out, ...renderReplicationAndAfter(r)];
  }
  out.push(
    `  method      ${String(r.method)} in ${formatMs(n('durationMs'))}${phases ? ` (${phases})` : ''}`,
  );
  out.push(
    `  copied      ${formatBytes(n('bytes'))}${r.rows !== undefined ? `, ${n('rows')} rows in ${n('tables')} tables` : ''}`,
  );
  if (r.donorDownMs !== undefined)
    out.push(
      `  donor       mysqld stopped ${formatMs(n('donorDownMs'))}, commits blocked ${formatMs(n('donorCommitBlockedMs'))} (lock, clean shutdown, second pass, start)`,
      `  passes      first ${formatBytes(n('firstPassBytes'))} sent while it served${n('firstPassReusedBytes') ? ` (${formatBytes(n('firstPassReusedBytes'))} equal in the joiner's datadir, not sent: --delta)` : ''}; second ${formatBytes(n('bytes') - n('firstPassBytes'))} sent, ${formatBytes(n('reusedBytes'))} unchanged and not sent${n('unchangedFiles') ? ` (${n('unchangedFiles')} files not even read: unchanged since the first pass)` : ''}`,
    );
  else if (r.snapshot !== undefined) {
    const sn = r.snapshot as {
      fs: string;
      name: string;
      lockHeldMs: number;
      base?: string;
      fullBytes?: number;
      keptAs?: string;
      resumes?: number;
    };
    out.push(
      `  donor       commits blocked ${formatMs(sn.lockHeldMs)} while its ${sn.fs} snapshot was taken${sn.keptAs ? `; kept as ${sn.keptAs}, the base of this replica's next refresh (reseed bases)` : ''}`,
    );
    if (sn.resumes)
      out.push(
        `  resumed     ${sn.resumes} time(s) after a cut (the send run again, checked up to where it stopped)`,
      );
    if (sn.base)
      out.push(
        `  incremental ${formatBytes(n('bytes'))} sent against the base${sn.fullBytes ? `; a full send carries about ${formatBytes(sn.fullBytes)} (${((100 * n('bytes')) / Math.max(1, sn.fullBytes)).toFixed(1)}%)` : ''}`,
      );
  } else if (r.donorCommitBlockedMs !== undefined)
    out.push(
      `  donor       commits blocked ${formatMs(n('donorCommitBlockedMs'))}, DDL blocked ${formatMs(n('donorDdlBlockedMs'))} (BACKUP STAGE)`,
    );
  else if (r.lockMode !== undefined)
    out.push(`  donor lock  ${String(r.lockMode)}, held ${formatMs(n('lockHeldMs'))}`);
  return [...out, ...renderReplicationAndAfter(r)];
}

/** A clone result's coordinates, replication, verify, manifest and removed datadir lines. */
function renderReplicationAndAfter(r: Record<string, unknown>): string[] {
  const out: string[] = [];
  const c = r.coordinates as
    | { gtid?: string; file?: string; position?: number; binlog?: { file: string; position: number } }
    | undefined;
  const rep = r.replication as
    { state?: string; from?: string; catchUpMs?: number; startedAt?: string } | undefined;
  if (c)
    out.push(
      `  coordinates GTID ${c.gtid || '(none)'}, binlog ${c.file ?? c.binlog?.file ?? ''}:${c.position ?? c.binlog?.position ?? ''}${rep?.startedAt ? " (the donor's own)" : ''}`,
    );
  if (rep)
    out.push(
      `  replication ${rep.state}${rep.from ? ` from ${rep.from}` : ''}${rep.startedAt ? ` at GTID ${rep.startedAt} (the donor's position in its source's stream)` : ''}${rep.catchUpMs !== undefined ? `, caught up in ${formatMs(rep.catchUpMs)}` : ''}`,
    );
  const v = r.verify as { ok?: boolean; identical?: boolean; tables?: number; chunks?: number } | undefined;
  if (v)
    out.push(
      `  verify      ${(v.ok ?? v.identical) ? 'identical' : 'DIFFERENT'}: ${v.tables} tables, ${v.chunks} chunks compared`,
    );
  if (r.manifest) out.push(`  manifest    ${String(r.manifest)} (on the joiner's host)`);
  if (r.removed) out.push(`  old datadir ${String(r.removed)} removed`);
  return out;
}

/** --resume-timeout: a duration between 1 s and 24 h (a bare number is seconds). */
export function resumeTimeout(text: string): number {
  const ms = parseDuration(text, '--resume-timeout');
  if (ms < 1000 || ms > 86_400_000)
    throw new ReseedError('USAGE', `--resume-timeout must be between 1s and 24h, not "${text}"`);
  return ms;
}
