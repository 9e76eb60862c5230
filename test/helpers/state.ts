import assert from 'node:assert/strict';
import type { TestServer } from './sandboxes.js';

/**
 * What a server looks like, read with plain SQL independently of reseed's own state record:
 * every user schema's tables with CHECKSUM TABLE, its views, routines, triggers and events, every
 * replication connection's settings and threads, GTID positions and read_only. Tests compare it
 * before and after a failed or refused operation.
 */
export async function serverState(server: TestServer, options: { positions?: boolean } = {}) {
  const s = await server.session();
  try {
    const out: Record<string, unknown> = {};
    const tables = await s.query(
      `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, TABLE_TYPE AS k FROM information_schema.TABLES
        WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2`,
    );
    for (const t of tables) {
      const name = `\`${String(t.s)}\`.\`${String(t.t)}\``;
      if (t.k === 'VIEW')
        out[`view ${name}`] = (await s.query(`SHOW CREATE VIEW ${name}`))[0]!['Create View'];
      else out[`table ${name}`] = (await s.query(`CHECKSUM TABLE ${name}`))[0]!.Checksum;
    }
    out.schemas = (
      await s.query(
        "SELECT SCHEMA_NAME AS s FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1",
      )
    ).map((r) => r.s);
    out.routines = await s.query(
      `SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION FROM information_schema.ROUTINES
        WHERE ROUTINE_SCHEMA NOT IN ('mysql', 'sys') ORDER BY 1, 2`,
    );
    out.triggers = await s.query(
      'SELECT TRIGGER_SCHEMA, TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS ORDER BY 1, 2',
    );
    out.events = await s.query(
      'SELECT EVENT_SCHEMA, EVENT_NAME, STATUS FROM information_schema.EVENTS ORDER BY 1, 2',
    );
    out.replication = (await s.query('SHOW ALL SLAVES STATUS')).map((r) => ({
      connection: r.Connection_name,
      host: r.Master_Host,
      port: r.Master_Port,
      user: r.Master_User,
      gtid: r.Using_Gtid,
      io: r.Slave_IO_Running === 'No' ? 'No' : 'on',
      sql: r.Slave_SQL_Running,
      filters: r.Replicate_Wild_Do_Table,
    }));
    const [v] = await s.query(
      'SELECT @@GLOBAL.read_only AS ro, @@GLOBAL.gtid_slave_pos AS slave, @@GLOBAL.gtid_binlog_pos AS binlog',
    );
    out.readOnly = v!.ro;
    if (options.positions !== false) {
      out.gtidSlavePos = v!.slave;
      out.gtidBinlogPos = v!.binlog;
    }
    out.accounts = (
      await s.query("SELECT User, Host FROM mysql.user WHERE User NOT IN ('PUBLIC') ORDER BY 1, 2")
    ).map((r) => `${String(r.User)}@${String(r.Host)}`);
    return out;
  } finally {
    await s.close();
  }
}

/** Waits (up to 10 s) until the server's state equals `before`, then asserts it. */
export async function assertStateIs(
  server: TestServer,
  before: Record<string, unknown>,
  options: { positions?: boolean } = {},
): Promise<void> {
  let now = await serverState(server, options);
  for (let i = 0; i < 40 && JSON.stringify(now) !== JSON.stringify(before); i++) {
    await new Promise((r) => setTimeout(r, 250));
    now = await serverState(server, options);
  }
  assert.deepEqual(now, before);
}
