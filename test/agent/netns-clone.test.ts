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

/**
 * The physical methods between two "hosts": network namespaces joined by a veth pair limited to
 * 200 Mbit/s with tc tbf, a sandbox mysqld and an agent in each (the mysqld started inside its
 * namespace, listening there on every address), the clone typed on the joiner's host. The test
 * reaches each mysqld through its socket, which no namespace hides.
 */
const id = (process.pid % 200) + 20;
const ns = { a: `rc-a-${process.pid}`, b: `rc-b-${process.pid}` };
const addr = { a: `10.${id}.1.1`, b: `10.${id}.1.2` };
const dev = { a: `rca${process.pid}`, b: `rcb${process.pid}` };
const work = join(process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test', `netns-clone-${process.pid}`);
const agents: ChildProcess[] = [];
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
const inNs = (n: string, ...args: string[]) =>
  execFileSync('ip', ['netns', 'exec', n, ...args], { stdio: 'pipe', env: process.env });
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
      ns.b,
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
    ip('netns', 'add', ns.a);
    ip('netns', 'add', ns.b);
    ip('link', 'add', dev.a, 'type', 'veth', 'peer', 'name', dev.b);
    ip('link', 'set', dev.a, 'netns', ns.a);
    ip('link', 'set', dev.b, 'netns', ns.b);
    for (const h of ['a', 'b'] as const) {
      inNs(ns[h], 'ip', 'link', 'set', 'lo', 'up');
      inNs(ns[h], 'ip', 'addr', 'add', `${addr[h]}/24`, 'dev', dev[h]);
      inNs(ns[h], 'ip', 'link', 'set', dev[h], 'up');
      inNs(
        ns[h],
        'tc',
        'qdisc',
        'add',
        'dev',
        dev[h],
        'root',
        'tbf',
        'rate',
        '200mbit',
        'burst',
        '256kb',
        'latency',
        '100ms',
      );
    }
    for (const [s, h] of [
      [donor, 'a'],
      [joiner, 'b'],
    ] as const) {
      await sandboxDown(s.info.name);
      inNs(ns[h], process.execPath, join(ROOT, 'bin', 'reseed'), 'sandbox', 'up', s.info.name);
    }
    execFileSync(process.execPath, [
      join(ROOT, 'bin', 'reseed'),
      'agent',
      'init',
      '--hosts',
      `alpha=${addr.a},beta=${addr.b}`,
      '--out',
      join(work, 'pki'),
    ]);
    for (const [host, h, s] of [
      ['alpha', 'a', donor],
      ['beta', 'b', joiner],
    ] as const) {
      const file = join(work, 'pki', host, 'config.json');
      const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      Object.assign(c, {
        stateDir: 'state',
        serve: [s.info.dir],
        receive: [s.info.dir],
        listen: { host: addr[h], port: 7420 },
        mysql: { uri: `mysql://root@127.0.0.1:${s.info.port}` },
        datadir: join(s.info.dir, 'data'),
        service: { kind: 'sandbox', name: s.info.name },
      });
      writeFileSync(file, JSON.stringify(c));
      agents.push(await startAgentProcess(file, ns[h]));
    }
  });
  after(async () => {
    for (const a of agents) if (a.exitCode === null) a.kill('SIGKILL');
    await stopAll();
    for (const n of Object.values(ns)) {
      try {
        ip('netns', 'del', n);
      } catch {
        // never made
      }
    }
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
      assert.equal(job.result.replication.from, `${addr.a}:${donor.info.port}`);
      await sql(donor, `INSERT INTO shop.items VALUES (${method === 'copy' ? 70001 : 70000}, 'after', 1)`);
      const [g] = await sql(donor, 'SELECT @@gtid_binlog_pos AS g');
      const [w] = await sql(joiner, `SELECT MASTER_GTID_WAIT('${String(g?.g)}', 30) AS r`);
      assert.equal(Number(w?.r), 0, 'what the donor writes afterwards arrives over the link');
      assert.equal(await checksum(joiner, 'shop.items'), await checksum(donor, 'shop.items'));
      const [st] = await sql(joiner, 'SHOW SLAVE STATUS');
      assert.equal(st?.Master_Host, addr.a);
      assert.equal(st?.Slave_IO_Running, 'Yes');
    });
});
