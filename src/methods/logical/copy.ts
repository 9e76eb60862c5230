import { Readable } from 'node:stream';
import { ReseedError, errorMessage, throwIfAborted } from '../../errors.js';
import type { KeyRange } from '../../mysql/chunking.js';
import { planRanges, rangePredicate } from '../../mysql/chunking.js';
import type { PacketSink, PreparedStatement, Server } from '../../mysql/server.js';
import { quoteIdent, sqlErrno } from '../../mysql/server.js';
import type { TableInfo } from '../../mysql/tables.js';
import { displayName, readExpression, rowSource, tableName } from '../../mysql/tables.js';
import type { ProgressSink } from '../../progress.js';
import { BulkEncoder } from './bulk.js';
import { TsvEncoder } from './tsv.js';
import type { RateGate } from '../../throttle/rate-gate.js';
import { pacedSink } from '../../throttle/rate-gate.js';

const ER_MAX_PREPARED_STMT_COUNT_REACHED = 1461;

/** Bytes of encoded rows handed to the joiner at a time; bounds memory per worker. */
const BATCH_BYTES = 1 << 20;
/**
 * LOAD DATA LOCAL content goes in packets of at most this size: the server refuses a packet over
 * its max_allowed_packet (1 MB at the least), and a file's content may be cut anywhere.
 */
const LOCAL_PACKET = 64 << 10;

/** `data` cut into LOCAL_PACKET pieces (views, no copies). */
function localPackets(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += LOCAL_PACKET) out.push(data.subarray(i, i + LOCAL_PACKET));
  return out;
}

