import { ReseedError } from '../errors.js';
import type { Journal } from '../journal/journal.js';
import type { Server } from '../mysql/server.js';
import { quoteIdent } from '../mysql/server.js';
import { dropStatement, listObjects, schemaObjectCount } from '../mysql/objects.js';
import { faultPoint } from '../fault.js';
import { undoOp } from './undo.js';

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
  for (const schema of schemas) out.push({ schema, objects: await schemaObjectCount(meta, schema, signal) });
  return out;
}

/** A name for the schema that holds a moved-aside schema's tables until the clone succeeds. */
export function asideName(journalId: string, index: number): string {
  return `reseed_aside_${journalId.replace(/[^0-9a-z]/gi, '').slice(-12)}_${index}`;
}

async function createDatabaseStatement(meta: Server, schema: string, signal?: AbortSignal): Promise<string> {
  const [db] = await meta.query(`SHOW CREATE DATABASE ${quoteIdent(schema)}`, [], signal);
  return String(db?.['Create Database'] ?? `CREATE DATABASE ${quoteIdent(schema)}`).replace(
    /^CREATE DATABASE /,
    'CREATE DATABASE IF NOT EXISTS ',
  );
}

/**
 * Moves joiner schemas out of the way (--force), in four journaled steps whose undos look before
 * they act, so an interrupt at any point is undone without losing anything:
 *  1. make the aside schemas (undo: drop each only if it is empty);
 *  2. save every view, routine, trigger and event, and drop the triggers, which cannot move with
 *     their table (undo: make them all again, once every table is back);
 *  3. move every table into its aside schema with one RENAME TABLE, which the server does whole
 *     or not at all (undo: move back exactly the tables that are in the aside schemas);
 *  4. drop the emptied schemas, refused if a table is still there (undo: make them again).
 * Nothing holding data is ever dropped here; the asides go once the clone has succeeded.
 */
export async function moveAside(args: {
  meta: Server;
  schemas: { schema: string; aside: string }[];
  journal: Journal;
  signal?: AbortSignal | undefined;
}): Promise<void> {
  const { meta, schemas, journal, signal } = args;
  if (schemas.length === 0) return;
  const names = schemas.map((s) => s.schema);
  const creates = new Map<string, string>();
  for (const s of names) creates.set(s, await createDatabaseStatement(meta, s, signal));
  const tables = new Map<string, string[]>();
  for (const s of names) {
    const rows = await meta.query(
      `SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW' ORDER BY 1`,
      [s],
      signal,
    );
    tables.set(
      s,
      rows.map((r) => String(r.n)),
    );
  }
  // Sequences are tables: they move with the rest.
  const objects = (await listObjects(meta, names, signal)).filter((o) => o.kind !== 'sequence');
  const label = names.join(', ');

  for (const { aside } of schemas) {
    await journal.apply(
      `create ${aside} on the joiner to hold moved-aside tables`,
      { target: 'joiner', op: undoOp({ kind: 'drop-schema-if-empty', schema: aside }) },
      () => meta.query(`CREATE DATABASE ${quoteIdent(aside)}`, [], signal),
    );
  }
  await journal.apply(
    `save ${objects.length} view(s), routine(s), trigger(s) and event(s) of ${label} and drop their triggers`,
    { target: 'joiner', op: undoOp({ kind: 'recreate-objects', objects }) },
    async () => {
      for (const t of objects.filter((o) => o.kind === 'trigger'))
        await meta.query(dropStatement(t), [], signal);
    },
  );
  faultPoint('move-aside:objects-saved');
  const moves = schemas.flatMap(({ schema, aside }) =>
    tables.get(schema)!.map((t) => ({ schema, aside, t })),
  );
  if (moves.length > 0) {
    await journal.apply(
      `move ${moves.length} table(s) of ${label} aside`,
      {
        target: 'joiner',
        op: undoOp({
          kind: 'rename-back-all',
          moves: schemas.map(({ schema, aside }) => ({
            from: aside,
            to: schema,
            tables: tables.get(schema)!,
            createSchema: creates.get(schema)!,
          })),
        }),
      },
      () =>
        meta.query(
          `RENAME TABLE ${moves
            .map(
              (m) =>
                `${quoteIdent(m.schema)}.${quoteIdent(m.t)} TO ${quoteIdent(m.aside)}.${quoteIdent(m.t)}`,
            )
            .join(', ')}`,
          [],
          signal,
        ),
    );
  }
  faultPoint('move-aside:tables-moved');
  await journal.apply(
    `drop the emptied schema(s) ${label} on the joiner`,
    { target: 'joiner', statements: [...creates.values()] },
    async () => {
      for (const s of names) {
        const [row] = await meta.query(
          `SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW'`,
          [s],
          signal,
        );
        if (Number(row?.n ?? 0) > 0)
          throw new ReseedError('COPY_FAILED', `schema ${s} on the joiner still holds tables after the move`);
        await meta.query(`DROP DATABASE ${quoteIdent(s)}`, [], signal);
      }
    },
  );
}
