import { ReseedError, errorMessage } from '../../errors.js';
import type { Journal } from '../../journal/journal.js';
import type { Flavor } from '../../mysql/flavor/index.js';
import type { ObjectKind, SchemaObject } from '../../mysql/objects.js';
import { createObject, dropStatement, objectLabel } from '../../mysql/objects.js';
import type { Server } from '../../mysql/server.js';
import { quoteIdent, sqlErrno } from '../../mysql/server.js';
import type { TableInfo } from '../../mysql/tables.js';
import { tableName } from '../../mysql/tables.js';
import { splitSecondaryIndexes } from './deferred-indexes.js';

/**
 * Creates the schemas and their tables on the joiner, as SHOW CREATE gives them on the donor,
 * less the secondary indexes that are better built after the rows (returned per table).
 */
export async function createTables(args: {
  donor: Server;
  joiner: Server;
  schemas: string[];
  tables: TableInfo[];
  /** sequences with their next value at the snapshot, created before the tables */
  sequences: { object: SchemaObject; next: string }[];
  journal: Journal;
  deferIndexes: boolean;
  signal?: AbortSignal | undefined;
}): Promise<Map<TableInfo, string[]>> {
  const { donor, joiner, schemas, tables, journal, signal } = args;
  const deferred = new Map<TableInfo, string[]>();
  for (const schema of schemas) {
    const [row] = await donor.query(`SHOW CREATE DATABASE ${quoteIdent(schema)}`, [], signal);
    const create = String(row?.['Create Database']);
    await journal.apply(
      `create schema ${schema} on the joiner`,
      { target: 'joiner', statements: [`DROP DATABASE IF EXISTS ${quoteIdent(schema)}`] },
      () => joiner.query(create, [], signal),
    );
  }
  // Sequences first (a table's DEFAULT NEXTVAL(s) needs s), set to where the donor's were.
  for (const { object, next } of args.sequences) {
    try {
      await createObject(joiner, object, signal);
      // SETVAL takes a literal number only.
      if (!/^-?\d+$/.test(next)) throw new ReseedError('COPY_FAILED', `unexpected next value ${next}`);
      await joiner.query(
        `SELECT SETVAL(${quoteIdent(object.schema)}.${quoteIdent(object.name)}, ${next}, 0)`,
        [],
        signal,
      );
    } catch (err) {
      throw describe(object, err);
    }
  }
  for (const t of tables) {
    const [row] = await donor.query(`SHOW CREATE TABLE ${tableName(t)}`, [], signal);
    await joiner.query(`USE ${quoteIdent(t.schema)}`, [], signal);
    const split = args.deferIndexes
      ? splitSecondaryIndexes(String(row?.['Create Table']))
      : { create: String(row?.['Create Table']), deferred: [] };
    if (split.deferred.length) deferred.set(t, split.deferred);
    try {
      await joiner.query(split.create, [], signal);
    } catch (err) {
      throw new ReseedError(
        'COPY_FAILED',
        `could not create table ${t.schema}.${t.name} on the joiner: ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }
  return deferred;
}

/**
 * Creates routines, views, triggers and events on the joiner: a donor's objects after the rows,
 * or a joiner's own put back. The order is one that every dependency between them allows, given
 * what the server checks at creation (as seen on MariaDB 10.11):
 * - CREATE VIEW resolves every table, view and stored function it uses, in any schema;
 * - CREATE FUNCTION/PROCEDURE, TRIGGER and EVENT check their syntax only (and a trigger its table
 *   and the trigger it FOLLOWS or PRECEDES): their bodies are resolved when they run, so a
 *   function may read a view created after it, and a trigger or an event call any routine.
 * Hence routines first (views may call functions), then views in rounds (views may read views),
 * then triggers in firing order, then events. With asReplica (the default: a clone's objects),
 * events are left disabled on the joiner ("DISABLE ON SLAVE"): a replica must not run them a
 * second time. With asReplica false (a joiner's own objects put back), every object is created
 * exactly as saved, events keeping their ENABLE/DISABLE state.
 */
export async function createObjects(args: {
  joiner: Server;
  flavor: Flavor;
  objects: SchemaObject[];
  signal?: AbortSignal | undefined;
  asReplica?: boolean | undefined;
  /** called after each object is created (progress) */
  onCreated?: (() => void) | undefined;
}): Promise<void> {
  const { joiner, flavor, objects, signal, asReplica = true, onCreated = () => {} } = args;
  // Sequences are made with the tables (createTables).
  const ofKind = (...kinds: ObjectKind[]) => objects.filter((o) => kinds.includes(o.kind));
  const create = async (o: SchemaObject) => {
    await createOrDescribe(joiner, o, signal);
    onCreated();
  };
  for (const o of ofKind('function', 'procedure')) await create(o);
  await createViews(joiner, ofKind('view'), signal, onCreated);
  for (const o of ofKind('trigger')) await create(o);
  for (const o of ofKind('event'))
    await create(asReplica && flavor.name === 'mariadb' ? disabledOnReplica(o) : o);
}

/**
 * CREATE VIEW errors that a later round may cure: 1146, a table or view it reads does not exist
 * (yet: a view of this batch, of any schema, still to come); 1356, a view it reads exists but is
 * invalid until something of this batch is created. Not 1305 (no such function): every routine
 * of the batch is created before the views.
 */
const VIEW_WAITS_FOR = new Set([1146, 1356]);

/** Views in rounds, until none is left; a round that creates none fails with its first error. */
async function createViews(
  joiner: Server,
  views: SchemaObject[],
  signal: AbortSignal | undefined,
  onCreated: () => void,
): Promise<void> {
  let pending = views;
  while (pending.length > 0) {
    const failed: { view: SchemaObject; err: unknown }[] = [];
    for (const v of pending) {
      try {
        await createObject(joiner, v, signal);
        onCreated();
      } catch (err) {
        if (!VIEW_WAITS_FOR.has(sqlErrno(err) ?? 0)) throw describe(v, err);
        failed.push({ view: v, err });
      }
    }
    if (failed.length === pending.length) {
      const names = pending.map((v) => `${v.schema}.${v.name}`);
      throw describe(failed[0]!.view, failed[0]!.err, [
        `views not created (each uses a table, view or function that is missing or invalid): ${names.slice(0, 10).join(', ')}${names.length > 10 ? ` and ${names.length - 10} more` : ''}`,
      ]);
    }
    pending = failed.map((f) => f.view);
  }
}

async function createOrDescribe(joiner: Server, o: SchemaObject, signal?: AbortSignal): Promise<void> {
  try {
    await createObject(joiner, o, signal);
  } catch (err) {
    throw describe(o, err);
  }
}

/**
 * The event as the replica should hold it: DISABLE ON SLAVE instead of ENABLE, written into the
 * CREATE statement itself (ALTER EVENT afterwards would make us its definer).
 */
export function disabledOnReplica(o: SchemaObject): SchemaObject {
  return {
    ...o,
    create: o.create.replace(/\b(ON COMPLETION (?:NOT )?PRESERVE) ENABLE\b/i, '$1 DISABLE ON SLAVE'),
  };
}

function describe(o: SchemaObject, err: unknown, hints: string[] = []): ReseedError {
  return new ReseedError(
    'COPY_FAILED',
    `could not create ${objectLabel(o)} on the joiner: ${errorMessage(err)}`,
    {
      cause: err,
      hints: [
        ...hints,
        `the statement was: ${o.create.slice(0, 200)}`,
        `it can be dropped with: ${dropStatement(o)}`,
      ],
    },
  );
}
