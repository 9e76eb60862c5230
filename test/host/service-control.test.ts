import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { answers, normalizeUnit, serviceControl } from '../../src/host/service-control.js';
import type { ServiceControl, ServiceSpec } from '../../src/host/service-control.js';
import { startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let server: TestServer;
let work: string;

before(async () => {
  server = await startServer('svc');
  await server.sql('CREATE DATABASE IF NOT EXISTS kept');
  await server.sql('CREATE TABLE IF NOT EXISTS kept.t (id INT PRIMARY KEY)');
  await server.sql('INSERT IGNORE INTO kept.t VALUES (1), (2), (3)');
  work = join(process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test', `svc-${process.pid}`);
  mkdirSync(work, { recursive: true });
});
after(stopAll);

const listen = () => ({ host: '127.0.0.1', port: server.info.port });
/** Start and stop the sandbox's own mariadbd by hand, as a DBA's scripts would. */
const startCmd = () =>
  `/usr/sbin/mariadbd --defaults-file=${server.info.dir}/my.cnf >>${server.info.dir}/mariadbd.out 2>&1 &`;
const stopCmd = () => `kill "$(cat ${server.info.dir}/mariadbd.pid)"`;

async function cycle(control: ServiceControl): Promise<void> {
  assert.equal((await control.status()).running, true, `${control.description} runs at first`);
  await control.stop();
  assert.equal((await control.status()).running, false);
  assert.equal(await answers(listen()), false, 'nothing answers once stopped');
  await control.start();
  assert.equal((await control.status()).running, true);
  // Ready means ready: the first query after start() works and finds the data.
  assert.equal(Number((await server.sql('SELECT COUNT(*) AS n FROM kept.t'))[0]?.n), 3);
}

test('sandbox: stop waits for the exit, start for the first answer', async () => {
  await cycle(serviceControl({ kind: 'sandbox', name: server.info.name }));
});

test('commands: the configured shell commands, ready when the port answers', async () => {
  await cycle(serviceControl({ kind: 'commands', start: startCmd(), stop: stopCmd(), listen: listen() }));
});

test('commands: a status command decides what "running" means', async () => {
  const status = `kill -0 "$(cat ${server.info.dir}/mariadbd.pid 2>/dev/null)" 2>/dev/null`;
  await cycle(
    serviceControl({ kind: 'commands', start: startCmd(), stop: stopCmd(), status, listen: listen() }),
  );
});

test('commands: a start command that fails is an error quoting it', async () => {
  const control = serviceControl({
    kind: 'commands',
    start: 'echo "no such unit" >&2; exit 5',
    stop: 'true',
    listen: { host: '127.0.0.1', port: 1 },
  });
  await assert.rejects(control.start(), /exit 5\): no such unit/);
});

/**
 * No systemd runs on these machines: a stand-in `systemctl` (RESEED_SYSTEMCTL) answers `show`,
 * `start` and `stop` for one unit the way systemctl does, running the real server underneath. It
 * proves the unit handling (names, properties, readiness), not systemd itself.
 */
test('systemd: unit names, properties and readiness, through a stand-in systemctl', async () => {
  const fake = join(work, 'systemctl');
  const calls = join(work, 'systemctl.calls');
  writeFileSync(calls, '');
  writeFileSync(
    fake,
    `#!/bin/sh
echo "$*" >> ${calls}
pidfile=${server.info.dir}/mariadbd.pid
running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
case "$1" in
  show)
    [ "$2" = "mariadb-test.service" ] || { echo "LoadState=not-found"; echo "ActiveState=inactive"; echo "SubState=dead"; echo "MainPID=0"; exit 0; }
    echo "LoadState=loaded"
    if running; then echo "ActiveState=active"; echo "SubState=running"; echo "MainPID=$(cat "$pidfile")";
    else echo "ActiveState=inactive"; echo "SubState=dead"; echo "MainPID=0"; fi ;;
  start) running || { ${startCmd()} } ;;
  stop) if running; then p=$(cat "$pidfile"); kill "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; fi ;;
esac
`,
  );
  chmodSync(fake, 0o755);
  process.env.RESEED_SYSTEMCTL = fake;
  try {
    const control = serviceControl({ kind: 'systemd', unit: 'mariadb-test', listen: listen() });
    assert.equal(control.description, 'systemd unit mariadb-test.service');
    const s = await control.status();
    assert.equal(s.detail, 'active (running)');
    assert.equal(s.pid, Number(readFileSync(join(server.info.dir, 'mariadbd.pid'), 'utf8')));
    await cycle(control);
    assert.match(readFileSync(calls, 'utf8'), /^stop mariadb-test\.service$/m);
    assert.match(readFileSync(calls, 'utf8'), /^start mariadb-test\.service$/m);
    const missing = serviceControl({ kind: 'systemd', unit: 'nope.service', listen: listen() });
    await assert.rejects(missing.status(), /systemd has no unit nope\.service/);
  } finally {
    delete process.env.RESEED_SYSTEMCTL;
  }
});

test('unit names are checked before systemctl sees them', () => {
  assert.equal(normalizeUnit('mariadb'), 'mariadb.service');
  assert.equal(normalizeUnit('mariadb@replica.service'), 'mariadb@replica.service');
  for (const bad of ['', '--now', 'a b', 'x;rm -rf /', 'unit/../x'])
    assert.throws(() => normalizeUnit(bad), /is not a systemd unit name/);
});

test('a sandbox that does not exist is a CONFIG error', async () => {
  const spec: ServiceSpec = { kind: 'sandbox', name: 'no-such-sandbox' };
  await assert.rejects(serviceControl(spec).status(), /no sandbox named no-such-sandbox/);
});
