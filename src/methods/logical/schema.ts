import { ReseedError, errorMessage } from '../../errors.js';
import type { Journal } from '../../journal/journal.js';
import type { Flavor } from '../../mysql/flavor/index.js';
import type { SchemaObject } from '../../mysql/objects.js';
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
      if (!/^-?\d+$/.test(next)) throw new Error(`unexpected next value ${next}`);
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
 * Creates views, routines, triggers and events. Views may use other views, so they are created
 * in rounds until none is left or a round makes no progress. Events are left disabled on the
 * joiner ("DISABLE ON SLAVE"): a replica must not run them a second time.
 */
export async function createObjects(args: {
  joiner: Server;
  flavor: Flavor;
  objects: SchemaObject[];
  signal?: AbortSignal | undefined;
}): Promise<void> {
  const { joiner, flavor, objects, signal } = args;
  let views = objects.filter((o) => o.kind === 'view');
  while (views.length > 0) {
    const failed: { view: SchemaObject; err: unknown }[] = [];
    for (const v of views) {
      try {
        await createObject(joiner, v, signal);
      } catch (err) {
        // 1146: a view it reads from does not exist yet.
        if (sqlErrno(err) !== 1146) throw describe(v, err);
        failed.push({ view: v, err });
      }
    }
    if (failed.length === views.length) throw describe(failed[0]!.view, failed[0]!.err);
    views = failed.map((f) => f.view);
  }
  // Sequences are made with the tables (createTables).
  for (const o of objects.filter((o) => o.kind !== 'view' && o.kind !== 'sequence')) {
    try {
      await createObject(
        joiner,
        o.kind === 'event' && flavor.name === 'mariadb' ? disabledOnReplica(o) : o,
        signal,
      );
    } catch (err) {
      throw describe(o, err);
    }
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

function describe(o: SchemaObject, err: unknown): ReseedError {
  return new ReseedError(
    'COPY_FAILED',
    `could not create ${objectLabel(o)} on the joiner: ${errorMessage(err)}`,
    {
      cause: err,
      hints: [`the statement was: ${o.create.slice(0, 200)}`, `it can be dropped with: ${dropStatement(o)}`],
    },
  );
}
