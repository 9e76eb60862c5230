import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../src/mysql/server.js';
import type { Server } from '../../src/mysql/server.js';
import { sandboxEndpoint } from '../../src/sandbox/sandbox.js';
import { REPL_ENV, cloneArgs, createReplUser, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;
let joiner: TestServer;
let certs: string;

/** A CA, and a server certificate it signs for 127.0.0.1 and localhost (openssl, as a DBA would). */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  for (const ca of ['ca', 'other-ca']) {
    openssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${ca}-key.pem`,
      '-out',
      `${ca}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=reseed test ${ca}`,
    );
  }
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'server-key.pem',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  );
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca-key.pem',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'ext.cnf',
  );
  // mariadbd may run as another user than the test: it must read its key.
  chmodSync(join(dir, 'server-key.pem'), 0o644);
}

/** A session over TLS: plain connections are refused once require_secure_transport is on. */
function tlsSession(server: TestServer): Promise<Server> {
  return connect({ ...sandboxEndpoint(server.info), tls: { mode: 'required' } });
}

async function sql(server: TestServer, statement: string): Promise<Record<string, unknown>[]> {
  const s = await tlsSession(server);
  try {
    return await s.query(statement);
  } finally {
    await s.close();
  }
}

describe('TLS to both servers and for replication', () => {
  before(async () => {
    certs = mkdtempSync(join(process.env.RESEED_TEST_DIR ?? '/tmp', 'certs-'));
    makeCertificates(certs);
    const config = [
      `ssl_ca = ${certs}/ca.pem`,
      `ssl_cert = ${certs}/server.pem`,
      `ssl_key = ${certs}/server-key.pem`,
    ];
    [donor, joiner] = await Promise.all([
      startServer('tls-donor', config),
      startServer('tls-joiner', config),
    ]);
    await donor.sql('CREATE DATABASE app');
    await donor.sql('CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))');
    await donor.sql("INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three')");
    await createReplUser(donor);
    for (const s of [donor, joiner]) await s.sql('SET GLOBAL require_secure_transport = ON');
  });
  after(stopAll);

  it('is refused without TLS, and the message says how to ask for it (exit 3)', async () => {
    // MariaDB says "Access denied" to a plain connection when it requires secure transport.
    const r = await reseed(cloneArgs(donor, joiner));
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /require_secure_transport=ON\): add --ssl-mode required, or --ssl-ca/);
  });

  it('refuses a server certificate that another CA signed (exit 3)', async () => {
    const r = await reseed(cloneArgs(donor, joiner, '--ssl-ca', join(certs, 'other-ca.pem')));
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /certificate/);
    assert.deepEqual(
      await sql(joiner, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'"),
      [],
    );
  });

  it('clones with checked certificates and replicates over TLS', async () => {
    const ca = join(certs, 'ca.pem');
    const from = `${donor.uri}?ssl-mode=verify-identity&ssl-ca=${encodeURIComponent(ca)}`;
    const args = cloneArgs(donor, joiner, '--ssl-ca', ca, '--replication-ssl-ca', ca, '--verify', '--json');
    args[args.indexOf(donor.uri)] = from;
    const r = await reseed(args, { env: REPL_ENV });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.match(String(summary.donor), /\(TLS verify-identity\)$/);
    assert.match(String(summary.joiner), /\(TLS verify-ca\)$/);
    assert.equal((summary.verify as { ok: boolean }).ok, true);
    // Verify gave the replication threads back: the IO thread may still be in its TLS handshake
    // ('Preparing', 'Connecting') for a moment.
    let [status] = await sql(joiner, 'SHOW SLAVE STATUS');
    for (let i = 0; i < 100 && status!.Slave_IO_Running !== 'Yes'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      [status] = await sql(joiner, 'SHOW SLAVE STATUS');
    }
    assert.equal(status!.Slave_IO_Running, 'Yes');
    assert.equal(status!.Master_SSL_Allowed, 'Yes');
    assert.equal(status!.Master_SSL_Verify_Server_Cert, 'Yes');
    await sql(donor, "INSERT INTO app.t VALUES (4, 'four')");
    const [pos] = await sql(donor, 'SELECT @@gtid_binlog_pos AS g');
    const [w] = await sql(joiner, `SELECT MASTER_GTID_WAIT('${String(pos!.g)}', 30) AS r`);
    assert.equal(Number(w!.r), 0);
    assert.equal((await sql(joiner, 'SELECT v FROM app.t WHERE id = 4'))[0]!.v, 'four');
  });
});