export interface CopyOptions {
  /** paces every read from the donor (the throttle) */
  gate: RateGate;
  /** donor sessions inside the snapshot, one per worker */
  donors: Server[];
  /** joiner sessions set up for a bulk load, one per worker */
  joiners: Server[];
  /** a donor session (outside the snapshot is fine) that reads raw key values */
  planner: Server;
  tables: TableInfo[];
  chunkRows: number;
  /** "ADD KEY ..." clauses to run once a table's rows are all in */
  deferredIndexes: Map<TableInfo, string[]>;
  progress: ProgressSink;
  signal?: AbortSignal | undefined;
  /** 'bulk': prepared INSERTs run with COM_STMT_BULK_EXECUTE where the joiner session has it */
  loadMode: 'auto' | 'load-data';
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
  return `SELECT ${table.stored.map(readExpression).join(', ')} FROM ${rowSource(table)}${where ? ` WHERE ${where}` : ''}`;
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

export type Loader = 'bulk-insert' | 'load-data';

/** How rows enter this joiner session. */
export function loaderFor(mode: CopyOptions['loadMode'], joiner: Server): Loader {
  return mode === 'auto' && joiner.bulkExecute ? 'bulk-insert' : 'load-data';
}

/** The prepared INSERT that bulk packets execute; BIT arrives as a number, as for LOAD DATA. */
export function insertSql(table: TableInfo): string {
  const columns = table.stored.map((c) => quoteIdent(c.name)).join(', ');
  const values = table.stored.map((c) => (c.dataType === 'bit' ? 'CAST(? AS UNSIGNED)' : '?')).join(', ');
  return `INSERT INTO ${tableName(table)} (${columns}) VALUES (${values})`;
}

/**
 * Copies every table with one worker per donor/joiner session pair. Chunks of all tables share
 * one queue, largest tables first, so workers stay busy to the end.
 */
export async function copyTables(o: CopyOptions): Promise<{ tables: TableCopyResult[]; loadedWith: string }> {
  const used = new Set<Loader>();
  const results = new Map<string, TableCopyResult>();
  const ordered = [...o.tables].sort((a, b) => b.dataBytes - a.dataBytes);
  for (const t of ordered)
    results.set(displayName(t), { table: displayName(t), rows: 0, bytes: 0, chunks: 0 });
  const state = new Map<string, TableState>();
  const finished: TableInfo[] = [];
  const queue = chunks(o.planner, ordered, o.chunkRows, o.signal, state, finished, o.donors.length);
  let next: Promise<unknown> = Promise.resolve();
  // Iterator calls are serialized: each worker awaits the previous call before asking again.
  const take = (): Promise<IteratorResult<Chunk>> => {
    const call = next.then(() => queue.next());
    next = call.catch(() => undefined);
    return call;
  };
  const maxPacket = Number((await o.joiners[0]!.query('SELECT @@max_allowed_packet AS m'))[0]?.m ?? 0);
  const copyChunk = (i: number, table: TableInfo, range: KeyRange, signal: AbortSignal) => {
    const job: ChunkJob = {
      donor: o.donors[i]!,
      joiner: o.joiners[i]!,
      table,
      range,
      progress: o.progress,
      gate: o.gate,
      signal,
    };
    return loaderFor(o.loadMode, job.joiner) === 'bulk-insert'
      ? bulkChunk(job, maxPacket, used)
      : (used.add('load-data'), loadDataChunk(job));
  };
  const controller = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, controller.signal]) : controller.signal;
  // A table whose last chunk is in gets its deferred indexes built by the worker that sees it,
  // while the other workers go on copying.
  const finish = async (table: TableInfo, joiner: Server) => {
    const name = displayName(table);
    const indexes = o.deferredIndexes.get(table) ?? [];
    if (indexes.length) {
      o.progress.emit({ type: 'table-indexing', table: name, indexes: indexes.length });
      const t = Date.now();
      // LOCK=SHARED: nothing else writes to the table, so InnoDB keeps no log of concurrent changes.
      await joiner.query(`ALTER TABLE ${tableName(table)} ${indexes.join(', ')}, LOCK=SHARED`, [], signal);
      o.progress.emit({ type: 'table-indexed', table: name, indexes: indexes.length, ms: Date.now() - t });
    }
    const r = results.get(name)!;
    o.progress.emit({ type: 'table-done', table: name, rows: r.rows, bytes: r.bytes });
  };
  const worker = async (i: number) => {
    for (;;) {
      throwIfAborted(signal);
      const ready = finished.shift();
      if (ready) {
        await finish(ready, o.joiners[i]!);
        continue;
      }
      const item = await take();
      if (item.done) {
        const last = finished.shift();
        if (last) await finish(last, o.joiners[i]!);
        if (finished.length === 0) return;
        continue;
      }
      const { table, range } = item.value;
      const name = displayName(table);
      const copied = await copyChunk(i, table, range, signal);
      const r = results.get(name)!;
      r.rows += copied.rows;
      r.bytes += copied.bytes;
      r.chunks++;
      const st = state.get(name)!;
      st.pending--;
      o.progress.emit({
        type: 'chunk-done',
        table: name,
        rows: copied.rows,
        bytes: copied.bytes,
        chunks: r.chunks + st.pending,
        chunksDone: r.chunks,
        allPlanned: st.planned,
      });
      if (st.planned && st.pending === 0) finished.push(table);
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
  return { tables: [...results.values()], loadedWith: [...used].sort().join(', ') };
}

interface TableState {
  planned: boolean;
  pending: number;
}

/**
 * Chunks of up to `lanes` tables at a time, taken in turn: concurrent workers then mostly load
 * different tables (several writers on one B-tree contend for its latches and can deadlock).
 */
async function* chunks(
  planner: Server,
  tables: TableInfo[],
  chunkRows: number,
  signal: AbortSignal | undefined,
  state: Map<string, TableState>,
  finished: TableInfo[],
  lanes: number,
): AsyncGenerator<Chunk> {
  const waiting = [...tables];
  const open: { table: TableInfo; ranges: AsyncIterator<KeyRange>; state: TableState }[] = [];
  const fill = () => {
    while (open.length < lanes && waiting.length > 0) {
      const table = waiting.shift()!;
      const st: TableState = { planned: false, pending: 0 };
      state.set(displayName(table), st);
      open.push({
        table,
        ranges: planRanges(planner, table, chunkRows, signal)[Symbol.asyncIterator](),
        state: st,
      });
    }
  };
  fill();
  for (let i = 0; open.length > 0;) {
    i %= open.length;
    const lane = open[i]!;
    const next = await lane.ranges.next();
    if (next.done) {
      lane.state.planned = true;
      // Its chunks may all be copied already: then nobody else will notice it is complete.
      if (lane.state.pending === 0) finished.push(lane.table);
      open.splice(i, 1);
      fill();
      continue;
    }
    lane.state.pending++;
    yield { table: lane.table, range: next.value };
    i++;
  }
}

/** One chunk to copy: from which donor session to which joiner session. */
interface ChunkJob {
  donor: Server;
  joiner: Server;
  table: TableInfo;
  range: KeyRange;
  progress: ProgressSink;
  gate: RateGate;
  signal: AbortSignal;
}

/** Streams `sql`'s rows from the donor into `sink`, paced by the throttle's gate. */
async function streamFromDonor(
  donor: Server,
  sql: string,
  sink: PacketSink,
  gate: RateGate,
  signal: AbortSignal,
): Promise<void> {
  const paced = pacedSink(sink, gate);
  try {
    await paced.start();
    await donor.streamPackets(sql, paced.sink, signal);
  } finally {
    paced.finish();
  }
}

/** Lock conflicts whose victim statement is rolled back whole and can simply run again. */
function retryable(err: unknown): boolean {
  const errno = sqlErrno(err);
  return errno === 1213 || errno === 1205;
}

/** A stored row count that differs from the rows sent (errors may have become warnings). */
function countMismatch(name: string, sent: number, stored: number): ReseedError {
  return new ReseedError('COPY_FAILED', `${name}: sent ${sent} rows but the joiner stored ${stored}`, {
    hints: ["check the joiner's table definition against the donor's, and its SHOW WARNINGS"],
  });
}

async function loadDataChunk({
  donor,
  joiner,
  table,
  range,
  progress,
  gate,
  signal,
}: ChunkJob): Promise<{ rows: number; bytes: number }> {
  const name = displayName(table);
  for (let attempt = 1; ; attempt++) {
    let rows = 0;
    let bytes = 0;
    const source = rowStream(donor, selectSql(table, range), gate, signal, (n, b) => {
      rows += n;
      bytes += b;
      progress.emit({ type: 'rows', table: name, rows: n, bytes: b });
    });
    let loaded: number;
    try {
      loaded = await joiner.loadData(loadSql(table), source, signal);
    } catch (err) {
      // A deadlock victim's statement is rolled back whole, and the snapshot reads the same rows
      // again: the chunk is simply copied once more. Its rows are then counted twice in progress.
      if (retryable(err) && attempt < 5) {
        source.destroy();
        await drain(source);
        progress.emit({
          type: 'warning',
          message: `${name}: chunk retried after a lock conflict on the joiner (${sqlErrno(err)})`,
        });
        continue;
      }
      throw err;
    }
    // LOAD DATA LOCAL turns duplicate keys and bad values into warnings: a count that differs is
    // the only sign, so it is fatal.
    if (loaded !== rows) throw countMismatch(name, rows, loaded);
    return { rows, bytes };
  }
}

/**
 * One chunk through prepared-INSERT bulk packets of about BATCH_BYTES each. Up to two packets
 * are in flight, so the joiner inserts one while the next is encoded; beyond that the donor is
 * paused. Each packet is its own statement: a lock-conflict victim is sent again on its own. A
 * row too big for the joiner's max_allowed_packet goes alone through LOAD DATA LOCAL, which has
 * no such limit.
 */
async function bulkChunk(
  job: ChunkJob,
  maxPacket: number,
  used: Set<Loader>,
): Promise<{ rows: number; bytes: number }> {
  const { donor, joiner, table, range, progress, gate, signal } = job;
  const name = displayName(table);
  let statement: PreparedStatement;
  try {
    statement = await joiner.prepare(insertSql(table), signal);
  } catch (err) {
    // The joiner's max_prepared_stmt_count is used up (by other clients too): LOAD DATA needs none.
    if (sqlErrno(err) !== ER_MAX_PREPARED_STMT_COUNT_REACHED) throw err;
    progress.emit({
      type: 'warning',
      message: `${name}: the joiner has no prepared statement left (max_prepared_stmt_count); chunk loaded with LOAD DATA LOCAL`,
    });
    used.add('load-data');
    return loadDataChunk(job);
  }
  used.add('bulk-insert');
  // executeBulk takes no signal: on abort, the packet the joiner is inserting is killed there.
  const kill = () => void joiner.killQuery();
  signal.addEventListener('abort', kill, { once: true });
  try {
    const encoder = new BulkEncoder(statement.id, statement.parameters, BATCH_BYTES + (BATCH_BYTES >> 1));
    const batchBytes = Math.min(BATCH_BYTES, maxPacket >> 2);
    let rows = 0;
    let bytes = 0;
    let stored = 0;
    let inflight = 0;
    let failure: unknown;
    let resume = () => {};
    const pending: Promise<void>[] = [];
    const send = (run: () => Promise<number>): boolean => {
      inflight++;
      pending.push(
        run()
          .then(
            (n) => void (stored += n),
            (err: unknown) => void (failure ??= err),
          )
          .finally(() => {
            inflight--;
            resume();
          }),
      );
      return inflight < 2;
    };
    const execute = async (packet: Buffer): Promise<number> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await joiner.executeBulk(packet);
        } catch (err) {
          if (!retryable(err) || attempt >= 5) throw err;
          progress.emit({
            type: 'warning',
            message: `${name}: rows sent again after a lock conflict on the joiner`,
          });
        }
      }
    };
    const flush = (): boolean => {
      const n = encoder.rows;
      const packet = encoder.take();
      rows += n;
      bytes += packet.length;
      progress.emit({ type: 'rows', table: name, rows: n, bytes: packet.length });
      return send(() => execute(packet).finally(() => encoder.release(packet)));
    };
    await streamFromDonor(
      donor,
      selectSql(table, range),
      {
        onRow(buf, start, end, columns) {
          if (failure !== undefined || signal.aborted) return true;
          if (end - start + columns + 1024 > maxPacket) {
            if (encoder.rows > 0) flush();
            const tsv = new TsvEncoder((end - start) * 2 + columns * 3 + 1);
            tsv.pushPacket(buf, start, end, columns);
            const data = tsv.take();
            rows++;
            bytes += data.length;
            progress.emit({ type: 'rows', table: name, rows: 1, bytes: data.length });
            return send(() => loadBigRow(job, data, maxPacket));
          }
          encoder.pushPacket(buf, start, end, columns);
          return encoder.length < batchBytes || flush();
        },
        setResume(fn) {
          resume = fn;
        },
      },
      gate,
      signal,
    );
    if (failure === undefined && encoder.rows > 0) flush();
    await Promise.all(pending);
    if (failure !== undefined) throw failure;
    if (stored !== rows) throw countMismatch(name, rows, stored);
    return { rows, bytes };
  } finally {
    signal.removeEventListener('abort', kill);
    statement.close();
  }
}

