import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { REPL_ENV, createReplUser, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import { assertStateIs, serverState } from '../helpers/state.js';

let donor: TestServer;
let joiner: TestServer;

/** A refusal exits with `code`, says `message`, and changes nothing on either server. */
async function refuses(
  args: string[],
  code: number,
  message: RegExp,
  servers: TestServer[] = [donor, joiner],
) {
  const before = await Promise.all(servers.map((s) => serverState(s)));
  const r = await reseed(args, { env: REPL_ENV });
  assert.equal(r.code, code, r.stderr);
  assert.match(r.stderr, message);
  for (const [i, s] of servers.entries()) await assertStateIs(s, before[i]!);
  return r;
}

describe('refusals', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('refuse-donor'), startServer('refuse-joiner')]);
    await donor.sql('CREATE DATABASE app');
    await donor.sql('CREATE TABLE app.t (id INT PRIMARY KEY)');
    await createReplUser(donor);
    await donor.sql("CREATE USER 'weak'@'127.0.0.1'");
    await donor.sql("GRANT SELECT ON *.* TO 'weak'@'127.0.0.1'");
  });
  after(stopAll);

  const base = () => ['clone', '--from', donor.uri, '--to', joiner.uri, '--replication-user', 'repl'];

  it('refuses to clone a server onto itself', async () => {
    await refuses(
      ['clone', '--from', donor.uri, '--to', donor.uri, '--replication-user', 'repl'],
      4,
      /donor and joiner are the same server/,
    );
  });

  it('refuses a donor without the privileges it needs', async () => {
    const weak = donor.uri.replace('root@', 'weak@');
    await refuses(
      ['clone', '--from', weak, '--to', joiner.uri, '--replication-user', 'repl'],
      4,
      /the donor account weak@127\.0\.0\.1 lacks RELOAD, SHOW VIEW, EVENT, TRIGGER, PROCESS, BINLOG MONITOR/,
    );
  });

  it('refuses a joiner that holds user data, unless --force', async () => {
    const s = await joiner.session();
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query('CREATE DATABASE app');
    await s.query('CREATE TABLE app.t (id INT)');
    await s.close();
    try {
      const r = await refuses(base(), 4, /the joiner already holds data in app: use --force/);
      assert.match(r.stderr, /nothing was changed/);
    } finally {
      await joiner.sql('SET SESSION sql_log_bin = 0');
      const c = await joiner.session();
      await c.query('SET SESSION sql_log_bin = 0');
      await c.query('DROP DATABASE app');
      await c.close();
    }
  });

  it('refuses a joiner account that cannot turn off its binary log, and exits (no session left)', async () => {
    const s = await joiner.session();
    await s.query('SET SESSION sql_log_bin = 0');
    await s.query("CREATE USER 'limited'@'127.0.0.1'");
    await s.query(
      "GRANT SELECT, CREATE, DROP, INSERT, ALTER, INDEX, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER, PROCESS ON *.* TO 'limited'@'127.0.0.1'",
    );
    await s.close();
    const limited = joiner.uri.replace('root@', 'limited@');
    const r = await refuses(
      ['clone', '--from', donor.uri, '--to', limited, '--replication-user', 'repl'],
      4,
      /the joiner account limited@127\.0\.0\.1 lacks BINLOG ADMIN, REPLICATION SLAVE ADMIN, READ_ONLY ADMIN/,
    );
    assert.doesNotMatch(r.stderr, /INTERNAL|sql_log_bin/);
    const left = await joiner.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'limited'");
    assert.deepEqual(left, []);
  });

  it('says a schema is a system schema once, and does not suggest --force for cloning a server onto itself', async () => {
    const r = await refuses(
      [...base(), '--schemas', 'mysql'],
      4,
      /system schemas, which are never copied: mysql/,
    );
    assert.doesNotMatch(r.stderr, /does not have: mysql/);
    const self = await refuses(
      ['clone', '--from', donor.uri, '--to', donor.uri, '--replication-user', 'repl', '--force'],
      4,
      /same server/,
    );
    assert.doesNotMatch(self.stderr, /--force/);
  });

  it('refuses without a replication account, or with bad input', async () => {
    await refuses(
      ['clone', '--from', donor.uri, '--to', joiner.uri],
      4,
      /no replication account: pass --replication-user/,
    );
    await refuses([...base(), '--parallel', '0'], 2, /--parallel takes a whole number from 1 to 64/);
    await refuses(
      [...base(), '--schemas', 'nope,mysql'],
      4,
      /--schemas names schemas the donor does not have: nope[\s\S]*system schemas/,
    );
    await refuses(['clone', '--from', 'postgres://x@y', '--to', joiner.uri], 2, /unsupported URI scheme/);
    await refuses([...base(), '--lock-wait-timeout', 'soon'], 2, /not a duration: "soon"/);
    await refuses([...base(), '--method', 'carrier-pigeon'], 2, /argument 'carrier-pigeon' is invalid/);
  });

  it("refuses a donor without a binary log, and a joiner with the donor's server_id", async () => {
    const noBinlog = await startServer('refuse-nobinlog', ['skip-log-bin']);
    await noBinlog.sql('CREATE DATABASE app');
    await refuses(
      ['clone', '--from', noBinlog.uri, '--to', joiner.uri, '--replication-user', 'repl'],
      4,
      /binary logging is off on the donor/,
      [joiner],
    );
    const twin = await startServer('refuse-twin', [`server_id = ${donor.info.serverId}`]);
    await refuses(
      ['clone', '--from', donor.uri, '--to', twin.uri, '--replication-user', 'repl'],
      4,
      /donor and joiner have the same server_id/,
      [donor, twin],
    );
  });
});
