import { clearScreenDown } from 'node:readline';
import cliProgress from 'cli-progress';
import type { ProgressEvent, ProgressSink } from '../progress.js';
import { ProgressModel } from './progress-model.js';
import type { PassReport, ProgressReport } from './progress-model.js';
import { formatBytes, formatMs } from './output.js';

/**
 * What a person sees on stderr. Lines that stay (a line per phase, the plan, warnings, each table
 * copied, each phase's result) scroll above; on a terminal, a live area under them shows the whole
 * operation's percentage and ETA, the current phase's progress and the tables in progress,
 * redrawn a few times a second by cli-progress's MultiBar. Without a terminal (a pipe, a log
 * file) only the lines are written, plus a progress line every 30 s.
 */
export interface TerminalSink extends ProgressSink {
  /** ends the live area; `completed`: the operation succeeded */
  stop(completed?: boolean): void;
}

const MAIN_LABEL = 10;
const TABLE_LABEL = 26;
const MAX_TABLE_LINES = 8;
const PLAIN_STATUS_MS = 30_000;
const FREQUENT = new Set<ProgressEvent['type']>(['rows', 'chunk-done', 'verify-chunk', 'lag']);

/** One line of the live area: a label, an optional bar, and text. */
interface Line {
  label: string;
  fraction?: number | undefined;
  text: string;
}

export function terminalSink(
  stream: NodeJS.WriteStream = process.stderr,
  options: {
    /** false: lines only, even on a terminal (log lines share stderr) */
    live?: boolean;
    /** without the live area, a progress line this often */
    statusEveryMs?: number;
  } = {},
): TerminalSink {
  const model = new ProgressModel();
  const lines = new Narrator(model);
  const live = stream.isTTY === true && options.live !== false;
  let area: LiveArea | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let fitted = 0;
  const write = (text: string) => {
    if (area) area.log(text);
    else stream.write(text + '\n');
  };
  return {
    emit(e: ProgressEvent) {
      const now = Date.now();
      for (const l of lines.describe(e, now)) write(l);
      if (stopped) return;
      if (live) {
        area ??= new LiveArea(stream, () => statusLines(model.report(), model, stream.rows));
        // Rows arrive many times a second: the area's shape follows them a few times a second.
        if (!FREQUENT.has(e.type) || now - fitted >= 200) {
          fitted = now;
          area.fit();
        }
      } else {
        timer ??= setInterval(
          () => stream.write(plainStatus(model.report()) + '\n'),
          options.statusEveryMs ?? PLAIN_STATUS_MS,
        ).unref();
      }
    },
    stop(completed = false) {
      if (stopped) return;
      stopped = true;
      if (completed) model.finish();
      for (const l of lines.close(Date.now())) write(l);
      clearInterval(timer);
      area?.stop();
      area = undefined;
    },
  };
}

/** The lines that stay, from the events and the model (shared by the terminal and plain output). */
class Narrator {
  #model: ProgressModel;
  #indexes = new Map<string, { indexes: number; ms: number }>();
  #waitingSince: number | undefined;
  #verifyTold = false;
  #verifyStarted = false;

  constructor(model: ProgressModel) {
    this.#model = model;
  }

