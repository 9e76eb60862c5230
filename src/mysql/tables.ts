import { ReseedError } from '../errors.js';
import type { Server } from './server.js';
import { quoteIdent } from './server.js';

export const SYSTEM_SCHEMAS = ['mysql', 'information_schema', 'performance_schema', 'sys'];

export interface ColumnInfo {
  name: string;
  /** information_schema DATA_TYPE, lower case: "int", "varchar", "float", "bit"... */
  dataType: string;
  generated: boolean;
  /** IS_NULLABLE */
  nullable: boolean;
  charset: string | null;
  collation: string | null;
}

export interface TableInfo {
  schema: string;
  name: string;
  engine: string;
  /** the server's estimate, for progress and planning only */
  estimatedRows: number;
  dataBytes: number;
  /** all columns in table order */
  columns: ColumnInfo[];
  /** stored (non-generated) columns: what is copied */
  stored: ColumnInfo[];
  /** the key that orders and splits the table: the primary key, else a unique NOT NULL key */
  chunkKey: ColumnInfo[] | undefined;
  /** the chunk key is the table's PRIMARY KEY (an index scan of it returns rows in key order) */
  chunkKeyIsPrimary: boolean;
  /**
   * MariaDB WITH SYSTEM VERSIONING: rows are read FOR SYSTEM_TIME ALL (history included), and
   * `stored` ends with the row start and row end columns, which the joiner's load sessions may
   * write (system_versioning_insert_history).
   */
  versioned: boolean;
}

export function tableName(t: Pick<TableInfo, 'schema' | 'name'>): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

/** The table as the copy and verify read it: every row version of a system-versioned table. */
export function rowSource(t: Pick<TableInfo, 'schema' | 'name' | 'versioned'>): string {
  return `${tableName(t)}${t.versioned ? ' FOR SYSTEM_TIME ALL' : ''}`;
}

export function displayName(t: Pick<TableInfo, 'schema' | 'name'>): string {
  return `${t.schema}.${t.name}`;
}

const INTEGER_TYPES = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint']);
const NUMERIC_TYPES = new Set([...INTEGER_TYPES, 'decimal', 'numeric', 'double', 'real']);
const BINARY_TYPES = new Set(['binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob']);

export function isInteger(c: ColumnInfo): boolean {
  return INTEGER_TYPES.has(c.dataType);
}

/**
 * How a column is read so that its text survives a round trip exactly. FLOAT prints with six
 * digits (16777217 shows as 16777200), so it is read as DOUBLE, which prints the shortest text
 * that parses back to the same value. BIT and ENUM/SET are read as numbers.
 */
export function readExpression(c: ColumnInfo): string {
  const q = quoteIdent(c.name);
  if (c.dataType === 'float') return `CAST(${q} AS DOUBLE)`;
  if (c.dataType === 'bit') return `CAST(${q} AS UNSIGNED)`;
  return q;
}

/**
 * How a key column is read for chunk boundaries. ENUM and SET sort by their index number, not by
 * their text, so their boundaries are read (and compared) as numbers.
 */
export function keyReadExpression(c: ColumnInfo): string {
  if (c.dataType === 'enum' || c.dataType === 'set') return `(${quoteIdent(c.name)} + 0)`;
  return readExpression(c);
}

