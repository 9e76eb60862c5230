import { Readable } from 'node:stream';
import { ReseedError, throwIfAborted } from '../../errors.js';
import type { KeyRange } from '../../mysql/chunking.js';
import { planRanges, rangePredicate } from '../../mysql/chunking.js';
import type { Server } from '../../mysql/server.js';
import { quoteIdent } from '../../mysql/server.js';
import type { TableInfo } from '../../mysql/tables.js';
import { displayName, readExpression, tableName } from '../../mysql/tables.js';
import type { ProgressSink } from '../../progress.js';
import { TsvEncoder } from './tsv.js';

/** Bytes of encoded rows handed to the joiner at a time; bounds memory per worker. */
const BATCH_BYTES = 1 << 20;

export interface CopyOptions {
  /** donor sessions inside the snapshot, one per worker */
  donors: Server[];
  /** joiner sessions set up for a bulk load, one per worker */
  joiners: Server[];
  /** a donor session (outside the snapshot is fine) that reads raw key values */
  planner: Server;
  tables: TableInfo[];
  chunkRows: number;
  progress: ProgressSink;
  signal?: AbortSignal | undefined;
}

export interface TableCopyResult {
  table: string;
  rows: number;
  bytes: number;
  chunks: number;
}

interface Chunk {
  table: TableInfo;
  range: KeyRange;
}

export function selectSql(table: TableInfo, range: KeyRange): string {
  const where = rangePredicate(table.chunkKey, range);
  return `SELECT ${table.stored.map(readExpression).join(', ')} FROM ${tableName(table)}${where ? ` WHERE ${where}` : ''}`;
}

/** LOAD DATA for the stored columns; BIT goes through a variable because it arrives as a number. */
export function loadSql(table: TableInfo): string {
  const targets: string[] = [];
  const sets: string[] = [];
  table.stored.forEach((c, i) => {
    if (c.dataType === 'bit') {
      targets.push(`@v${i}`);
      sets.push(`${quoteIdent(c.name)} = CAST(@v${i} AS UNSIGNED)`);
    } else targets.push(quoteIdent(c.name));
  });
  return (
    `LOAD DATA LOCAL INFILE 'reseed.tsv' INTO TABLE ${tableName(table)} CHARACTER SET binary ` +
    `FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (${targets.join(', ')})` +
    (sets.length ? ` SET ${sets.join(', ')}` : '')
  );
}

/**
 * Copies every table with one worker per donor/joiner session pair. Chunks of all tables share
 * one queue, largest tables first, so workers stay busy to the end.
 */
export async function copyTables(o: CopyOptions): Promise<TableCopyResult[]> {
  const results = new Map<string, TableCopyResult>();
  const ordered = [...o.tables].sort((a, b) => b.dataBytes - a.dataBytes);
  for (const t of ordered) {
    results.set(displayName(t), { table: displayName(t), rows: 0, bytes: 0, chunks: 0 });
    o.progress.emit({
      type: 'table-planned',
      table: displayName(t),
      estimatedRows: t.estimatedRows,
      estimatedBytes: t.dataBytes,
    });
  }
  const state = new Map<string, { planned: boolean; pending: number; reported: boolean }>();
  const queue = chunks(o.planner, ordered, o.chunkRows, o.signal, state);
  let next: Promise<unknown> = Promise.resolve();
  // Iterator calls are serialized: each worker awaits the previous call before asking again.
  const take = (): Promise<IteratorResult<Chunk>> => {
    const call = next.then(() => queue.next());
    next = call.catch(() => undefined);
    return call;
  };
  const report = (name: string) => {
    const s = state.get(name);
    const r = results.get(name)!;
    if (s && s.planned && s.pending === 0 && !s.reported) {
      s.reported = true;
      o.progress.emit({ type: 'table-done', table: name, rows: r.rows, bytes: r.bytes });
    }
  };
  const controller = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, controller.signal]) : controller.signal;
  const worker = async (i: number) => {
    for (;;) {
      throwIfAborted(signal);
      const item = await take();
      if (item.done) return;
      const { table, range } = item.value;
      const name = displayName(table);
      const copied = await copyChunk(o.donors[i]!, o.joiners[i]!, table, range, o.progress, signal);
      const r = results.get(name)!;
      r.rows += copied.rows;
      r.bytes += copied.bytes;
      r.chunks++;
      state.get(name)!.pending--;
      report(name);
    }
  };
  const workers = o.donors.map((_, i) =>
    worker(i).catch((err: unknown) => {
      controller.abort(err);
      throw err;
    }),
  );
  const settled = await Promise.allSettled(workers);
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure) throw failure.reason;
  for (const name of results.keys()) report(name);
  return [...results.values()];
}

async function* chunks(
  planner: Server,
  tables: TableInfo[],
  chunkRows: number,
  signal: AbortSignal | undefined,
  state: Map<string, { planned: boolean; pending: number; reported: boolean }>,
): AsyncGenerator<Chunk> {
  for (const table of tables) {
    const s = { planned: false, pending: 0, reported: false };
    state.set(displayName(table), s);
    for await (const range of planRanges(planner, table, chunkRows, signal)) {
      s.pending++;
      yield { table, range };
    }
    s.planned = true;
  }
}

async function copyChunk(
  donor: Server,
  joiner: Server,
  table: TableInfo,
  range: KeyRange,
  progress: ProgressSink,
  signal: AbortSignal,
): Promise<{ rows: number; bytes: number }> {
  const name = displayName(table);
  let rows = 0;
  let bytes = 0;
  async function* encode(): AsyncGenerator<Buffer> {
    const encoder = new TsvEncoder();
    for await (const row of donor.streamRaw(selectSql(table, range), signal)) {
      encoder.push(row);
      if (encoder.length >= BATCH_BYTES) {
        const n = encoder.rows;
        encoder.rows = 0;
        const out = encoder.take();
        rows += n;
        bytes += out.length;
        progress.emit({ type: 'rows', table: name, rows: n, bytes: out.length });
        yield out;
      }
    }
    const n = encoder.rows;
    const out = encoder.take();
    rows += n;
    bytes += out.length;
    if (n > 0) progress.emit({ type: 'rows', table: name, rows: n, bytes: out.length });
    if (out.length > 0) yield out;
  }
  const loaded = await joiner.loadData(
    loadSql(table),
    Readable.from(encode(), { objectMode: false }),
    signal,
  );
  if (loaded !== rows) {
    // LOAD DATA LOCAL turns duplicate keys and bad values into warnings: a count that differs is
    // the only sign, so it is fatal.
    throw new ReseedError('COPY_FAILED', `${name}: sent ${rows} rows but the joiner stored ${loaded}`, {
      hints: ["check the joiner's table definition and SHOW WARNINGS after a manual LOAD DATA"],
    });
  }
  return { rows, bytes };
}
