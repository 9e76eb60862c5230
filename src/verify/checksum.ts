import type { KeyRange } from '../mysql/chunking.js';
import { rangePredicate } from '../mysql/chunking.js';
import type { Server } from '../mysql/server.js';
import type { ColumnInfo, TableInfo } from '../mysql/tables.js';
import { displayName, readExpression, rowSource, tableName } from '../mysql/tables.js';
import { ReseedError } from '../errors.js';

export interface ChunkChecksum {
  rows: number;
  /** 'ordered': SHA-256 of the chunk's rows in key order; 'sum': the exact sum of the rows' 64-bit hashes */
  kind: 'ordered' | 'sum';
  /** compares only with a fingerprint of the same kind */
  hash: string;
}

/**
 * Types whose text form is digits, signs, dots, colons, dashes and spaces: never the separator
 * byte 0xFF or the NULL mark 0xFE.
 */
const PLAIN_TYPES = new Set([
  ...['tinyint', 'smallint', 'mediumint', 'int', 'bigint', 'decimal', 'float', 'double', 'bit', 'year'],
  ...['date', 'time', 'datetime', 'timestamp'],
]);

/** Character sets in which the bytes 0xFD, 0xFE and 0xFF never occur in a stored value. */
const UTF8_SETS = new Set(['utf8', 'utf8mb3', 'utf8mb4', 'ascii']);

/** Types that can hold values bigger than max_allowed_packet. */
const LOB_TYPES = new Set([
  ...['tinytext', 'text', 'mediumtext', 'longtext', 'tinyblob', 'blob', 'mediumblob', 'longblob'],
  ...['json', 'geometry', 'point', 'linestring', 'polygon'],
  ...['multipoint', 'multilinestring', 'multipolygon', 'geometrycollection'],
]);

const SEPARATOR = "CAST(X'FF' AS BINARY)";
const NULL_MARK = "CAST(X'FE' AS BINARY)";
const HASHED_MARK = "CAST(X'FD' AS BINARY)";
const ROW_SEPARATOR = "X'FC'";

/**
 * One column's part of a row's serialization. The serialization is unambiguous: parts are joined
 * by the byte 0xFF, a NULL is the single byte 0xFE, and
 * - a number, a date or a UTF-8/ASCII text enters as its text, which holds none of those bytes;
 * - any other value (binary, latin1 text...) enters as `length:bytes`, so its own 0xFF bytes
 *   cannot be mistaken for a separator;
 * - a value of a LOB type longer than `longBytes` enters as its SHA-256 instead (marked 0xFD for
 *   text, `length#` for bytes), which keeps the row's serialization under max_allowed_packet
 *   (a longer CONCAT would be NULL).
 * Values are read as the copy reads them (FLOAT as DOUBLE...), so an exact copy hashes the same.
 */
function columnPart(c: ColumnInfo, longBytes: number): string {
  const e = readExpression(c);
  const text = PLAIN_TYPES.has(c.dataType) || (c.charset !== null && UTF8_SETS.has(c.charset));
  const lob = LOB_TYPES.has(c.dataType);
  let part: string;
  if (text && !lob) part = e;
  else if (text) part = `IF(LENGTH(${e}) > ${longBytes}, CONCAT(${HASHED_MARK}, SHA2(${e}, 256)), ${e})`;
  else if (!lob) part = `CONCAT(LENGTH(${e}), ':', ${e})`;
  else
    part =
      `IF(LENGTH(${e}) > ${longBytes}, CONCAT(LENGTH(${e}), '#', SHA2(${e}, 256)), ` +
      `CONCAT(LENGTH(${e}), ':', ${e}))`;
  return c.nullable ? `IFNULL(${part}, ${NULL_MARK})` : part;
}

/**
 * The longest LOB value that enters a row's serialization as it is: the row's other columns
 * (at most 64 KiB outside LOBs) and every LOB at this size still fit in `maxPacket`.
 */
export function longValueBytes(table: TableInfo, maxPacket: number): number {
  const lobs = table.columns.filter((c) => LOB_TYPES.has(c.dataType)).length;
  // 64 KiB of non-LOB columns, and each column's length prefix, separator and NULL mark
  const rest = 65_536 + 32 * table.columns.length;
  return Math.max(64, Math.floor((maxPacket - rest) / Math.max(1, lobs)) - 80);
}

/** A row's serialization: its columns' parts joined by the byte 0xFF. */
function rowSerialization(table: TableInfo, longBytes: number): string {
  return `CONCAT_WS(${SEPARATOR}, ${table.columns.map((c) => columnPart(c, longBytes)).join(', ')})`;
}

/** The first 64 bits of SHA-256 of the row's serialization, as 16 hex digits. */
function rowHash(table: TableInfo, longBytes: number): string {
  return `LEFT(SHA2(${rowSerialization(table, longBytes)}, 256), 16)`;
}