/** How a key value read with keyReadExpression is written back into SQL as a literal. */
export function keyLiteral(c: ColumnInfo, raw: Buffer): string {
  const text = raw.toString('latin1');
  if (NUMERIC_TYPES.has(c.dataType) || ['float', 'bit', 'enum', 'set'].includes(c.dataType)) {
    if (!/^[-+0-9.eE]+$/.test(text))
      throw new ReseedError('COPY_FAILED', `unexpected numeric key value for ${c.name}`);
    return text;
  }
  if (BINARY_TYPES.has(c.dataType)) return `X'${raw.toString('hex')}'`;
  if (c.charset && c.collation) {
    // The literal carries the column's own character set and collation, so it sorts exactly as
    // the key does (a binary literal would compare bytes and split a _ci key in the wrong place).
    return `_${c.charset} X'${raw.toString('hex')}' COLLATE ${c.collation}`;
  }
  return `'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

export async function listTables(
  meta: Server,
  schemas: string[],
  signal?: AbortSignal,
): Promise<TableInfo[]> {
  if (schemas.length === 0) return [];
  const marks = schemas.map(() => '?').join(', ');
  const tables = await meta.query(
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, ENGINE AS engine, IFNULL(TABLE_ROWS, 0) AS r,
            IFNULL(DATA_LENGTH, 0) AS bytes, TABLE_TYPE = 'SYSTEM VERSIONED' AS versioned
       FROM information_schema.TABLES
      WHERE TABLE_SCHEMA IN (${marks}) AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
      ORDER BY TABLE_SCHEMA, TABLE_NAME`,
    schemas,
    signal,
  );
  const columns = await meta.query(
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, COLUMN_NAME AS c, DATA_TYPE AS type,
            EXTRA AS extra, CHARACTER_SET_NAME AS cs, COLLATION_NAME AS coll,
            GENERATION_EXPRESSION AS expr, IS_NULLABLE AS nullable
       FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN (${marks})
      ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION`,
    schemas,
    signal,
  );
  const keys = await meta.query(
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, INDEX_NAME AS i, COLUMN_NAME AS c, SUB_PART AS sub,
            NULLABLE AS nullable
       FROM information_schema.STATISTICS WHERE TABLE_SCHEMA IN (${marks}) AND NON_UNIQUE = 0
      ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`,
    schemas,
    signal,
  );
  const byTable = new Map<string, ColumnInfo[]>();
  const explicitPeriod = new Set<string>();
  for (const c of columns) {
    const id = `${String(c.s)}\0${String(c.t)}`;
    if (/^ROW (START|END)$/i.test(String(c.expr ?? ''))) explicitPeriod.add(id);
    const list = byTable.get(id) ?? [];
    list.push({
      name: String(c.c),
      dataType: String(c.type).toLowerCase(),
      // The period columns of a versioned table (ROW START/END) are data: copied, not computed.
      generated: /GENERATED/i.test(String(c.extra ?? '')) && !/^ROW (START|END)$/i.test(String(c.expr ?? '')),
      nullable: String(c.nullable) === 'YES',
      charset: c.cs === null ? null : String(c.cs),
      collation: c.coll === null ? null : String(c.coll),
    });
    byTable.set(id, list);
  }
  const indexes = new Map<string, Map<string, { cols: string[]; usable: boolean }>>();
  for (const k of keys) {
    const id = `${String(k.s)}\0${String(k.t)}`;
    const perTable = indexes.get(id) ?? new Map<string, { cols: string[]; usable: boolean }>();
    const index = perTable.get(String(k.i)) ?? { cols: [], usable: true };
    index.cols.push(String(k.c));
    // A prefix or nullable column cannot order rows uniquely.
    if (k.sub !== null || String(k.nullable) === 'YES') index.usable = false;
    perTable.set(String(k.i), index);
    indexes.set(id, perTable);
  }
  return tables.map((t) => {
    const id = `${String(t.s)}\0${String(t.t)}`;
    const versioned = Number(t.versioned) === 1;
    const cols = [...(byTable.get(id) ?? [])];
    // Implicit period columns are not in information_schema.COLUMNS; they answer to these names.
    if (versioned && !explicitPeriod.has(id)) {
      for (const name of ['row_start', 'row_end'])
        cols.push({
          name,
          dataType: 'timestamp',
          generated: false,
          nullable: false,
          charset: null,
          collation: null,
        });
    }
    const candidates = [
      ...(indexes.get(id) ?? new Map<string, { cols: string[]; usable: boolean }>()).entries(),
    ]
      .filter(([, ix]) => ix.usable)
      .sort(([a, x], [b, y]) => (a === 'PRIMARY' ? -1 : b === 'PRIMARY' ? 1 : x.cols.length - y.cols.length));
    const key = candidates[0]?.[1].cols.map((name) => cols.find((c) => c.name === name)!);
    const usableKey =
      key && key.every((c) => c && !['geometry', 'json'].includes(c.dataType)) ? key : undefined;
    return {
      schema: String(t.s),
      name: String(t.t),
      engine: String(t.engine ?? ''),
      estimatedRows: Number(t.r),
      dataBytes: Number(t.bytes),
      columns: cols,
      stored: cols.filter((c) => !c.generated),
      chunkKey: usableKey,
      chunkKeyIsPrimary: usableKey !== undefined && candidates[0]?.[0] === 'PRIMARY',
      versioned,
    };
  });
}

/**
 * Every table of the schemas with its TABLE_TYPE ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE',
 * 'VIEW') and engine, from one light query (no columns or keys, unlike listTables).
 */
export async function listTableKinds(
  meta: Server,
  schemas: string[],
  signal?: AbortSignal,
): Promise<{ schema: string; name: string; type: string; engine: string }[]> {
  if (schemas.length === 0) return [];
  const rows = await meta.query(
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, TABLE_TYPE AS type, IFNULL(ENGINE, '') AS engine
       FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (${schemas.map(() => '?').join(', ')})
      ORDER BY TABLE_SCHEMA, TABLE_NAME`,
    schemas,
    signal,
  );
  return rows.map((r) => ({
    schema: String(r.s),
    name: String(r.t),
    type: String(r.type),
    engine: String(r.engine),
  }));
}

/** User schemas on a server: everything but the system schemas. */
export async function listSchemas(meta: Server, signal?: AbortSignal): Promise<string[]> {
  const rows = await meta.query(
    `SELECT SCHEMA_NAME AS s FROM information_schema.SCHEMATA
      WHERE SCHEMA_NAME NOT IN (${SYSTEM_SCHEMAS.map(() => '?').join(', ')}) ORDER BY SCHEMA_NAME`,
    SYSTEM_SCHEMAS,
    signal,
  );
  return rows.map((r) => String(r.s));
}
