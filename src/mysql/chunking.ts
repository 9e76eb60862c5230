import { throwIfAborted } from '../errors.js';
import type { Server } from './server.js';
import { quoteIdent } from './server.js';
import type { ColumnInfo, TableInfo } from './tables.js';
import { isInteger, keyLiteral, keyReadExpression, tableName } from './tables.js';

/**
 * Session settings of a donor session that reads column bytes untouched (key boundaries, rows)
 * in UTC: planRanges needs its planner started with them.
 */
export function rawReadSessionSql(unbounded: string[] = []): string[] {
  return ["SET SESSION time_zone = '+00:00'", 'SET SESSION character_set_results = NULL', ...unbounded];
}

/**
 * A slice of a table along its chunk key: rows with key > lower (exclusive) and <= upper
 * (inclusive); an absent bound is open. Consecutive ranges share a bound, so together they cover
 * every key exactly once whatever the key's values: no row is missed or read twice.
 */
export interface KeyRange {
  lower?: Buffer[] | undefined;
  upper?: Buffer[] | undefined;
}

/** SQL condition for a range ("" for the whole table). */
export function rangePredicate(key: ColumnInfo[] | undefined, range: KeyRange): string {
  if (!key) return '';
  const parts: string[] = [];
  if (range.lower) parts.push(compare(key, range.lower, '>'));
  if (range.upper) parts.push(`NOT ${compare(key, range.upper, '>')}`);
  return parts.join(' AND ');
}

/**
 * (k1, k2, ...) > (v1, v2, ...) spelled out as (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ...: the
 * row-constructor form is not turned into an index range by every server version.
 */
function compare(key: ColumnInfo[], values: Buffer[], op: '>'): string {
  const terms: string[] = [];
  for (let i = 0; i < key.length; i++) {
    const eqs = key.slice(0, i).map((c, j) => `${quoteIdent(c.name)} = ${keyLiteral(c, values[j]!)}`);
    eqs.push(`${quoteIdent(key[i]!.name)} ${op} ${keyLiteral(key[i]!, values[i]!)}`);
    terms.push(eqs.length === 1 ? eqs[0]! : `(${eqs.join(' AND ')})`);
  }
  return terms.length === 1 ? terms[0]! : `(${terms.join(' OR ')})`;
}

async function oneRaw(
  server: Server,
  sql: string,
  signal?: AbortSignal,
): Promise<(Buffer | null)[] | undefined> {
  for await (const row of server.streamRaw(sql, signal)) return row;
  return undefined;
}

/**
 * Plans the ranges of one table, lazily, on `planner` (a session reading raw bytes). Boundaries
 * need not come from the copy's snapshot: the ranges are contiguous and open at both ends, so
 * rows inserted or deleted meanwhile still fall in exactly one range.
 */
export async function* planRanges(
  planner: Server,
  table: TableInfo,
  chunkRows: number,
  signal?: AbortSignal,
): AsyncIterable<KeyRange> {
  const key = table.chunkKey;
  if (!key || table.estimatedRows <= chunkRows) {
    yield {};
    return;
  }
  if (key.length === 1 && isInteger(key[0]!)) {
    yield* integerRanges(planner, table, key[0]!, chunkRows, signal);
    return;
  }
  const cols = key.map((c) => quoteIdent(c.name)).join(', ');
  const exprs = key.map(keyReadExpression).join(', ');
  let lower: Buffer[] | undefined;
  for (;;) {
    throwIfAborted(signal);
    const where = lower ? ` WHERE ${rangePredicate(key, { lower })}` : '';
    const row = await oneRaw(
      planner,
      `SELECT ${exprs} FROM ${tableName(table)}${where} ORDER BY ${cols} LIMIT 1 OFFSET ${chunkRows - 1}`,
      signal,
    );
    if (!row) {
      yield { lower };
      return;
    }
    const upper = row.map((v) => v ?? Buffer.alloc(0));
    yield { lower, upper };
    lower = upper;
  }
}

/**
 * A single integer key is split arithmetically between MIN and MAX, sized from the row estimate:
 * no index walk. Sparse or skewed keys make uneven chunks, never wrong ones.
 */
async function* integerRanges(
  planner: Server,
  table: TableInfo,
  column: ColumnInfo,
  chunkRows: number,
  signal?: AbortSignal,
): AsyncIterable<KeyRange> {
  const q = quoteIdent(column.name);
  const row = await oneRaw(planner, `SELECT MIN(${q}), MAX(${q}) FROM ${tableName(table)}`, signal);
  if (!row || !row[0] || !row[1]) {
    yield {};
    return;
  }
  const min = BigInt(row[0].toString());
  const max = BigInt(row[1].toString());
  const span = max - min + 1n;
  const chunks = BigInt(Math.max(1, Math.ceil(table.estimatedRows / chunkRows)));
  const width = span / chunks > 0n ? span / chunks : 1n;
  let lower: Buffer[] | undefined;
  for (let upper = min + width - 1n; upper < max; upper += width) {
    const u = [Buffer.from(upper.toString())];
    yield { lower, upper: u };
    lower = u;
  }
  yield { lower };
}
