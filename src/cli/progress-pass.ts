/**
 * One pass over the rows (the copy, or verify's comparison), table by table: rows and bytes done,
 * the total expected (the donor's statistics, corrected as chunks finish), rates over a recent
 * window and an ETA.
 */

/** Rates are measured over this much recent time, so that an ETA follows the current speed. */
const RATE_WINDOW_MS = 20_000;
/** No rate (and so no ETA) before this much of a pass has been measured. */
const RATE_MIN_MS = 1_000;

interface TableState {
  estimatedRows: number;
  estimatedBytes: number;
  /** rows and bytes seen so far (the copy counts them as they stream, verify per chunk) */
  rows: number;
  bytes: number;
  /** rows in the chunks finished so far */
  chunkRows: number;
  chunks: number;
  chunksDone: number;
  allPlanned: boolean;
  done: boolean;
  startedAt: number | undefined;
  indexing: { indexes: number; since: number } | undefined;
  mismatches: number;
}

export interface ActiveTable {
  table: string;
  rows: number;
  rowsTotal: number;
  /** building deferred secondary indexes since `ms` milliseconds */
  indexing?: { indexes: number; ms: number };
}

/** One pass over the rows: the copy, or verify's comparison. */
export interface PassReport {
  tables: number;
  tablesDone: number;
  rows: number;
  /** the rows expected in all: the donor's estimate, corrected as chunks finish */
  rowsTotal: number;
  bytes: number;
  bytesTotal: number;
  /** chunks known so far (tables are split as they are reached) */
  chunks: number;
  chunksDone: number;
  /** every table is split: `chunks` is final */
  allPlanned: boolean;
  percent: number;
  rowsPerSecond: number | null;
  bytesPerSecond: number | null;
  etaMs: number | null;
  elapsedMs: number;
  done: boolean;
  /** chunks whose checksums differ (verify) */
  mismatches: number;
  /** tables being worked on now, oldest first */
  active: ActiveTable[];
}

/** Fed by the model: `add` as rows are counted, `chunk` and `tableDone` as work finishes. */
export class Pass {
  readonly tables = new Map<string, TableState>();
  startedAt: number | undefined;
  finishedAt: number | undefined;
  rows = 0;
  bytes = 0;
  #samples: { t: number; rows: number; bytes: number }[] = [];

  get started(): boolean {
    return this.startedAt !== undefined;
  }

  get finished(): boolean {
    return this.finishedAt !== undefined;
  }

  start(now: number): void {
    if (this.startedAt !== undefined) return;
    this.startedAt = now;
    this.#samples = [{ t: now, rows: 0, bytes: 0 }];
  }

  finish(now: number): void {
    if (this.startedAt === undefined) this.start(now);
    this.finishedAt ??= now;
  }

  plan(table: string, estimatedRows: number, estimatedBytes: number): void {
    const t = this.table(table);
    t.estimatedRows = Math.max(0, estimatedRows);
    t.estimatedBytes = Math.max(0, estimatedBytes);
  }

  table(name: string): TableState {
    let t = this.tables.get(name);
    if (!t) {
      t = {
        estimatedRows: 0,
        estimatedBytes: 0,
        rows: 0,
        bytes: 0,
        chunkRows: 0,
        chunks: 0,
        chunksDone: 0,
        allPlanned: false,
        done: false,
        startedAt: undefined,
        indexing: undefined,
        mismatches: 0,
      };
      this.tables.set(name, t);
    }
    return t;
  }

  add(name: string, rows: number, bytes: number, now: number): void {
    this.start(now);
    const t = this.table(name);
    t.startedAt ??= now;
    t.rows += rows;
    t.bytes += bytes;
    this.rows += rows;
    this.bytes += bytes;
    this.sample(now);
  }

  chunk(name: string, e: { rows: number; chunks: number; chunksDone: number; allPlanned: boolean }): void {
    const t = this.table(name);
    t.chunkRows += e.rows;
    t.chunks = Math.max(t.chunks, e.chunks);
    t.chunksDone = Math.max(t.chunksDone, e.chunksDone);
    t.allPlanned ||= e.allPlanned;
  }