/**
 * The order-free fingerprint: the row count and the exact SUM of the rows' 64-bit hashes. A hash
 * without structure makes a difference go unnoticed with a probability of about 2^-64, whatever
 * the difference is; an exact SUM (not XOR) also sees duplicate rows, which XOR would cancel in
 * pairs. Any table, any row order.
 */
export function checksumSql(table: TableInfo, range: KeyRange, longBytes: number): string {
  const where = rangePredicate(table.chunkKey, range);
  return (
    `SELECT COUNT(*) AS n, ` +
    `IFNULL(SUM(CAST(CONV(${rowHash(table, longBytes)}, 16, 10) AS UNSIGNED)), 0) AS h ` +
    `FROM ${rowSource(table)}${where ? ` WHERE ${where}` : ''}`
  );
}

/**
 * The ordered fingerprint, about a third cheaper again than hashing each row (docs/performance.md):
 * one SHA-256 of the chunk's rows serialized in primary-key order (the PRIMARY index is forced,
 * so both servers read the same order), rows joined by the byte 0xFC. The whole is uniquely
 * decodable given the columns (a part is either text without the bytes 0xFC-0xFF or
 * `length:bytes`), so any change to the chunk changes what is hashed: 256 bits, no structure.
 * Only for a table whose chunk key is its primary key, not system-versioned; the chunk must fit
 * group_concat_max_len (verifyChunkRows sizes it so; a longer one is cut, with a warning, and is
 * fingerprinted order-free instead).
 */
export function orderedChecksumSql(table: TableInfo, range: KeyRange, longBytes: number): string {
  const where = rangePredicate(table.chunkKey, range);
  return (
    `SELECT COUNT(*) AS n, SHA2(GROUP_CONCAT(${rowSerialization(table, longBytes)} SEPARATOR ${ROW_SEPARATOR}), 256) AS h ` +
    `FROM ${tableName(table)} FORCE INDEX (PRIMARY)${where ? ` WHERE ${where}` : ''}`
  );
}

export function canOrder(table: TableInfo): boolean {
  return table.chunkKeyIsPrimary && !table.versioned;
}

/** What a chunk's ordered serialization may reach: the server holds it while it hashes it. */
const CHUNK_BYTES = 16 << 20;

/**
 * group_concat_max_len for verify's sessions: room for a chunk of CHUNK_BYTES with margin for a
 * chunk whose rows are longer than the table's average. What a session holds is the chunk's
 * actual serialization, not this bound.
 */
export function groupConcatSql(): string {
  return `SET SESSION group_concat_max_len = ${4 * CHUNK_BYTES}`;
}

/**
 * Rows per chunk for a table fingerprinted in order: at most `chunkRows`, and few enough that
 * the chunk's serialization stays near CHUNK_BYTES, estimated from the table's average row
 * (text forms of numbers and the separators can double it). Order-free tables keep `chunkRows`.
 */
export function verifyChunkRows(table: TableInfo, chunkRows: number): number {
  if (!canOrder(table)) return chunkRows;
  // A table's statistics before its first rows (or after a bulk load) say little: a page of 16 KiB
  // for 0 rows is not a 16 KiB row. A chunk longer than the estimate is cut and hashed order-free.
  const average = table.estimatedRows >= 100 ? table.dataBytes / table.estimatedRows : 256;
  const rowBytes = 2 * average + 8 * table.columns.length;
  return Math.max(1, Math.min(chunkRows, Math.floor(CHUNK_BYTES / Math.max(1, rowBytes))));
}

/**
 * A chunk's fingerprint: ordered where the table allows it (kind 'o'), else, or when the server
 * warned (a cut GROUP_CONCAT, a row too long to serialize), order-free (kind 's'). `mode`
 * 'order-free' forces the latter: comparing two sides whose kinds or ordered hashes differ.
 */
export async function chunkChecksum(
  server: Server,
  table: TableInfo,
  range: KeyRange,
  longBytes: number,
  signal?: AbortSignal,
  mode: 'auto' | 'order-free' = 'auto',
): Promise<ChunkChecksum> {
  if (mode === 'auto' && canOrder(table)) {
    const [row] = await server.query(orderedChecksumSql(table, range, longBytes), [], signal);
    const [w] = await server.query('SELECT @@warning_count AS w', [], signal);
    if (Number(w?.w ?? 0) === 0)
      return { rows: Number(row?.n ?? 0), kind: 'ordered', hash: String(row?.h ?? '') };
  }
  const [row] = await server.query(checksumSql(table, range, longBytes), [], signal);
  const [w] = await server.query('SELECT @@warning_count AS w', [], signal);
  if (Number(w?.w ?? 0) !== 0) {
    const [warning] = await server.query('SHOW WARNINGS', [], signal);
    throw new ReseedError(
      'VERIFY_FAILED',
      `${displayName(table)}: the server warned while hashing a chunk (${String(warning?.Message ?? 'unknown')}); its rows cannot be compared`,
      { hints: ['raise max_allowed_packet on both servers, and run verify again'] },
    );
  }
  return { rows: Number(row?.n ?? 0), kind: 'sum', hash: String(row?.h ?? '') };
}
