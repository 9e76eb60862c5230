import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { describeEndpoint, maskUri, parseUri, resolveEndpoint } from '../../src/mysql/credentials.js';

describe('credentials', () => {
  it('parses URIs and masks their passwords', () => {
    const p = parseUri('mysql://app:p%40ss@db1.example:3307');
    assert.deepEqual(p.endpoint, { host: 'db1.example', port: 3307, user: 'app' });
    assert.equal(p.password, 'p@ss');
    assert.equal(maskUri('mysql://app:p%40ss@db1:3307'), 'mysql://app:***@db1:3307');
    assert.equal(parseUri('mysql://root@[::1]:3306?socket=/run/m.sock').endpoint.socketPath, '/run/m.sock');
    assert.throws(() => parseUri('postgres://x@y'), /unsupported URI scheme/);
    assert.throws(() => parseUri('mysql://x@y/db'), /names a database/);
    assert.throws(() => parseUri('mysql://x@y?ssl=1'), /unknown URI option/);
  });

  it('takes passwords as the MySQL clients do, most specific first', () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-cred-'));
    const shared = join(dir, 'shared.cnf');
    const side = join(dir, 'side.cnf');
    writeFileSync(
      shared,
      '[client]\nuser = shareduser\npassword = "from-shared"\n[mysqld]\npassword=ignored\n',
    );
    writeFileSync(side, '[client]\npassword=from-side\n');
    const env = { MYSQL_PWD: 'from-env' } as NodeJS.ProcessEnv;
    const r = (uri: string, o: Partial<Parameters<typeof resolveEndpoint>[1]> = {}) =>
      resolveEndpoint(uri, { side: 'donor', env, defaultsFile: shared, ...o }).endpoint;
    assert.equal(r('mysql://a:from-uri@h').password, 'from-uri');
    assert.equal(
      r('mysql://a@h', { env: { ...env, RESEED_DONOR_PASSWORD: 'from-side-env' } }).password,
      'from-side-env',
    );
    assert.equal(r('mysql://a@h', { sideDefaultsFile: side }).password, 'from-side');
    assert.equal(r('mysql://a@h').password, 'from-env');
    assert.equal(r('mysql://a@h', { env: {} }).password, 'from-shared');
    assert.equal(r('mysql://h', { env: {} }).user, 'shareduser');
  });

  it('takes TLS settings from the URI, the command line and option files, most specific first', () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-cred-'));
    const none = join(dir, 'none.cnf');
    const file = join(dir, 'tls.cnf');
    const maria = join(dir, 'maria.cnf');
    writeFileSync(none, '');
    writeFileSync(file, '[client]\nssl-ca=/etc/ca.pem\nssl-cert=/etc/c.pem\nssl-key=/etc/k.pem\n');
    writeFileSync(maria, '[client-mariadb]\nssl\nssl-ca=/etc/ca.pem\nssl-verify-server-cert\n');
    const tls = (uri: string, o: Partial<Parameters<typeof resolveEndpoint>[1]> = {}) =>
      resolveEndpoint(uri, { side: 'joiner', env: {}, defaultsFile: none, ...o }).endpoint.tls;
    assert.equal(tls('mysql://a@h'), undefined, 'no TLS unless asked for');
    assert.deepEqual(tls('mysql://a@h?ssl-ca=/a.pem'), { mode: 'verify-ca', ca: '/a.pem' });
    assert.deepEqual(tls('mysql://a@h?ssl-mode=REQUIRED'), { mode: 'required' });
    assert.equal(tls('mysql://a@h?ssl-mode=disabled', { tls: { mode: 'required' } }), undefined);
    assert.deepEqual(tls('mysql://a@h?ssl-mode=verify-identity', { tls: { ca: '/b.pem' } }), {
      mode: 'verify-identity',
      ca: '/b.pem',
    });
    assert.deepEqual(tls('mysql://a@h', { defaultsFile: file }), {
      mode: 'verify-ca',
      ca: '/etc/ca.pem',
      cert: '/etc/c.pem',
      key: '/etc/k.pem',
    });
    assert.deepEqual(tls('mysql://a@h', { defaultsFile: maria }), {
      mode: 'verify-identity',
      ca: '/etc/ca.pem',
    });
    assert.throws(() => tls('mysql://a@h?ssl-mode=verify-ca'), /give its CA with --ssl-ca/);
    assert.throws(() => tls('mysql://a@h?ssl-cert=/c.pem'), /both --ssl-cert and --ssl-key/);
    assert.throws(() => tls('mysql://a@h?ssl-mode=sometimes'), /unknown ssl-mode "sometimes"/);
    const e = resolveEndpoint('mysql://a@h:3307?ssl-mode=required', {
      side: 'donor',
      env: {},
      defaultsFile: none,
    });
    assert.equal(describeEndpoint(e.endpoint), 'a@h:3307 (TLS required)');
  });
});
