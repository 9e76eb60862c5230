import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  EVERY_TYPE_TABLES,
  assertSameHistory,
  assertSameTables,
  loadFixture,
  reseed,
  startServer,
  stopAll,
  copyArgs,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let donor: TestServer;

const TABLES = [...EVERY_TYPE_TABLES, 'types.big'];

/** Clones into `joiner` (no replication), checks the loader used, verify's verdict and checksums. */
async function cloneAndCompare(joiner: TestServer, loader: string, ...extra: string[]): Promise<void> {
  const r = await reseed(copyArgs(donor, joiner, '--chunk-rows', '300', '--verify', '--json', ...extra));
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
  assert.equal(summary.type, 'summary');
  assert.equal(summary.loadedWith, loader);
  assert.equal((summary.verify as { ok: boolean }).ok, true);
  await assertSameTables(donor, joiner, TABLES);
  await assertSameHistory(donor, joiner);
}

describe('how rows enter the joiner', () => {
  before(async () => {
    donor = await startServer('load-donor');
    await loadFixture(donor, 'every-type.sql');
    // A row of 3 MB between small ones: more than a 1 MB max_allowed_packet can carry.
    await donor.sql('CREATE TABLE types.big (id INT PRIMARY KEY, b LONGBLOB, t TEXT)');
    await donor.sql(
      "INSERT INTO types.big VALUES (1, 'a', 'x'), (2, REPEAT(UNHEX('00FF5C0A09'), 600000), 'tab\\there'), (3, NULL, 'z')",
    );
  });
  after(stopAll);

  it('sends bulk INSERTs to a MariaDB joiner, and a row too big for a packet through LOAD DATA', async () => {
    await cloneAndCompare(await startServer('load-bulk', ['max_allowed_packet = 1M']), 'bulk-insert');
  });

  it('loads the same values with --load-mode load-data', async () => {
    await cloneAndCompare(await startServer('load-data'), 'load-data', '--load-mode', 'load-data');
  });

  it('refuses --load-mode load-data on a joiner without local_infile, and bulk INSERTs do without it', async () => {
    const joiner = await startServer('load-noinfile', ['local_infile = OFF']);
    const refused = await reseed(copyArgs(donor, joiner, '--load-mode', 'load-data'));
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(refused.stderr, /local_infile=OFF: run SET GLOBAL local_infile = ON/);
    assert.deepEqual(
      await joiner.sql("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'types'"),
      [],
    );
    // With the default max_allowed_packet every row fits a bulk packet: LOAD DATA is not needed.
    const r = await reseed(copyArgs(donor, joiner, '--json'));
    assert.equal(r.code, 0, r.stderr + r.stdout);
    await assertSameTables(donor, joiner, TABLES);
  });

  it('falls back to LOAD DATA when the joiner has no prepared statement left', async () => {
    const joiner = await startServer('load-nostmt');
    await joiner.sql('SET GLOBAL max_prepared_stmt_count = 0');
    const r = await reseed(copyArgs(donor, joiner, '--json'));
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(
      r.stdout,
      /no prepared statement left \(max_prepared_stmt_count\); chunk loaded with LOAD DATA LOCAL/,
    );
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.equal(summary.loadedWith, 'load-data');
    await assertSameTables(donor, joiner, TABLES);
  });
});
