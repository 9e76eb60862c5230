import type { ProgressEvent } from '../progress.js';
import { Pass, percentOf } from './progress-pass.js';
import type { PassReport } from './progress-pass.js';

export type { ActiveTable, PassReport } from './progress-pass.js';

export interface ProgressReport {
  /** the last phase announced (verify's catch-up included) */
  phase: string | undefined;
  /** the announced phase we are in: the phase, or the one a sub-phase such as catch-up is part of */
  stage: string | undefined;
  /** 1-based place of `stage` among the announced phases */
  phaseNumber: number | undefined;
  phases: number | undefined;
  elapsedMs: number;
  /** the whole operation: rows copied and rows verified, of all expected */
  percent: number | null;
  etaMs: number | null;
  /** the ETA counts verify at the copy's speed until verify has measured its own */
  etaForecast: boolean;
  copy?: PassReport;
  verify?: PassReport;
  catchUp?: { secondsBehind: number | null; transactionsBehind: number | null; gtid: string; ms: number };
  objects?: { done: number; total: number };
  /** why the operation holds back for the donor's sake, while it does */
  throttle?: string;
}

/**
 * Folds an operation's progress events into the numbers a person watching it wants: totals known
 * up front, percentages, rates and ETAs, per phase and for the whole operation. The terminal
 * renderer and the --json `progress` lines both read them from here, so they always agree.
 *
 * Totals start as the donor's statistics (TABLE_ROWS, DATA_LENGTH) and are corrected as chunks
 * finish: a table whose chunks are all planned is expected to hold its finished chunks' rows
 * plus, for each chunk still to go, their average; a finished table counts what it held.
 */
export class ProgressModel {
  readonly startedAt: number;
  readonly copy = new Pass();
  readonly verify = new Pass();
  phases: string[] = [];
  phase: string | undefined;
  phaseStartedAt = 0;
  /** the phase of `phases` we are in (a sub-phase such as verify's catch-up keeps it) */
  phaseNumber: number | undefined;
  /** how long each phase took, once it ended */
  readonly phaseMs = new Map<string, number>();
  catchUp:
    | { secondsBehind: number | null; transactionsBehind: number | null; gtid: string; since: number }
    | undefined;
  objects: { done: number; total: number } | undefined;
  throttle: string | undefined;
  finished = false;

  constructor(now = Date.now()) {
    this.startedAt = now;
  }

  /** Whether there is anything to measure yet (rows to copy or to compare). */
  get measurable(): boolean {
    return this.copy.tables.size > 0 || this.verify.tables.size > 0;
  }

  apply(e: ProgressEvent, now = Date.now()): void {
    switch (e.type) {
      case 'plan':
        if (e.phases) this.phases = e.phases;
        break;
      case 'phase':
        this.enterPhase(e.phase, now);
        break;
      case 'table-planned':
        this.copy.plan(e.table, e.estimatedRows, e.estimatedBytes);
        break;
      case 'rows':
        this.copy.add(e.table, e.rows, e.bytes, now);
        break;
      case 'chunk-done':
        this.copy.chunk(e.table, e);
        break;
      case 'table-indexing':
        this.copy.table(e.table).indexing = { indexes: e.indexes, since: now };
        break;
      case 'table-indexed':
        this.copy.table(e.table).indexing = undefined;
        break;
      case 'table-done':
        this.copy.tableDone(e.table, e.rows, e.bytes, undefined);
        this.copy.sample(now);
        break;
      case 'objects':
        this.objects = { done: e.done, total: e.total };
        break;
      case 'lag':
        this.catchUp = {
          secondsBehind: e.secondsBehind,
          transactionsBehind: e.transactionsBehind ?? null,
          gtid: e.gtid,
          since: this.catchUp?.since ?? now,
        };
        break;
      case 'throttle':
        this.throttle = e.active ? e.reason : undefined;
        break;
      case 'verify-planned': {
        this.verify.start(now);
        // A table this run has just copied: its count is better than the donor's statistics.
        const copied = this.copy.tables.get(e.table);
        this.verify.plan(e.table, copied?.done ? copied.rows : e.estimatedRows, 0);
        break;
      }
      case 'verify-chunk':
        this.verify.add(e.table, e.rows, 0, now);
        this.verify.chunk(e.table, e);
        if (e.mismatch) this.verify.table(e.table).mismatches++;
        break;
      case 'verify-table':
        this.verify.tableDone(e.table, e.rows, undefined, e.chunks);
        if ([...this.verify.tables.values()].every((t) => t.done)) this.verify.finish(now);
        break;
      case 'snapshot':
      case 'warning':
      case 'note':
        break;
    }
  }

