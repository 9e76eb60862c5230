import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../src/mysql/server.js';
import { sandboxDown } from '../../src/sandbox/sandbox.js';
import { startAgentProcess } from '../helpers/agents.js';
import { REPL_ENV, ROOT, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';
import { inNs, makeHosts, removeHosts } from '../helpers/netns.js';
import type { Hosts } from '../helpers/netns.js';

/**
 * The physical methods between two "hosts": network namespaces joined by a veth pair limited to
 * 200 Mbit/s with tc tbf, a sandbox mysqld and an agent in each (the mysqld started inside its
 * namespace, listening there on every address), the clone typed on the joiner's host. The test
 * reaches each mysqld through its socket, which no namespace hides.
 */
let h: Hosts;
const work = join(process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test', `netns-clone-${process.pid}`);
const agents: ChildProcess[] = [];
let donor: TestServer;
let joiner: TestServer;

async function sql(s: TestServer, statement: string): Promise<Record<string, unknown>[]> {
  const c = await connect({
    host: 'localhost',
    port: 0,
    user: 'root',
    socketPath: join(s.info.dir, 'mariadbd.sock'),
  });
  try {
    return await c.query(statement);
  } finally {
    await c.close();
  }
}

const checksum = async (s: TestServer, t: string) =>
  String((await sql(s, `CHECKSUM TABLE ${t}`))[0]?.Checksum);

/** `reseed clone` typed on the joiner's host (namespace b). */
function clone(method: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      h.ns.b,
      process.execPath,
      join(ROOT, 'bin', 'reseed'),
      'clone',
      '--from',
      'agent://alpha',
      '--to',
      'agent://beta',
      '--method',
      method,
      '--force',
      '--replication-user',
      'repl',
      '--json',
    ],
    {
      env: { ...process.env, ...REPL_ENV, RESEED_AGENTS: join(work, 'pki', 'agents.json') },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('physical clones between two hosts (network namespaces)', () => {
  before(async () => {
    mkdirSync(work, { recursive: true });
    // Made here, then started again inside their namespaces, listening on every address there.
    donor = await startServer('nc-donor', ['bind-address = 0.0.0.0']);
    joiner = await startServer('nc-joiner', ['bind-address = 0.0.0.0']);
    await donor.sql('CREATE DATABASE shop');
    await donor.sql('CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(64), price DECIMAL(10,2))');
    await donor.sql(
      "INSERT INTO shop.items SELECT seq, CONCAT('item ', seq), seq / 7 FROM shop.seq_1_to_50000",
    );
    await donor.sql("CREATE USER repl@'%' IDENTIFIED BY 'repl-secret'");
    await donor.sql("GRANT REPLICATION SLAVE ON *.* TO repl@'%'");
    await joiner.sql('CREATE DATABASE legacy');
    h = makeHosts('rc', `${(process.pid % 200) + 20}.1`, '200mbit', '256kb');
    for (const [s, x] of [
      [donor, 'a'],
      [joiner, 'b'],
    ] as const) {
      await sandboxDown(s.info.name);
      inNs(h.ns[x], process.execPath, join(ROOT, 'bin', 'reseed'), 'sandbox', 'up', s.info.name);
    }
    execFileSync(process.execPath, [
      join(ROOT, 'bin', 'reseed'),
      'agent',
      'init',
      '--hosts',
      `alpha=${h.addr.a},beta=${h.addr.b}`,
      '--out',
      join(work, 'pki'),
    ]);
    for (const [host, x, s] of [
      ['alpha', 'a', donor],
      ['beta', 'b', joiner],
    ] as const) {
      const file = join(work, 'pki', host, 'config.json');
      const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      Object.assign(c, {
        stateDir: 'state',
        serve: [s.info.dir],
        receive: [s.info.dir],
        listen: { host: h.addr[x], port: 7420 },
        mysql: { uri: `mysql://root@127.0.0.1:${s.info.port}` },
        datadir: join(s.info.dir, 'data'),
        service: { kind: 'sandbox', name: s.info.name },
      });
      writeFileSync(file, JSON.stringify(c));
      agents.push(await startAgentProcess(file, h.ns[x]));
    }
  });
  after(async () => {
    for (const a of agents) if (a.exitCode === null) a.kill('SIGKILL');
    await stopAll();
    removeHosts(h);
  });

  for (const method of ['mariabackup', 'copy'])
    it(`--method ${method}: a verified replica across the 200 Mbit/s link, replicating from the donor's host`, async () => {
      await sql(
        donor,
        `INSERT INTO shop.items VALUES (${method === 'copy' ? 60001 : 60000}, '${method}', 1)`,
      );
      const r = await clone(method);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const job = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
        result: { verify: { identical: boolean }; replication: { from: string } };
      };
      assert.equal(job.result.verify.identical, true);
      assert.equal(job.result.replication.from, `${h.addr.a}:${donor.info.port}`);
      await sql(donor, `INSERT INTO shop.items VALUES (${method === 'copy' ? 70001 : 70000}, 'after', 1)`);
      const [g] = await sql(donor, 'SELECT @@gtid_binlog_pos AS g');
      const [w] = await sql(joiner, `SELECT MASTER_GTID_WAIT('${String(g?.g)}', 30) AS r`);
      assert.equal(Number(w?.r), 0, 'what the donor writes afterwards arrives over the link');
      assert.equal(await checksum(joiner, 'shop.items'), await checksum(donor, 'shop.items'));
      const [st] = await sql(joiner, 'SHOW SLAVE STATUS');
      assert.equal(st?.Master_Host, h.addr.a);
      assert.equal(st?.Slave_IO_Running, 'Yes');
    });
});