  describe(e: ProgressEvent, now: number): string[] {
    const m = this.#model;
    const before = m.phase;
    m.apply(e, now);
    const out: string[] = [];
    switch (e.type) {
      case 'phase': {
        out.push(...this.#ended(before, now));
        const detail = e.phase === 'copy' && !e.detail ? this.#copyPlan(now) : e.detail;
        out.push(`- ${e.phase}${detail ? `: ${detail}` : ''}`);
        break;
      }
      case 'plan':
        out.push(e.dryRun ? 'Plan (dry run: nothing will be changed):' : 'Plan:');
        for (const l of e.lines) out.push(`  ${l}`);
        break;
      case 'snapshot':
        out.push(
          `  snapshot open: ${e.sessions} session${e.sessions === 1 ? '' : 's'} at GTID ${e.gtid || '(none)'}, ${e.lockMode === 'none' ? 'no lock' : `${e.lockMode} lock held ${e.lockHeldMs} ms`}`,
        );
        break;
      case 'table-indexed':
        this.#indexes.set(e.table, { indexes: e.indexes, ms: e.ms });
        break;
      case 'table-done': {
        const ix = this.#indexes.get(e.table);
        out.push(
          `  ${e.table}: ${count(e.rows)} rows, ${formatBytes(e.bytes)}${ix ? `, ${ix.indexes} index${ix.indexes === 1 ? '' : 'es'} built in ${formatMs(ix.ms)}` : ''}`,
        );
        break;
      }
      case 'verify-planned':
        if (!this.#verifyStarted && before === 'catch-up')
          out.push(`  the joiner reached the donor snapshot in ${formatMs(now - m.phaseStartedAt)}`);
        this.#verifyStarted = true;
        break;
      case 'verify-table':
        if (e.mismatches > 0) out.push(`  ${e.table}: ${e.mismatches} of ${e.chunks} chunks differ`);
        out.push(...this.#verifyEnded(now));
        break;
      case 'throttle':
        if (e.active && this.#waitingSince === undefined) {
          out.push(`  waiting: ${e.reason}`);
          this.#waitingSince = now;
        } else if (!e.active && this.#waitingSince !== undefined) {
          out.push(`  waited ${formatMs(now - this.#waitingSince)}; going on`);
          this.#waitingSince = undefined;
        }
        break;
      case 'warning':
        out.push(`  warning: ${e.message}`);
        break;
      case 'note':
        out.push(`  ${e.message}`);
        break;
      default:
        break;
    }
    return out;
  }

  /** The last phase's result, when the operation ends. */
  close(now: number): string[] {
    return this.#model.finished ? this.#ended(this.#model.phase, now) : [];
  }

  #copyPlan(now: number): string | undefined {
    const c = this.#model.report(now).copy;
    if (!c || c.tables === 0) return undefined;
    return `${c.tables} table${c.tables === 1 ? '' : 's'}, ~${count(c.rowsTotal)} rows, ~${formatBytes(c.bytesTotal)} (the donor's estimates)`;
  }

  #ended(phase: string | undefined, now: number): string[] {
    const r = this.#model.report(now);
    if (phase === 'copy' && r.copy)
      return [
        `  copied ${r.copy.tables} tables, ${count(r.copy.rows)} rows, ${formatBytes(r.copy.bytes)} in ${formatMs(r.copy.elapsedMs)} (${rate(r.copy)})`,
      ];
    if (phase === 'replicate') {
      const ms = this.#model.phaseMs.get('replicate');
      return ms === undefined ? [] : [`  replica running and caught up after ${formatMs(ms)}`];
    }
    return [];
  }

  #verifyEnded(now: number): string[] {
    const v = this.#model.report(now).verify;
    if (this.#verifyTold || !v?.done) return [];
    this.#verifyTold = true;
    return [
      `  compared ${v.tables} tables, ${v.chunks} chunks, ${count(v.rows)} rows in ${formatMs(v.elapsedMs)}: ${v.mismatches ? `${v.mismatches} chunks differ` : 'no difference'}`,
    ];
  }
}

/** The live area: lines that cli-progress redraws in place, and logged lines above them. */
class LiveArea {
  #multibar: cliProgress.MultiBar;
  #bars: cliProgress.SingleBar[] = [];
  #lines: () => Line[];
  #logged = false;

