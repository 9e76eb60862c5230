import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { preflight } from '../../src/clone/preflight.js';
import { silentLogger } from '../../src/log.js';
import { detectFlavor, parseVersion } from '../../src/mysql/flavor/index.js';
import type { ServerFacts } from '../../src/mysql/facts.js';
import type { Row, Server } from '../../src/mysql/server.js';
import { logical } from '../../src/methods/logical/index.js';
import type { CloneOptions } from '../../src/methods/method.js';
import { defaultCloneOptions } from '../../src/clone/defaults.js';
import { nullProgress } from '../../src/progress.js';
import { Journal } from '../../src/journal/journal.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Refusals that need servers this machine cannot run (an older joiner, a MySQL joiner) are
 * checked against a recording fake Server: preflight's logic, not the SQL, is under test.
 */
function fake(schemas: string[], bulkExecute = false, versioned: string[] = []): Server {
  return {
    endpoint: { host: 'h', port: 1, user: 'u' },
    label: 'fake',
    connectionId: 1,
    async query(sql: string): Promise<Row[]> {
      if (/FROM information_schema\.SCHEMATA/.test(sql)) return schemas.map((s) => ({ s }));
      // The replication probe: the account exists, and the joiner's probe reached the source.
      if (/FROM mysql\.user WHERE User = \?/.test(sql)) return [{ h: '%' }];
      if (/^SHOW (SLAVE|REPLICA) STATUS/.test(sql)) return [{ Last_IO_Errno: 1236 }];
      if (/AS n$/.test(sql.trim())) return [{ n: 0 }];
      if (/TABLE_TYPE AS type/.test(sql))
        return versioned.map((t) => ({ s: 'app', t, type: 'SYSTEM VERSIONED', engine: 'InnoDB' }));
      return [];
    },
    streamRaw: () => (async function* () {})(),
    streamPackets: async () => undefined,
    loadData: async () => 0,
    bulkExecute,
    prepare: () => Promise.reject(new Error('not in the fake')),
    executeBulk: async () => 0,
    killQuery: async () => undefined,
    close: async () => undefined,
    destroy: () => undefined,
  };
}

function facts(version: string, over: Partial<ServerFacts> = {}): ServerFacts {
  return {
    flavor: detectFlavor(version),
    version: parseVersion(version),
    serverId: Math.floor(Math.random() * 1e9),
    serverUuid: undefined,
    hostname: `host-${Math.random()}`,
    port: 3306,
    datadir: '/var/lib/mysql/',
    logBin: true,
    logSlaveUpdates: true,
    binlogFormat: 'ROW',
    readOnly: false,
    localInfile: true,
    replica: undefined,
    privileges: new Set(['ALL PRIVILEGES']),
    user: 'root@%',
    ...over,
  };
}

const options: CloneOptions = defaultCloneOptions({ replicationUser: 'repl', replicationPassword: 'x' });

async function problems(
  donor: ServerFacts,
  joiner: ServerFacts,
  joinerBulk = false,
  donorVersioned: string[] = [],
): Promise<string[]> {
  try {
    await preflight(
      {
        donor: {
          endpoint: { host: 'd', port: 1, user: 'u' },
          meta: fake(['app'], false, donorVersioned),
          facts: donor,
        },
        joiner: { endpoint: { host: 'j', port: 2, user: 'u' }, meta: fake([], joinerBulk), facts: joiner },
        options: { ...options },
        log: silentLogger(),
        journal: Journal.create(
          {
            operation: 'clone',
            donor: { host: 'd', port: 1, user: 'u' },
            joiner: { host: 'j', port: 2, user: 'u' },
          },
          mkdtempSync(join(tmpdir(), 'reseed-preflight-')),
        ),
        progress: nullProgress,
        signal: new AbortController().signal,
      },
      logical,
    );
    return [];
  } catch (err) {
    return (err as { hints: string[] }).hints;
  }
}

describe('preflight refusals that need other server versions', () => {
  it('accepts a joiner of the same or a newer version', async () => {
    assert.deepEqual(await problems(facts('10.11.6-MariaDB'), facts('10.11.2-MariaDB')), []);
    assert.deepEqual(await problems(facts('10.6.20-MariaDB'), facts('10.11.6-MariaDB')), []);
  });

  it('refuses a joiner older than the donor', async () => {
    const p = await problems(facts('10.11.6-MariaDB'), facts('10.6.20-MariaDB'));
    assert.deepEqual(p, [
      'the joiner (10.6.20-MariaDB) is older than the donor (10.11.6-MariaDB): replication from a newer server is not supported',
    ]);
  });

  it("refuses replication between flavors, and names a MySQL account's missing privileges", async () => {
    const p = await problems(
      facts('10.11.6-MariaDB'),
      facts('8.0.36', { privileges: new Set(['SELECT', 'INSERT']) }),
    );
    assert.ok(
      p.includes('donor is mariadb and joiner is mysql: replication between flavors is not supported'),
      p.join('\n'),
    );
    assert.ok(
      p.some((l) => /^the joiner account root@% lacks CREATE, DROP, ALTER/.test(l)),
      p.join('\n'),
    );
  });

  it('refuses a joiner with local_infile off when rows go through LOAD DATA LOCAL, with the fix', async () => {
    const p = await problems(facts('10.11.6-MariaDB'), facts('10.11.6-MariaDB', { localInfile: false }));
    assert.deepEqual(p, [
      'the joiner has local_infile=OFF: run SET GLOBAL local_infile = ON there (this clone loads with LOAD DATA LOCAL)',
    ]);
  });

  it('accepts local_infile off when the joiner takes bulk INSERTs', async () => {
    const joiner = facts('10.11.6-MariaDB', { localInfile: false });
    assert.deepEqual(await problems(facts('10.11.6-MariaDB'), joiner, true), []);
  });

  it('refuses system-versioned tables for a joiner older than MariaDB 10.11 (it cannot take their history)', async () => {
    const p = await problems(facts('10.11.6-MariaDB'), facts('10.11.6-MariaDB'), true, ['hist']);
    assert.deepEqual(p, []);
    const old = await problems(facts('10.6.20-MariaDB'), facts('10.6.21-MariaDB'), true, ['hist']);
    assert.deepEqual(old, [
      'system-versioned tables (app.hist) need a MariaDB 10.11 or later joiner to receive their history (the joiner is 10.6.21-MariaDB); leave their schemas out with --schemas',
    ]);
  });
});