  enterPhase(phase: string, now: number): void {
    if (this.phase !== undefined) this.phaseMs.set(this.phase, now - this.phaseStartedAt);
    // The copy has ended when any later phase begins.
    if (this.phase === 'copy') this.copy.finish(now);
    if (phase === 'copy') this.copy.start(now);
    this.phase = phase;
    this.phaseStartedAt = now;
    this.catchUp = undefined;
    this.throttle = undefined;
    const i = this.phases.indexOf(phase);
    if (i >= 0) this.phaseNumber = i + 1;
  }

  /** The operation completed: every percentage is 100. */
  finish(now = Date.now()): void {
    if (this.phase !== undefined && !this.phaseMs.has(this.phase))
      this.phaseMs.set(this.phase, now - this.phaseStartedAt);
    if (this.copy.started) this.copy.finish(now);
    if (this.verify.started) this.verify.finish(now);
    this.finished = true;
  }

  /** The announced phase we are in; without announced phases (verify alone), what runs. */
  get stage(): string | undefined {
    if (this.phaseNumber !== undefined) return this.phases[this.phaseNumber - 1];
    return this.verify.started && !this.verify.finished ? 'verify' : this.phase;
  }

  get expectsCopy(): boolean {
    return this.phases.includes('copy') || this.copy.tables.size > 0;
  }

  get expectsVerify(): boolean {
    return this.phases.includes('verify') || this.verify.tables.size > 0;
  }

  report(now = Date.now()): ProgressReport {
    const copy = this.expectsCopy ? this.copy.report(now) : undefined;
    // Verify compares what the copy copied: until it has listed its tables, that is its size.
    const verify = this.expectsVerify ? this.verify.report(now, copy?.rowsTotal) : undefined;
    const passes = [copy, verify].filter((p): p is PassReport => p !== undefined);
    const total = passes.reduce((a, p) => a + p.rowsTotal, 0);
    const done = passes.reduce((a, p) => a + (p.done ? p.rowsTotal : p.rows), 0);
    let percent: number | null = null;
    if (this.finished) percent = 100;
    else if (this.measurable) percent = percentOf(done, total);
    const { etaMs, forecast } = this.eta(copy, verify);
    return {
      phase: this.phase,
      stage: this.stage,
      phaseNumber: this.phaseNumber,
      phases: this.phases.length || undefined,
      elapsedMs: now - this.startedAt,
      percent,
      etaMs: this.finished ? 0 : etaMs,
      etaForecast: !this.finished && forecast,
      ...(copy ? { copy } : {}),
      ...(verify ? { verify } : {}),
      ...(this.catchUp
        ? {
            catchUp: {
              secondsBehind: this.catchUp.secondsBehind,
              transactionsBehind: this.catchUp.transactionsBehind,
              gtid: this.catchUp.gtid,
              ms: now - this.catchUp.since,
            },
          }
        : {}),
      ...(this.objects ? { objects: this.objects } : {}),
      ...(this.throttle ? { throttle: this.throttle } : {}),
    };
  }

  /**
   * Time left for the rows still to copy and to compare, each at its own measured speed; verify's
   * at the copy's until verify has measured its own (then `forecast`). Unknown (null) while a
   * speed needed is not measured yet. Phases without rows (catch-up, objects) are not counted.
   */
  private eta(
    copy: PassReport | undefined,
    verify: PassReport | undefined,
  ): { etaMs: number | null; forecast: boolean } {
    if (!copy && !verify) return { etaMs: null, forecast: false };
    let ms = 0;
    let forecast = false;
    if (copy && !copy.done) {
      if (copy.etaMs === null) return { etaMs: null, forecast: false };
      ms += copy.etaMs;
    }
    if (verify && !verify.done) {
      if (verify.etaMs !== null) ms += verify.etaMs;
      else if (copy?.rowsPerSecond) {
        ms += ((verify.rowsTotal - verify.rows) / copy.rowsPerSecond) * 1000;
        forecast = true;
      } else return { etaMs: null, forecast: false };
    }
    return { etaMs: Math.round(ms), forecast };
  }
}
