import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Flavor } from '../mysql/flavor/index.js';
import { listObjects, objectLabel } from '../mysql/objects.js';
import type { Server } from '../mysql/server.js';
import { quoteIdent, quoteString } from '../mysql/server.js';
import { listSchemas } from '../mysql/tables.js';

/**
 * What an operation may change on one server, captured before its first change and compared
 * after any rollback: the comparison, not a sentence, is what "as they were" reports. Holds names,
 * states and hashes only: no data, no secret.
 */
export interface StateRecord {
  /** every user schema, with its tables; `checksums` only for the schemas the plan touches */
  schemas: Record<string, SchemaState>;
  replication: ReplicationState[];
  gtidSlavePos: string;
  gtidBinlogPos: string;
  readOnly: boolean;
  /** 'user'@'host' (or role) to a hash of its grants; only when the operation copies accounts */
  accounts?: Record<string, string>;
}

export interface SchemaState {
  /** table to a hash of its definition, and its CHECKSUM TABLE when the schema's data is at risk */
  tables: Record<string, { definition: string; checksum?: string }>;
  /** view/routine/trigger/event label to a hash of its definition */
  objects: Record<string, string>;
}

export interface ReplicationState {
  connection: string;
  source: string;
  user: string;
  usingGtid: boolean;
  ioOn: boolean;
  sqlOn: boolean;
  filters: string;
}

export interface CaptureOptions {
  flavor: Flavor;
  /** schemas whose rows are checksummed (the ones the operation moves or replaces) */
  dataSchemas: string[];
  /**
   * schemas, objects and GTID positions at all: false for a donor, whose data the operation never
   * writes and whose positions move on with its own clients
   */
  schemas: boolean;
  accounts: boolean;
  signal?: AbortSignal | undefined;
}

const hash = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16);

export async function captureState(s: Server, o: CaptureOptions): Promise<StateRecord> {
  const { flavor, signal } = o;
  const schemas: Record<string, SchemaState> = {};
  if (o.schemas) {
    const names = await listSchemas(s, signal);
    const objects = await listObjects(s, names, signal);
    for (const schema of names) {
      const tables: SchemaState['tables'] = {};
      const rows = await s.query(
        `SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW' ORDER BY 1`,
        [schema],
        signal,
      );
      for (const r of rows) {
        const name = String(r.n);
        const q = `${quoteIdent(schema)}.${quoteIdent(name)}`;
        const [c] = await s.query(`SHOW CREATE TABLE ${q}`, [], signal);
        const definition = hash(String(c?.['Create Table'] ?? '').replace(/ AUTO_INCREMENT=\d+/, ''));
        const t: SchemaState['tables'][string] = { definition };
        if (o.dataSchemas.includes(schema)) {
          const [k] = await s.query(`CHECKSUM TABLE ${q}`, [], signal);
          t.checksum = String(k?.Checksum ?? 'null');
        }
        tables[name] = t;
      }
      const mine: Record<string, string> = {};
      for (const obj of objects.filter((x) => x.schema === schema)) mine[objectLabel(obj)] = hash(obj.create);
      schemas[schema] = { tables, objects: mine };
    }
  }
  const replication: ReplicationState[] = [];
  for (const row of await s.query(flavor.allReplicaStatusSql, [], signal).catch(() => [])) {
    const r = flavor.parseReplicaStatus(row);
    replication.push({
      connection: r.connection,
      source: `${r.sourceHost}:${r.sourcePort}`,
      user: r.sourceUser,
      usingGtid: r.usingGtid,
      ioOn: r.ioRunning || r.ioConnecting,
      sqlOn: r.sqlRunning,
      filters: Object.entries(r.filters)
        .filter(([, v]) => v !== '')
        .map(([k, v]) => `${k}=${v}`)
        .join('; '),
    });
  }
  const one = async (sql: string) => (await s.query(sql, [], signal))[0];
  const slave = await one(flavor.replicaGtidPositionSql);
  const binlog = await one(flavor.currentGtidSql);
  const ro = await one('SELECT @@GLOBAL.read_only AS ro');
  const record: StateRecord = {
    schemas,
    replication,
    gtidSlavePos: o.schemas ? String(slave?.gtid ?? '') : '',
    gtidBinlogPos: o.schemas ? String(binlog?.gtid ?? '') : '',
    readOnly: Number(ro?.ro ?? 0) === 1,
  };
  if (o.accounts) {
    record.accounts = {};
    const users = await s.query(
      `SELECT User AS u, Host AS h FROM mysql.user WHERE User <> '' ORDER BY 1, 2`,
      [],
      signal,
    );
    for (const u of users) {
      const name = `'${String(u.u)}'@'${String(u.h)}'`;
      const account =
        String(u.h) === ''
          ? quoteString(String(u.u))
          : `${quoteString(String(u.u))}@${quoteString(String(u.h))}`;
      const grants = await s.query(`SHOW GRANTS FOR ${account}`, [], signal).catch(() => []);
      // Password hashes are hashed again with the grants: the record shows a change, never a hash.
      record.accounts[name] = hash(grants.map((x) => String(Object.values(x)[0])).join('\n'));
    }
  }
  return record;
}

