import type { Server } from './server.js';
import { listTableKinds } from './tables.js';
import { quoteIdent, quoteString } from './server.js';

export type ObjectKind = 'sequence' | 'view' | 'procedure' | 'function' | 'trigger' | 'event';

/** A schema object as SHOW CREATE gives it, with the session settings it was created under. */
export interface SchemaObject {
  kind: ObjectKind;
  schema: string;
  name: string;
  create: string;
  sqlMode: string | undefined;
  collationConnection: string | undefined;
  timeZone: string | undefined;
}

const SHOW: Record<ObjectKind, { show: string; column: string }> = {
  sequence: { show: 'SHOW CREATE SEQUENCE', column: 'Create Table' },
  view: { show: 'SHOW CREATE VIEW', column: 'Create View' },
  procedure: { show: 'SHOW CREATE PROCEDURE', column: 'Create Procedure' },
  function: { show: 'SHOW CREATE FUNCTION', column: 'Create Function' },
  trigger: { show: 'SHOW CREATE TRIGGER', column: 'SQL Original Statement' },
  event: { show: 'SHOW CREATE EVENT', column: 'Create Event' },
};

/**
 * Objects of the schemas by kind: sequences (MariaDB), views, routines, triggers (in firing
 * order), events. Not an order to create them in: createObjects (methods/logical/schema.ts)
 * creates routines before views, which may call functions.
 */
export async function listObjects(
  meta: Server,
  schemas: string[],
  signal?: AbortSignal,
): Promise<SchemaObject[]> {
  if (schemas.length === 0) return [];
  const marks = schemas.map(() => '?').join(', ');
  const names: { kind: ObjectKind; schema: string; name: string }[] = (
    await listTableKinds(meta, schemas, signal)
  )
    .filter((t) => t.type === 'SEQUENCE')
    .map((t) => ({ kind: 'sequence', schema: t.schema, name: t.name }));
  const views = await meta.query(
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS n FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN (${marks}) ORDER BY 1, 2`,
    schemas,
    signal,
  );
  for (const r of views) names.push({ kind: 'view', schema: String(r.s), name: String(r.n) });
  const routines = await meta.query(
    `SELECT ROUTINE_SCHEMA AS s, ROUTINE_NAME AS n, ROUTINE_TYPE AS k FROM information_schema.ROUTINES
      WHERE ROUTINE_SCHEMA IN (${marks}) AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION') ORDER BY 1, 3, 2`,
    schemas,
    signal,
  );
  for (const r of routines) {
    names.push({
      kind: String(r.k) === 'PROCEDURE' ? 'procedure' : 'function',
      schema: String(r.s),
      name: String(r.n),
    });
  }
  const triggers = await meta.query(
    `SELECT TRIGGER_SCHEMA AS s, TRIGGER_NAME AS n FROM information_schema.TRIGGERS
      WHERE TRIGGER_SCHEMA IN (${marks})
      ORDER BY TRIGGER_SCHEMA, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER`,
    schemas,
    signal,
  );
  for (const r of triggers) names.push({ kind: 'trigger', schema: String(r.s), name: String(r.n) });
  const events = await meta.query(
    `SELECT EVENT_SCHEMA AS s, EVENT_NAME AS n FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN (${marks}) ORDER BY 1, 2`,
    schemas,
    signal,
  );
  for (const r of events) names.push({ kind: 'event', schema: String(r.s), name: String(r.n) });

  const out: SchemaObject[] = [];
  for (const n of names) {
    const { show, column } = SHOW[n.kind];
    const [row] = await meta.query(`${show} ${quoteIdent(n.schema)}.${quoteIdent(n.name)}`, [], signal);
    if (!row) continue;
    out.push({
      ...n,
      create: String(row[column]),
      sqlMode: row.sql_mode === undefined ? undefined : String(row.sql_mode),
      collationConnection:
        row.collation_connection === undefined ? undefined : String(row.collation_connection),
      timeZone: row.time_zone === undefined ? undefined : String(row.time_zone),
    });
  }
  return out;
}

/** Creates an object under the sql_mode, collation and time zone it was defined with. */
export async function createObject(server: Server, o: SchemaObject, signal?: AbortSignal): Promise<void> {
  await server.query(`USE ${quoteIdent(o.schema)}`, [], signal);
  const settings: string[] = [];
  if (o.sqlMode !== undefined) settings.push(`sql_mode = ${quoteString(o.sqlMode)}`);
  if (o.collationConnection) settings.push(`collation_connection = ${quoteString(o.collationConnection)}`);
  if (o.timeZone) settings.push(`time_zone = ${quoteString(o.timeZone)}`);
  if (settings.length) await server.query(`SET SESSION ${settings.join(', ')}`, [], signal);
  await server.query(o.create, [], signal);
}

export function objectLabel(o: Pick<SchemaObject, 'kind' | 'schema' | 'name'>): string {
  return `${o.kind} ${o.schema}.${o.name}`;
}

/** The DROP statement for an object (used by undo and --force). */
export function dropStatement(o: Pick<SchemaObject, 'kind' | 'schema' | 'name'>): string {
  return `DROP ${o.kind.toUpperCase()} IF EXISTS ${quoteIdent(o.schema)}.${quoteIdent(o.name)}`;
}

/** Tables (and views), routines and events of a schema: none means it holds no user data. */
export async function schemaObjectCount(meta: Server, schema: string, signal?: AbortSignal): Promise<number> {
  const [row] = await meta.query(
    `SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?)
          + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?)
          + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?) AS n`,
    [schema, schema, schema],
    signal,
  );
  return Number(row?.n ?? 0);
}
