import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isReseedError } from '../../src/errors.js';
import { describeEndpoint, maskUri, parseUri, resolveEndpoint } from '../../src/mysql/credentials.js';

/** Every piece of `secret` long enough to give it away. */
function fragments(secret: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 3 <= secret.length; i++) {
    for (let j = i + 3; j <= secret.length; j++) out.push(secret.slice(i, j));
  }
  return out;
}

function assertHidden(text: string, secret: string, what: string): void {
  const shown = fragments(secret).find((f) => text.includes(f));
  assert.equal(shown, undefined, `${what} shows "${shown}" of the password: ${text}`);
}

/** parseUri's refusal of `uri`: a USAGE error matching `expected`. */
function refusal(uri: string, expected: RegExp): string {
  try {
    parseUri(uri);
  } catch (err) {
    assert.ok(isReseedError(err) && err.code === 'USAGE', `${uri}: ${String(err)}`);
    assert.match(err.message, expected, uri);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return err.message;
  }
  assert.fail(`${uri} was accepted`);
}

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

  it('keeps accepting what it accepted', () => {
    const ok = (uri: string) => parseUri(uri);
    assert.deepEqual(ok('mysql://root@db1').endpoint, { host: 'db1', port: 3306, user: 'root' });
    assert.deepEqual(ok('mariadb://db1:3307/').endpoint, { host: 'db1', port: 3307 });
    assert.deepEqual(ok('MySQL://db1:').endpoint, { host: 'db1', port: 3306 });
    assert.deepEqual(ok('mysql://[::1]').endpoint, { host: '::1', port: 3306 });
    assert.equal(ok('mysql://a:x:y@h').password, 'x:y', "a ':' in a password needs no escape");
    assert.equal(ok('mysql://a:p w@h').password, 'p w');
    assert.equal(ok('mysql://a:@h').password, undefined);
    assert.equal(ok('mysql://a:p%2F%3F%23%25%40@h').password, 'p/?#%@');
    assert.equal(ok('mysql://admin%40srv:pw@h:65535').endpoint.user, 'admin@srv');
    assert.equal(ok('mysql://h?socket=/run/a%40b.sock').endpoint.socketPath, '/run/a@b.sock');
  });

  it('masks a password whatever it holds, in any text', () => {
    const cases: [string, string][] = [
      ['mysql://admin:p@ss/1@127.0.0.1:1', 'mysql://admin:***@127.0.0.1:1'],
      [
        'mysql://admin:a:b@c/d?e#f@db1:3306?ssl-mode=required',
        'mysql://admin:***@db1:3306?ssl-mode=required',
      ],
      ['mysql://admin@srv:pw@db1', 'mysql://admin@srv:***@db1'],
      ['mysql://root@[::1]:3306', 'mysql://root@[::1]:3306'],
      ['mysql://[::1]:3306', 'mysql://[::1]:3306'],
      ['mysql://db1:3306?socket=/run/m.sock', 'mysql://db1:3306?socket=/run/m.sock'],
      ['mysql://admin:s3cret', 'mysql://admin:***'],
      ['--from=mysql://admin:s3cret@db1', '--from=mysql://admin:***@db1'],
      ['admin:s3cret@db1', 'admin:***@db1'],
      ['--parallel', '--parallel'],
    ];
    for (const [uri, masked] of cases) assert.equal(maskUri(uri), masked, uri);
  });

  it('refuses a URI it cannot read for sure, and never shows its password', () => {
    const encode = /percent-encode.*'@' as %40.*RESEED_DONOR_PASSWORD.*MYSQL_PWD.*option file/;
    const cases: [string, string, RegExp][] = [
      ['mysql://admin:p@ss/1@127.0.0.1:1', 'p@ss/1', encode],
      ['mysql://admin:tr@mp@db1:3306', 'tr@mp', encode],
      ['mysql://admin:x/yz@db1', 'x/yz', encode],
      ['mysql://admin:ab#cd@db1', 'ab#cd', encode],
      ['mysql://admin:ab?cd@db1', 'ab?cd', encode],
      ['mysql://admin:12?q=xyz@db1', '12?q=xyz', encode],
      ['mysql://admin@srv:Wxyz@db1', 'Wxyz', encode],
      ['mysql://admin:ab%zzcd@db1', 'ab%zzcd', /'%'.*starts no valid escape: percent-encode/],
      ['mysql://admin:100%@db1', '100%', /'%'.*starts no valid escape/],
      ['mysql://admin:Wxyz@', 'Wxyz', /^no host in mysql:\/\/admin:\*\*\*@ /],
      ['mysql://admin:Wxyz@:3306', 'Wxyz', /^no host in/],
      ['mysql://admin:Wxyz@db1:0', 'Wxyz', /port of .* is not between 1 and 65535/],
      ['mysql://admin:Wxyz@db1:65536', 'Wxyz', /port of .* is not between 1 and 65535/],
      ['mysql://admin:Wxyz', 'Wxyz', /port of mysql:\/\/admin:\*\*\* is not a number/],
      ['admin:Wxyz@db1', 'Wxyz', /^not a server URI/],
      ['postgres://admin:Wxyz@db1', 'Wxyz', /unsupported URI scheme/],
      ['mysql://admin:Wxyz@db1/shop', 'Wxyz', /names a database/],
      ['mysql://admin:Wxyz@db1?ssl-mode=maybe', 'Wxyz', /unknown ssl-mode "maybe"/],
    ];
    for (const [uri, password, expected] of cases) {
      const message = refusal(uri, expected);
      assertHidden(message, password, uri);
      assertHidden(maskUri(uri), password, `maskUri(${uri})`);
    }
    refusal('mysql://', /^no host in mysql:\/\/ /);
    refusal('mysql://h?socket=/run/a@b.sock', /'@' in .* is not percent-encoded/);
    refusal('mysql://h:port', /port of .* is not a number/);
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