/** The differences between two records of one server, one line each; empty when they match. */
export function compareState(before: StateRecord, after: StateRecord): string[] {
  const out: string[] = [];
  for (const [schema, b] of Object.entries(before.schemas)) {
    const a = after.schemas[schema];
    if (!a) {
      out.push(`schema ${schema} is gone`);
      continue;
    }
    for (const [t, bt] of Object.entries(b.tables)) {
      const at = a.tables[t];
      if (!at) out.push(`table ${schema}.${t} is gone`);
      else if (at.definition !== bt.definition) out.push(`table ${schema}.${t}: definition changed`);
      else if (bt.checksum !== undefined && at.checksum !== bt.checksum)
        out.push(
          `table ${schema}.${t}: contents changed (CHECKSUM TABLE ${bt.checksum} before, ${at.checksum} after)`,
        );
    }
    for (const t of Object.keys(a.tables)) if (!(t in b.tables)) out.push(`table ${schema}.${t} is new`);
    for (const [k, h] of Object.entries(b.objects)) {
      if (!(k in a.objects)) out.push(`${k} is gone`);
      else if (a.objects[k] !== h) out.push(`${k}: definition changed`);
    }
    for (const k of Object.keys(a.objects)) if (!(k in b.objects)) out.push(`${k} is new`);
  }
  for (const schema of Object.keys(after.schemas))
    if (!(schema in before.schemas)) out.push(`schema ${schema} is new`);
  out.push(...compareReplication(before, after));
  const running = before.replication.some((r) => r.ioOn || r.sqlOn);
  // A replica that runs again moves its position on: compared only when none ran.
  if (!running && before.gtidSlavePos !== after.gtidSlavePos)
    out.push(`gtid_slave_pos was '${before.gtidSlavePos}', now '${after.gtidSlavePos}'`);
  if (!running && before.gtidBinlogPos !== after.gtidBinlogPos)
    out.push(`binary log GTID position was '${before.gtidBinlogPos}', now '${after.gtidBinlogPos}'`);
  if (before.readOnly !== after.readOnly)
    out.push(`read_only was ${before.readOnly ? 'ON' : 'OFF'}, now ${after.readOnly ? 'ON' : 'OFF'}`);
  if (before.accounts && after.accounts) {
    for (const [k, h] of Object.entries(before.accounts)) {
      if (!(k in after.accounts)) out.push(`account ${k} is gone`);
      else if (after.accounts[k] !== h) out.push(`account ${k}: grants or password changed`);
    }
    for (const k of Object.keys(after.accounts)) if (!(k in before.accounts)) out.push(`account ${k} is new`);
  }
  return out;
}

function compareReplication(before: StateRecord, after: StateRecord): string[] {
  const out: string[] = [];
  const name = (c: string) => (c === '' ? 'replication' : `replication connection '${c}'`);
  const threads = (r: ReplicationState) =>
    r.ioOn && r.sqlOn
      ? 'running'
      : !r.ioOn && !r.sqlOn
        ? 'stopped'
        : r.ioOn
          ? 'I/O thread only'
          : 'SQL thread only';
  for (const b of before.replication) {
    const a = after.replication.find((x) => x.connection === b.connection);
    if (!a) {
      out.push(`${name(b.connection)} from ${b.source} is gone`);
      continue;
    }
    for (const k of ['source', 'user', 'usingGtid', 'filters'] as const)
      if (a[k] !== b[k]) out.push(`${name(b.connection)}: ${k} was ${String(b[k])}, now ${String(a[k])}`);
    if (threads(a) !== threads(b)) out.push(`${name(b.connection)} was ${threads(b)}, now ${threads(a)}`);
  }
  for (const a of after.replication)
    if (!before.replication.some((b) => b.connection === a.connection))
      out.push(`${name(a.connection)} from ${a.source} is new`);
  return out;
}

/**
 * Replica threads restarted by an undo take a moment to report running: the replication part is
 * read again for up to `waitMs` until it matches.
 */
export async function settledReplication(
  s: Server,
  flavor: Flavor,
  before: StateRecord,
  waitMs = 10_000,
): Promise<ReplicationState[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const now = await captureState(s, { flavor, dataSchemas: [], schemas: false, accounts: false });
    const diff = compareReplication(before, now);
    if (diff.length === 0 || Date.now() > deadline) return now.replication;
    await sleep(250);
  }
}