  tableDone(name: string, rows: number, bytes: number | undefined, chunks: number | undefined): void {
    const t = this.table(name);
    // The table's own totals replace what was counted on the way (a chunk copied again after a
    // lock conflict streamed its rows twice).
    this.rows += rows - t.rows;
    t.rows = rows;
    if (bytes !== undefined) {
      this.bytes += bytes - t.bytes;
      t.bytes = bytes;
    }
    if (chunks !== undefined) t.chunks = t.chunksDone = chunks;
    t.done = true;
    t.indexing = undefined;
  }

  expectedRows(t: TableState): number {
    if (t.done) return t.rows;
    if (t.allPlanned && t.chunksDone > 0) {
      const perChunk = t.chunkRows / t.chunksDone;
      return Math.max(t.rows, Math.round(t.chunkRows + (t.chunks - t.chunksDone) * perChunk));
    }
    return Math.max(t.rows, t.estimatedRows);
  }

  expectedBytes(t: TableState): number {
    if (t.done) return t.bytes;
    // Bytes as they travel differ from the donor's DATA_LENGTH: once a table has sent rows, its
    // own bytes per row are the better guess.
    if (t.rows > 0) return Math.max(t.bytes, Math.round((t.bytes / t.rows) * this.expectedRows(t)));
    return t.estimatedBytes;
  }

  sample(now: number): void {
    const last = this.#samples.at(-1);
    if (!last || now - last.t >= 250) this.#samples.push({ t: now, rows: this.rows, bytes: this.bytes });
    while (this.#samples.length > 2 && this.#samples[1]!.t <= now - RATE_WINDOW_MS) this.#samples.shift();
  }

  /** rows and bytes per second over the recent window; null until enough has been measured */
  rate(now: number): { rows: number; bytes: number } | null {
    if (this.startedAt === undefined) return null;
    const end = this.finishedAt ?? now;
    if (this.finished) {
      const secs = Math.max(end - this.startedAt, 1) / 1000;
      return { rows: this.rows / secs, bytes: this.bytes / secs };
    }
    this.sample(now);
    const base = this.#samples[0]!;
    const ms = end - base.t;
    if (end - this.startedAt < RATE_MIN_MS || ms <= 0 || this.rows === 0) return null;
    return { rows: ((this.rows - base.rows) * 1000) / ms, bytes: ((this.bytes - base.bytes) * 1000) / ms };
  }

  report(now: number, fallbackTotal?: number): PassReport {
    let rowsTotal = 0;
    let bytesTotal = 0;
    let chunks = 0;
    let chunksDone = 0;
    let tablesDone = 0;
    let mismatches = 0;
    let allPlanned = true;
    const active: (ActiveTable & { since: number })[] = [];
    for (const [name, t] of this.tables) {
      const expected = this.expectedRows(t);
      rowsTotal += expected;
      bytesTotal += this.expectedBytes(t);
      chunks += t.chunks;
      chunksDone += t.chunksDone;
      mismatches += t.mismatches;
      allPlanned &&= t.done || t.allPlanned;
      if (t.done) tablesDone++;
      else if (t.startedAt !== undefined)
        active.push({
          table: name,
          rows: t.rows,
          rowsTotal: expected,
          since: t.startedAt,
          ...(t.indexing ? { indexing: { indexes: t.indexing.indexes, ms: now - t.indexing.since } } : {}),
        });
    }
    if (this.tables.size === 0 && fallbackTotal !== undefined) rowsTotal = fallbackTotal;
    const rate = this.rate(now);
    const left = Math.max(0, rowsTotal - this.rows);
    const done = this.finished;
    return {
      tables: this.tables.size,
      tablesDone,
      rows: this.rows,
      rowsTotal,
      bytes: this.bytes,
      bytesTotal,
      chunks,
      chunksDone,
      allPlanned,
      percent: done ? 100 : percentOf(this.rows, rowsTotal),
      rowsPerSecond: rate ? Math.round(rate.rows) : null,
      bytesPerSecond: rate ? Math.round(rate.bytes) : null,
      etaMs: done ? 0 : rate && rate.rows > 0 ? Math.round((left / rate.rows) * 1000) : null,
      elapsedMs: this.startedAt === undefined ? 0 : (this.finishedAt ?? now) - this.startedAt,
      done,
      mismatches,
      active: active.sort((a, b) => a.since - b.since).map(({ since: _, ...a }) => a),
    };
  }
}

/** A percentage that reaches 100 only when the work is done (estimates can fall short). */
export function percentOf(done: number, total: number): number {
  if (total <= 0) return 0;
  return Math.min(99.9, Math.floor((done / total) * 1000) / 10);
}
