import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ReseedError } from '../../src/errors.js';
import { createObjects } from '../../src/methods/logical/schema.js';
import { detectFlavor } from '../../src/mysql/flavor/index.js';
import { listObjects } from '../../src/mysql/objects.js';
import type { SchemaObject } from '../../src/mysql/objects.js';
import { REPL_ENV, createReplUser, reseed, startServer, stopAll, cloneArgs } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;
let joiner: TestServer;
let scratch: TestServer;

/**
 * Dependencies across kinds and schemas. Names are chosen so that the listing order (schema,
 * then name; views before routines) is the wrong creation order: `report` sorts before `shop`,
 * `a_big` before the view it reads, views before the functions they call.
 */
const SETUP = [
  'CREATE DATABASE shop',
  'CREATE DATABASE report',
  'CREATE TABLE shop.orders (id INT PRIMARY KEY, amount DECIMAL(10,2) NOT NULL)',
  'CREATE TABLE shop.audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(50) NOT NULL)',
  // A view calling a stored function, and a view over it.
  'CREATE FUNCTION shop.gross(x DECIMAL(10,2)) RETURNS DECIMAL(10,2) DETERMINISTIC RETURN x * 1.2',
  'CREATE VIEW shop.v_gross AS SELECT id, shop.gross(amount) AS gross FROM shop.orders',
  'CREATE VIEW shop.a_big AS SELECT id, gross FROM shop.v_gross WHERE gross > 10',
  // Views over a table and over a view of another schema.
  'CREATE VIEW report.orders AS SELECT id, amount FROM shop.orders',
  'CREATE VIEW report.big AS SELECT id, gross FROM shop.a_big',
  // A function and a procedure reading views; a view calling that function.
  'CREATE FUNCTION shop.order_count() RETURNS INT READS SQL DATA RETURN (SELECT COUNT(*) FROM report.orders)',
  'CREATE VIEW report.counts AS SELECT shop.order_count() AS n',
  'CREATE PROCEDURE shop.total(OUT t DECIMAL(10,2)) READS SQL DATA SELECT SUM(gross) INTO t FROM shop.v_gross',
  // A trigger and an event (of another schema) calling a procedure.
  "CREATE PROCEDURE shop.log_order(IN order_id INT) MODIFIES SQL DATA INSERT INTO shop.audit (note) VALUES (CONCAT('order ', order_id))",
  'CREATE TRIGGER shop.orders_ai AFTER INSERT ON shop.orders FOR EACH ROW CALL shop.log_order(NEW.id)',
  "CREATE EVENT report.nightly ON SCHEDULE EVERY 1 DAY STARTS '2037-01-01 00:00:00' DO CALL shop.log_order(0)",
  'INSERT INTO shop.orders VALUES (1, 5.00), (2, 20.00), (3, 50.00)',
];

const VIEWS = ['report.big', 'report.counts', 'report.orders', 'shop.a_big', 'shop.v_gross'];

/** Every view, routine, trigger and event of the two schemas, as "kind schema.name". */
async function objectNames(server: TestServer): Promise<string[]> {
  const rows = await server.sql(
    `SELECT CONCAT('view ', TABLE_SCHEMA, '.', TABLE_NAME) AS o FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN ('shop', 'report')
     UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_SCHEMA, '.', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN ('shop', 'report')
     UNION ALL SELECT CONCAT('trigger ', TRIGGER_SCHEMA, '.', TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN ('shop', 'report')
     UNION ALL SELECT CONCAT('event ', EVENT_SCHEMA, '.', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN ('shop', 'report')
     ORDER BY 1`,
  );
  return rows.map((r) => String(r.o));
}

async function createOn(server: TestServer, objects: SchemaObject[]): Promise<void> {
  const s = await server.session();
  try {
    const [v] = await s.query('SELECT VERSION() AS v');
    await createObjects({ joiner: s, flavor: detectFlavor(String(v!.v)), objects });
  } finally {
    await s.close();
  }
}

