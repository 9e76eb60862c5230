import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadAgentConfig } from '../../src/agent/config.js';
import { parseHosts } from '../../src/cli/agent.js';

const dir = join(process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test', `agent-config-${process.pid}`);
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'token'), 'a-token-of-enough-length\n', { mode: 0o600 });
chmodSync(join(dir, 'token'), 0o600);

function load(config: unknown): ReturnType<typeof loadAgentConfig> {
  const file = join(dir, 'config.json');
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config));
  return loadAgentConfig(file);
}

const base = {
  name: 'db1',
  listen: { host: '127.0.0.1', port: 7420 },
  stateDir: 'state',
  tokenFile: 'token',
  insecurePlainHttp: true,
};

function problems(config: unknown): string[] {
  try {
    load(config);
  } catch (err) {
    const e = err as Error & { code: string; hints: string[] };
    assert.equal(e.code, 'CONFIG');
    return e.hints;
  }
  return [];
}

test('a good configuration loads, with paths made absolute from its directory', () => {
  const c = load(base);
  assert.equal(c.stateDir, join(dir, 'state'));
  assert.equal(c.tokenFile, join(dir, 'token'));
  assert.deepEqual(c.peers, {});
});

test('every error names its key', () => {
  const hints = problems({
    ...base,
    listen: { host: '127.0.0.1', port: 'x' },
    service: { kind: 'systemd' },
    extra: 1,
  });
  assert.ok(
    hints.some((h) => h.startsWith('listen.port: ')),
    hints.join('\n'),
  );
  assert.ok(
    hints.some((h) => h.startsWith('service.unit: ') || h.startsWith('service')),
    hints.join('\n'),
  );
  assert.ok(
    hints.some((h) => /extra/.test(h)),
    hints.join('\n'),
  );
  assert.match(problems({ ...base, name: undefined })[0]!, /^name: /);
  assert.throws(() => load('{ not json'), /config\.json: .*JSON/);
});

test('unsafe combinations are refused: no TLS without the flag, plain HTTP off loopback, readable tokens', () => {
  assert.match(problems({ ...base, insecurePlainHttp: false }).join('\n'), /tls: required/);
  assert.match(
    problems({ ...base, listen: { host: '0.0.0.0', port: 7420 } }).join('\n'),
    /plain HTTP is only allowed on a loopback address, not 0\.0\.0\.0/,
  );
  writeFileSync(join(dir, 'open-token'), 'a-token-of-enough-length\n');
  chmodSync(join(dir, 'open-token'), 0o644);
  assert.match(
    problems({ ...base, tokenFile: 'open-token' }).join('\n'),
    /readable by others \(mode 644\): chmod 600/,
  );
  assert.match(
    problems({ ...base, peers: { db2: { url: 'https://db2:7420', tokenFile: 'missing' } } }).join('\n'),
    /peers\.db2\.tokenFile: cannot read/,
  );
  writeFileSync(join(dir, 'short'), 'short\n', { mode: 0o600 });
  assert.match(problems({ ...base, tokenFile: 'short' }).join('\n'), /shorter than 16 characters/);
});

test('--hosts for agent init: names, addresses, ports', () => {
  assert.deepEqual(parseHosts('db1=10.0.0.1,db2=db2.example.com:7500, db3=[::1]:7600'), [
    { name: 'db1', address: '10.0.0.1', port: 7420 },
    { name: 'db2', address: 'db2.example.com', port: 7500 },
    { name: 'db3', address: '::1', port: 7600 },
  ]);
  for (const bad of ['', ',', 'db1', 'db1=', 'db1=host:0', 'db1=host:99999'])
    assert.throws(() => parseHosts(bad), /--hosts/);
});
