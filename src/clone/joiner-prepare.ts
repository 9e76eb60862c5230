import type { Journal } from '../journal/journal.js';
import type { Server } from '../mysql/server.js';
import { quoteIdent, quoteString } from '../mysql/server.js';
import { dropStatement, listObjects } from '../mysql/objects.js';
import { listTables } from '../mysql/tables.js';

export interface JoinerSchemaState {
  schema: string;
  /** tables, views, routines, triggers and events: an empty schema is not user data */
  objects: number;
}

export async function joinerSchemas(
  meta: Server,
  schemas: string[],
  signal?: AbortSignal,
): Promise<JoinerSchemaState[]> {
  const out: JoinerSchemaState[] = [];
  for (const schema of schemas) {
    const [row] = await meta.query(
      `SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?)
            + (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?)
            + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?) AS n`,
      [schema, schema, schema],
      signal,
    );
    out.push({ schema, objects: Number(row?.n ?? 0) });
  }
  return out;
}

/** A name for the schema that holds a moved-aside schema's tables until the clone succeeds. */
export function asideName(journalId: string, index: number): string {
  return `reseed_aside_${journalId.replace(/[^0-9a-z]/gi, '').slice(-12)}_${index}`;
}

/**
 * Moves a joiner schema out of the way (for --force): its tables are renamed into an aside
 * schema (instant, whatever their size), its views, routines, triggers and events are saved in
 * the journal and dropped. The journal's undo puts everything back; after a successful clone
 * the aside schema is dropped.
 */
export async function moveAside(args: {
  meta: Server;
  schema: string;
  aside: string;
  journal: Journal;
  signal?: AbortSignal | undefined;
}): Promise<void> {
  const { meta, schema, aside, journal, signal } = args;
  const [db] = await meta.query(`SHOW CREATE DATABASE ${quoteIdent(schema)}`, [], signal);
  const createDb = String(db?.['Create Database'] ?? `CREATE DATABASE ${quoteIdent(schema)}`);
  const tables = await listTables(meta, [schema], signal);
  const objects = await listObjects(meta, [schema], signal);
  const triggersFirst = objects.filter((o) => o.kind === 'trigger');
  const undo: string[] = [
    `DROP DATABASE IF EXISTS ${quoteIdent(schema)}`,
    createDb.replace(/^CREATE DATABASE /, 'CREATE DATABASE IF NOT EXISTS '),
    ...tables.map(
      (t) =>
        `RENAME TABLE ${quoteIdent(aside)}.${quoteIdent(t.name)} TO ${quoteIdent(schema)}.${quoteIdent(t.name)}`,
    ),
    `DROP DATABASE IF EXISTS ${quoteIdent(aside)}`,
  ];
  for (const o of objects) {
    // Replayed with the object's sql_mode; a definer that is gone makes a warning, not an error.
    undo.push(`USE ${quoteIdent(schema)}`);
    if (o.sqlMode !== undefined) undo.push(`SET SESSION sql_mode = ${quoteString(o.sqlMode)}`);
    undo.push(o.create);
  }
  await journal.apply(
    `move joiner schema ${schema} aside to ${aside}`,
    { target: 'joiner', statements: undo },
    async () => {
      await meta.query(`CREATE DATABASE ${quoteIdent(aside)}`, [], signal);
      // Triggers cannot move with their table across schemas; they are recreated by the undo.
      for (const t of triggersFirst) await meta.query(dropStatement(t), [], signal);
      for (const t of tables) {
        await meta.query(
          `RENAME TABLE ${quoteIdent(schema)}.${quoteIdent(t.name)} TO ${quoteIdent(aside)}.${quoteIdent(t.name)}`,
          [],
          signal,
        );
      }
      await meta.query(`DROP DATABASE ${quoteIdent(schema)}`, [], signal);
    },
  );
}
