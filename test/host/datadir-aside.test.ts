import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { datadirRefusal } from '../../src/clone/joiner-datadir.js';
import { getSandbox } from '../../src/sandbox/sandbox.js';
import { ROOT, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let server: TestServer;
let datadir: string;

before(async () => {
  server = await startServer('aside');
  datadir = join(server.info.dir, 'data');
  await server.sql('CREATE DATABASE IF NOT EXISTS kept');
  await server.sql('CREATE TABLE IF NOT EXISTS kept.t (id INT PRIMARY KEY, v VARCHAR(40))');
  await server.sql("INSERT IGNORE INTO kept.t SELECT seq, CONCAT('row ', seq) FROM kept.seq_1_to_5000");
});
after(stopAll);

function driver(fault?: string) {
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'test', 'host', 'datadir-driver.ts'), server.info.name, 'kept'],
    { cwd: ROOT, env: { ...process.env, ...(fault ? { RESEED_FAULT: fault } : {}) }, encoding: 'utf8' },
  );
}

async function snapshot() {
  const [c] = await server.sql('CHECKSUM TABLE kept.t EXTENDED');
  return {
    checksum: String(c?.Checksum),
    inode: statSync(datadir).ino,
    // The driver writes a 1 MiB ibdata1 of 0x01 bytes where the copy would go: not this one.
    ownIbdata: !readFileSync(join(datadir, 'ibdata1'))
      .subarray(0, 64)
      .every((b) => b === 1),
  };
}

/** Nothing of the clone's left beside the datadir or in it, and the server runs on its own data. */
async function assertAsBefore(was: Awaited<ReturnType<typeof snapshot>>) {
  assert.equal(getSandbox(server.info.name)?.running, true, 'mysqld runs again');
  assert.deepEqual(await snapshot(), was);
  const beside = readdirSync(dirname(datadir)).filter((n) => n.includes('reseed-aside'));
  assert.deepEqual(beside, [], 'no aside directory left');
  assert.deepEqual(
    readdirSync(datadir).filter((n) => n.startsWith('.reseed-made')),
    [],
  );
}

test('a failure after the datadir was set aside puts it back and proves it, in-process', async () => {
  const was = await snapshot();
  const r = driver();
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /undone: |every change was undone \(3 step\(s\)\)/);
  assert.match(r.stdout, /donor and joiner, and the joiner's host, are as they were/);
  await assertAsBefore(was);
});

for (const point of ['datadir-stopped', 'datadir-moved', 'datadir-made', 'datadir-filled']) {
  test(`kill -9 at ${point}: reseed recover puts the datadir back and starts mysqld on it`, async () => {
    const was = await snapshot();
    const r = driver(`${point}:kill`);
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    const listed = await reseed(['recover', '--list']);
    assert.match(listed.stdout, /owed: stop the joiner's mysqld \(sandbox .*\) \(on the joiner's host /);
    const rec = await reseed(['recover']);
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    assert.match(rec.stdout, /donor and joiner, and the joiner's host, are as they were/);
    await assertAsBefore(was);
  });
}

test('an undo never removes a datadir it cannot prove it made, nor starts mysqld on it', async () => {
  const was = await snapshot();
  const r = driver('datadir-made:kill');
  assert.equal(r.signal, 'SIGKILL');
  // Someone put their own files where reseed's new datadir was: not reseed's to delete.
  const marker = readdirSync(datadir).find((n) => n.startsWith('.reseed-made'))!;
  rmSync(join(datadir, marker));
  writeFileSync(join(datadir, 'notes.txt'), 'mine\n');
  const rec = await reseed(['recover']);
  assert.equal(rec.code, 9, rec.stdout);
  assert.match(
    rec.stdout,
    /does not hold reseed's marker .*: it is not the directory reseed made, left in place/,
  );
  assert.match(
    rec.stdout,
    /FAILED: move the joiner's datadir aside .*: not run: an undo before it on the joiner's host failed/,
  );
  assert.match(rec.stdout, /FAILED: stop the joiner's mysqld .*: not run/);
  assert.equal(readFileSync(join(datadir, 'notes.txt'), 'utf8'), 'mine\n');
  assert.equal(
    getSandbox(server.info.name)?.running,
    false,
    'mysqld was not started on a datadir that is not its own',
  );
  // The DBA moves their files away, and recover finishes the job.
  rmSync(datadir, { recursive: true });
  const again = await reseed(['recover']);
  assert.equal(again.code, 0, again.stdout);
  await assertAsBefore(was);
});

test('a datadir that is a mount point is refused: it cannot be renamed aside', (t) => {
  const dir = join(server.info.dir, 'mounted');
  mkdirSync(dir, { recursive: true });
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  if (m.status !== 0) return t.skip('cannot mount tmpfs here');
  try {
    assert.match(datadirRefusal(dir) ?? '', /is a mount point: reseed sets a datadir aside by renaming it/);
  } finally {
    spawnSync('umount', [dir]);
  }
  assert.equal(datadirRefusal(dir), undefined);
  assert.match(datadirRefusal(join(dir, 'nope')) ?? '', /does not exist/);
});