/** One row too big for a bulk packet, alone through LOAD DATA LOCAL (it has no packet limit). */
async function loadBigRow(
  { joiner, table, signal }: ChunkJob,
  tsv: Buffer,
  maxPacket: number,
): Promise<number> {
  try {
    return await joiner.loadData(loadSql(table), Readable.from(localPackets(tsv)), signal);
  } catch (err) {
    throw new ReseedError(
      'COPY_FAILED',
      `${displayName(table)}: a row of about ${tsv.length} bytes is bigger than the joiner's max_allowed_packet (${maxPacket}) and LOAD DATA LOCAL failed: ${errorMessage(err)}`,
      {
        cause: err,
        hints: ['raise max_allowed_packet on the joiner, or SET GLOBAL local_infile = ON there'],
      },
    );
  }
}

/** Waits until a destroyed stream has closed (its donor query ended or failed). */
function drain(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.closed) resolve();
    else stream.once('close', () => resolve());
  });
}

/**
 * The rows of `sql` as LOAD DATA text, in batches of about BATCH_BYTES, encoded straight from the
 * wire. When the joiner falls behind, the donor connection is paused (backpressure end to end).
 */
function rowStream(
  donor: Server,
  sql: string,
  gate: RateGate,
  signal: AbortSignal,
  onBatch: (rows: number, bytes: number) => void,
): Readable {
  const encoder = new TsvEncoder(BATCH_BYTES + (BATCH_BYTES >> 1));
  let resume = () => {};
  let discard = false;
  const readable = new Readable({
    highWaterMark: 2 * BATCH_BYTES,
    read: () => resume(),
    // Given up on (the load failed): the donor's query still runs to its end, unread, so that
    // the session is free for the next statement.
    destroy: (err, callback) => {
      discard = true;
      resume();
      callback(err);
    },
  });
  const flush = (): boolean => {
    const n = encoder.rows;
    const out = encoder.take();
    onBatch(n, out.length);
    let more = true;
    for (const piece of localPackets(out)) more = readable.push(piece);
    return more;
  };
  streamFromDonor(
    donor,
    sql,
    {
      onRow(buf, start, end, columns) {
        if (discard) return true;
        encoder.pushPacket(buf, start, end, columns);
        return encoder.length < BATCH_BYTES || flush();
      },
      setResume(fn) {
        resume = fn;
      },
    },
    gate,
    signal,
  ).then(
    () => {
      if (discard) return;
      if (encoder.length > 0) flush();
      readable.push(null);
    },
    (err: unknown) => readable.destroy(err as Error),
  );
  return readable;
}