  constructor(stream: NodeJS.WriteStream, lines: () => Line[]) {
    this.#lines = lines;
    this.#multibar = new cliProgress.MultiBar({
      stream,
      format: (options, _params, payload: { line?: Line }) => renderLine(payload.line, options),
      barsize: 20,
      barCompleteChar: '█',
      barIncompleteChar: '░',
      hideCursor: true,
      // Lines are cut at the terminal's width (wrapping would break the redraw).
      linewrap: true,
      // Logged lines move the area down: every line is drawn again each time, changed or not.
      forceRedraw: true,
      clearOnComplete: true,
      fps: 8,
    });
    // Called with the cursor back at the area's first line, before logged lines are written there.
    this.#multibar.on('redraw-pre', () => {
      // cli-progress clears only the first line it logs over: a shorter logged line would keep
      // the end of the bar line it replaced.
      if (this.#logged) clearScreenDown(stream);
      this.#logged = false;
      const lines = this.#lines();
      this.#bars.forEach((b, i) => b.update({ line: lines[i] ?? { label: '', text: '' } }));
    });
  }

  log(text: string): void {
    this.#logged = true;
    this.#multibar.log(text + '\n');
  }

  /** As many bars as lines: added and removed here, never while cli-progress redraws. */
  fit(): void {
    const want = this.#lines().length;
    while (this.#bars.length < want) this.#bars.push(this.#multibar.create(1, 0, {}));
    while (this.#bars.length > want) this.#multibar.remove(this.#bars.pop()!);
  }

  stop(): void {
    // Logged lines wait for the next redraw: draw once more so none is lost, then clear the area.
    this.#multibar.update();
    this.#multibar.stop();
  }
}

function renderLine(line: Line | undefined, options: cliProgress.Options): string {
  if (!line) return '';
  const bar = line.fraction === undefined ? '' : `${cliProgress.Format.BarFormat(line.fraction, options)} `;
  return `${line.label}${bar}${line.text}`;
}

/** The live area's lines for the current state. */
export function statusLines(r: ProgressReport, model: ProgressModel, rows: number | undefined): Line[] {
  const out: Line[] = [total(r)];
  const room = Math.max(1, Math.min(MAX_TABLE_LINES, (rows ?? 24) - 6));
  if (r.copy && !r.copy.done && (r.phase === 'copy' || r.copy.rows > 0)) {
    out.push(copyLine(r.copy));
    const shown = r.copy.active.slice(0, room);
    for (const t of shown) {
      const name = `  ${fit(t.table, TABLE_LABEL - 3)}`.padEnd(TABLE_LABEL);
      out.push(
        t.indexing
          ? {
              label: name,
              text: `building ${t.indexing.indexes} index${t.indexing.indexes === 1 ? '' : 'es'}, ${formatMs(t.indexing.ms)}`,
            }
          : {
              label: name,
              fraction: fraction(t.rows, t.rowsTotal),
              text: `${pct(percent(t.rows, t.rowsTotal))} | ${count(t.rows)}/~${count(t.rowsTotal)} rows`,
            },
      );
    }
    if (r.copy.active.length > shown.length)
      out.push({ label: '', text: `  and ${r.copy.active.length - shown.length} more tables in progress` });
  } else if (r.verify && r.verify.tables > 0) {
    out.push(
      r.verify.done
        ? {
            label: 'verify'.padEnd(MAIN_LABEL),
            text: `rows compared; comparing table and object definitions`,
          }
        : verifyLine(r.verify),
    );
  } else if (r.catchUp) {
    const c = r.catchUp;
    const tx = c.transactionsBehind === null ? '' : `, ${count(c.transactionsBehind)} transactions to apply`;
    out.push({
      label: 'catch-up'.padEnd(MAIN_LABEL),
      text: `${c.secondsBehind === null ? 'lag unknown' : `${c.secondsBehind} s behind`}${tx} | target ${c.gtid || '(none)'} | ${formatMs(c.ms)}`,
    });
  } else if (r.phase === 'objects' && r.objects) {
    out.push({
      label: 'objects'.padEnd(MAIN_LABEL),
      fraction: fraction(r.objects.done, r.objects.total),
      text: `${count(r.objects.done)}/${count(r.objects.total)} created`,
    });
  } else if (r.phase !== undefined) {
    out.push({
      label: fit(r.phase, MAIN_LABEL - 1).padEnd(MAIN_LABEL),
      text: formatMs(Date.now() - model.phaseStartedAt),
    });
  }
  if (r.throttle) out.push({ label: '', text: `  waiting: ${r.throttle}` });
  return out;
}

function total(r: ProgressReport): Line {
  const phase =
    r.phaseNumber !== undefined && r.phases !== undefined
      ? `phase ${r.phaseNumber}/${r.phases} ${r.stage ?? ''}`
      : (r.stage ?? 'starting');
  const eta = `ETA ${r.etaMs === null ? '--' : `${r.etaForecast ? '~' : ''}${duration(r.etaMs)}`}`;
  // Catching up has no rows to count: the ETA leaves it out, and says so.
  const catchUp = r.catchUp && !(r.verify && r.verify.tables > 0) ? ' + catch-up' : '';
  return {
    label: 'total'.padEnd(MAIN_LABEL),
    fraction: r.percent === null ? undefined : r.percent / 100,
    text: `${r.percent === null ? '' : `${pct(r.percent)} | `}${eta}${catchUp} | ${duration(r.elapsedMs)} elapsed | ${phase}`,
  };
}

function copyLine(c: PassReport): Line {
  return {
    label: 'copy'.padEnd(MAIN_LABEL),
    fraction: c.percent / 100,
    text: `${pct(c.percent)} | ${count(c.rows)}/~${count(c.rowsTotal)} rows | ETA ${c.etaMs === null ? '--' : duration(c.etaMs)} | ${c.tablesDone}/${c.tables} tables | ${formatBytes(c.bytes)}/~${formatBytes(c.bytesTotal)} | ${rate(c)}`,
  };
}

function verifyLine(v: PassReport): Line {
  return {
    label: 'verify'.padEnd(MAIN_LABEL),
    fraction: v.percent / 100,
    text: `${pct(v.percent)} | tables ${v.tablesDone}/${v.tables} | chunks ${v.chunksDone}${v.allPlanned ? `/${v.chunks}` : ' done'} | ETA ${v.etaMs === null ? '--' : duration(v.etaMs)}${v.mismatches ? ` | ${v.mismatches} chunks DIFFER` : ''} | ${count(v.rows)}/~${count(v.rowsTotal)} rows | ${v.rowsPerSecond === null ? '-- rows/s' : `${compact(v.rowsPerSecond)} rows/s`}`,
  };
}

/** Without a terminal: one line with the numbers of the moment. */
function plainStatus(r: ProgressReport): string {
  const parts = [`${r.stage ?? r.phase ?? 'starting'}, ${duration(r.elapsedMs)} elapsed`];
  if (r.percent !== null) parts.push(`${pct(r.percent).trim()} overall`);
  if (r.copy && !r.copy.done && r.copy.rows > 0)
    parts.push(`copy ${count(r.copy.rows)}/~${count(r.copy.rowsTotal)} rows, ${rate(r.copy)}`);
  if (r.verify && !r.verify.done && r.verify.chunksDone > 0)
    parts.push(`verify ${r.verify.tablesDone}/${r.verify.tables} tables, ${r.verify.chunksDone} chunks`);
  if (r.catchUp)
    parts.push(
      `catch-up ${r.catchUp.secondsBehind ?? '?'} s behind${r.catchUp.transactionsBehind === null ? '' : `, ${count(r.catchUp.transactionsBehind)} transactions`}`,
    );
  if (r.throttle) parts.push(`waiting: ${r.throttle}`);
  if (r.etaMs !== null) parts.push(`ETA ${r.etaForecast ? '~' : ''}${duration(r.etaMs)}`);
  return `  progress: ${parts.join(' | ')}`;
}

function rate(p: PassReport): string {
  if (p.bytesPerSecond === null || p.rowsPerSecond === null) return '-- /s';
  return `${formatBytes(p.bytesPerSecond)}/s, ${compact(p.rowsPerSecond)} rows/s`;
}

function fraction(done: number, of: number): number {
  return of > 0 ? Math.min(1, done / of) : 0;
}

function percent(done: number, of: number): number {
  return of > 0 ? Math.min(99.9, (done / of) * 100) : 0;
}

/** Whole percents, never rounded up to 100. */
function pct(p: number): string {
  return `${String(Math.floor(p)).padStart(3)}%`;
}

export function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function compact(n: number): string {
  if (n >= 10_000_000) return `${Math.round(n / 1_000_000)}M`;
  if (n >= 1_000_000) return `${(n / 1_000_000).toFixed(1)}M`;
  if (n >= 10_000) return `${Math.round(n / 1000)}k`;
  return String(Math.round(n));
}

/** 7s, 1m05s, 2h03m */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function fit(text: string, width: number): string {
  return text.length <= width ? text : `…${text.slice(text.length - width + 1)}`;
}
