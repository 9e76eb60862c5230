import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyArgs, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

/** The CloneManifest: written last, so its presence means a clone completed; `reseed status` reads it. */
let donor: TestServer;
let joiner: TestServer;
const manifests = () => join(process.env.RESEED_STATE_DIR!, 'manifests');
const files = () => (existsSync(manifests()) ? readdirSync(manifests()) : []);

async function status(server: TestServer, ...extra: string[]) {
  return reseed(['status', '--to', server.uri, ...extra]);
}

describe('clone manifest and status', () => {
  before(async () => {
    donor = await startServer('mf-donor');
    joiner = await startServer('mf-joiner');
    await donor.sql('CREATE DATABASE IF NOT EXISTS shop');
    await donor.sql('CREATE TABLE IF NOT EXISTS shop.t (id INT PRIMARY KEY, v TEXT)');
    await donor.sql("INSERT IGNORE INTO shop.t SELECT seq, REPEAT('x', seq % 50) FROM shop.seq_1_to_3000");
  });
  after(stopAll);

  it('a joiner no clone completed onto has no manifest: status says so, exit 12', async () => {
    const r = await status(joiner);
    assert.equal(r.code, 12, r.stderr);
    assert.match(r.stdout, /last clone {4}none recorded/);
    assert.match(r.stderr, /no completed clone onto .* is recorded here/);
    const j = await status(joiner, '--json');
    assert.equal(j.code, 12);
    assert.equal(JSON.parse(j.stdout.split('\n')[0]!).manifest, null);
  });

  let firstId = '';
  it('a completed clone writes its manifest last; status shows it beside the joiner as it is now', async () => {
    const r = await reseed(copyArgs(donor, joiner, '--verify', '--json'));
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      manifest: string;
      coordinates: { gtid: string };
    };
    assert.deepEqual(files(), [summary.manifest.split('/').at(-1)]);
    const m = JSON.parse(readFileSync(summary.manifest, 'utf8')) as Record<string, unknown> & {
      id: string;
      coordinates: { gtid: string };
      verify: { identical: boolean; chunks: number };
      joiner: { port: number; datadir: string };
    };
    firstId = m.id;
    assert.equal(m.method, 'logical');
    assert.equal(m.rows, 3000);
    assert.equal(m.verify.identical, true);
    assert.equal(m.coordinates.gtid, summary.coordinates.gtid);
    assert.equal(m.joiner.port, joiner.info.port);
    assert.doesNotMatch(readFileSync(summary.manifest, 'utf8'), /password|secret/i);
    const s = await status(joiner);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, new RegExp(`last clone {4}logical from root@127\\.0\\.0\\.1:${donor.info.port}`));
    assert.match(s.stdout, /copied {6}shop, test: 1 tables, 3000 rows/);
    assert.match(s.stdout, /verify {6}identical/);
    assert.match(s.stdout, /now {11}not replicating/);
  });

  it('a failed clone puts the last manifest back; while it runs, there is none', async () => {
    const r = await reseed(copyArgs(donor, joiner, '--force'), { env: { RESEED_FAULT: 'copied' } });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /donor and joiner are as they were/);
    const s = await status(joiner, '--json');
    assert.equal(s.code, 0);
    assert.equal((JSON.parse(s.stdout) as { manifest: { id: string } }).manifest.id, firstId);
    assert.equal(files().length, 1, files().join(', '));
  });

  it('kill -9 mid-clone: no manifest until recover puts the last one back', async () => {
    const r = await reseed(copyArgs(donor, joiner, '--force'), { env: { RESEED_FAULT: 'copied:kill' } });
    assert.equal(r.code, null);
    assert.equal((await status(joiner)).code, 12, 'a half-done clone must not look completed');
    const rec = await reseed(['recover']);
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    const s = await status(joiner, '--json');
    assert.equal((JSON.parse(s.stdout) as { manifest: { id: string } }).manifest.id, firstId);
  });

  it('a new clone replaces the manifest', async () => {
    const r = await reseed(copyArgs(donor, joiner, '--force'));
    assert.equal(r.code, 0, r.stderr);
    const s = await status(joiner, '--json');
    assert.notEqual((JSON.parse(s.stdout) as { manifest: { id: string } }).manifest.id, firstId);
    assert.equal(files().length, 1, files().join(', '));
  });
});