describe('schema objects that depend on each other, across kinds and schemas', () => {
  before(async () => {
    [donor, joiner, scratch] = await Promise.all([
      startServer('deps-donor'),
      startServer('deps-joiner'),
      startServer('deps-scratch'),
    ]);
    for (const statement of SETUP) await donor.sql(statement);
    await createReplUser(donor);
  });
  after(stopAll);

  it('clones them all, and they work on the joiner', async () => {
    const r = await reseed(cloneArgs(donor, joiner, '--verify'), { env: REPL_ENV });
    assert.equal(r.code, 0, r.stderr + r.stdout);

    const names = await objectNames(donor);
    assert.equal(names.length, 11);
    assert.deepEqual(await objectNames(joiner), names);
    for (const v of VIEWS) {
      const q = `SELECT * FROM ${v} ORDER BY 1`;
      assert.deepEqual(await joiner.sql(q), await donor.sql(q), q);
    }
    const [big] = await joiner.sql('SELECT GROUP_CONCAT(id ORDER BY id) AS ids FROM report.big');
    assert.equal(big!.ids, '2,3');
    const [count] = await joiner.sql('SELECT shop.order_count() AS n');
    assert.equal(Number(count!.n), 3);
    const [ev] = await joiner.sql(
      "SELECT STATUS AS s, EVENT_DEFINITION AS d FROM information_schema.EVENTS WHERE EVENT_NAME = 'nightly'",
    );
    assert.equal(ev!.s, 'SLAVESIDE_DISABLED');

    // Run the procedure, the trigger and the event's body on the joiner, in a transaction rolled
    // back and kept out of its binary log: the replica ends as it was.
    const [before] = await joiner.sql('SELECT @@gtid_binlog_pos AS g');
    const s = await joiner.session();
    try {
      await s.query('SET SESSION sql_log_bin = 0');
      await s.query('CALL shop.total(@t)');
      const [total] = await s.query('SELECT @t AS t');
      assert.equal(String(total!.t), '90.00');
      await s.query('START TRANSACTION');
      await s.query('INSERT INTO shop.orders VALUES (4, 1.00)');
      await s.query(String(ev!.d));
      const notes = await s.query('SELECT note FROM shop.audit WHERE id > 3 ORDER BY id');
      assert.deepEqual(
        notes.map((n) => n.note),
        ['order 4', 'order 0'],
      );
      await s.query('ROLLBACK');
    } finally {
      await s.close();
    }
    const [after] = await joiner.sql('SELECT @@gtid_binlog_pos AS g, COUNT(*) AS n FROM shop.audit');
    assert.equal(after!.g, before!.g);
    assert.equal(Number(after!.n), 3);
  });

  it('creates them from any order, and names what is missing when nothing can be made', async () => {
    await scratch.sql('CREATE DATABASE shop');
    await scratch.sql('CREATE DATABASE report');
    for (const statement of SETUP.filter((x) => x.startsWith('CREATE TABLE'))) await scratch.sql(statement);
    const d = await donor.session();
    const objects = await listObjects(d, ['report', 'shop']).finally(() => d.close());
    // Events first, views over views before them, triggers before routines: the reverse.
    await createOn(scratch, [...objects].reverse());
    assert.deepEqual(await objectNames(scratch), await objectNames(donor));

    // A view over a table that is not there, and a view over that view: no round makes progress.
    const view = (name: string, select: string): SchemaObject => ({
      kind: 'view',
      schema: 'report',
      name,
      create: `CREATE VIEW report.${name} AS ${select}`,
      sqlMode: undefined,
      collationConnection: undefined,
      timeZone: undefined,
    });
    const missing = [
      view('stuck_a', 'SELECT * FROM report.gone_view'),
      view('gone_view', 'SELECT * FROM shop.gone'),
    ];
    await assert.rejects(createOn(scratch, missing), (err: unknown) => {
      assert.ok(err instanceof ReseedError);
      assert.equal(err.code, 'COPY_FAILED');
      assert.match(err.message, /^could not create view report\.stuck_a on the joiner: .*report\.gone_view/);
      assert.match(err.hints.join('\n'), /views not created .*: report\.stuck_a, report\.gone_view/);
      return true;
    });
  });
});
