import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertSameTables, copyArgs, reseed, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

// The donor throttle for real: a cap on the read rate, and the adaptive back-off driven by each of
// its signals (the user's health query, threads running on the donor, a watched replica).

let donor: TestServer;

interface Summary {
  type: string;
  bytes: number;
  phases: Record<string, number>;
  throttle: {
    adaptive: boolean;
    maxRate?: number;
    slowedMs: number;
    reasons: Record<string, number>;
    lowestRate?: number;
  };
}

async function cloneJson(schema: string, ...extra: string[]): Promise<{ summary: Summary; stdout: string }> {
  const joiner = await startServer(`throttle-j${Math.random().toString(36).slice(2, 7)}`);
  const r = await reseed(copyArgs(donor, joiner, '--schemas', schema, '--json', ...extra));
  assert.equal(r.code, 0, r.stderr + r.stdout);
  await assertSameTables(donor, joiner, [`${schema}.t`]);
  const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Summary;
  assert.equal(summary.type, 'summary');
  return { summary, stdout: r.stdout };
}

describe('donor throttle', () => {
  before(async () => {
    donor = await startServer('throttle-donor');
    // ~12 MB and ~3 MB of rows.
    for (const [schema, rows] of [
      ['big', 12_000],
      ['small', 3_000],
    ] as const) {
      await donor.sql(`CREATE DATABASE ${schema}`);
      await donor.sql(`CREATE TABLE ${schema}.t (id INT PRIMARY KEY, v VARBINARY(1000))`);
      await donor.sql(
        `INSERT INTO ${schema}.t SELECT seq, UNHEX(REPEAT(MD5(RAND()), 62)) FROM ${schema}.seq_1_to_${rows}`,
      );
    }
  });
  after(stopAll);

  it('--max-rate caps the read rate, and the summary says so', async () => {
    const cap = 4 * 2 ** 20;
    const { summary, stdout } = await cloneJson('big', '--max-rate', '4M');
    assert.equal(summary.throttle.maxRate, cap);
    const rate = summary.bytes / (summary.phases.copy! / 1000);
    assert.ok(rate < cap * 1.3, `read at ${rate} bytes/s under a cap of ${cap}`);
    assert.match(stdout, /"throttle"/);
  });

  it('a health query that says "overloaded" slows the reads, halving the rate, and the summary names it', async () => {
    const { summary, stdout } = await cloneJson('big', '--throttle-query', 'SELECT 1');
    assert.ok((summary.throttle.reasons['health query'] ?? 0) >= 2, JSON.stringify(summary.throttle));
    assert.ok(summary.throttle.slowedMs > 0);
    assert.ok(summary.throttle.lowestRate! <= 8 * 2 ** 20, JSON.stringify(summary.throttle));
    assert.match(stdout, /the health query returned 1: donor reads slowed to/);
  });

  it('once the health query says healthy again, the reads are raised (each raise an event) until the donor is back at full speed', async () => {
    // Overloaded for the throttle's first 6 checks (1.5 s), healthy afterwards: the query counts
    // its own runs in its session (the throttle's probe session). --max-rate keeps the clone
    // going long enough to see the recovery.
    const { summary, stdout } = await cloneJson(
      'big',
      '--max-rate',
      '2M',
      '--throttle-query',
      'SELECT (@reseed_checks := IFNULL(@reseed_checks, 0) + 1) <= 6',
    );
    assert.ok((summary.throttle.reasons['health query'] ?? 0) >= 1, JSON.stringify(summary.throttle));
    assert.match(stdout, /donor calm for 1 s: reads (raised to|back at --max-rate)/);
    assert.match(stdout, /the donor recovered/);
  });

  it('a healthy donor is never slowed', async () => {
    const { summary } = await cloneJson('small', '--throttle-query', 'SELECT 0');
    assert.deepEqual(summary.throttle.reasons, {});
    assert.equal(summary.throttle.slowedMs, 0);
  });

  it('threads running on the donor, other than reseed, slow the reads', async () => {
    const busy = await Promise.all([1, 2, 3].map(() => donor.session()));
    const sleeping = busy.map((s) => s.query('SELECT SLEEP(60)').catch(() => undefined));
    try {
      const { summary } = await cloneJson('small', '--throttle-threads', '1');
      assert.ok((summary.throttle.reasons.threads_running ?? 0) >= 1, JSON.stringify(summary.throttle));
    } finally {
      for (const s of busy) s.destroy();
      await Promise.all(sleeping);
    }
  });

  it('a watched "replica" that does not replicate is named in a warning, and does not slow anything', async () => {
    const other = await startServer('throttle-other');
    const { summary, stdout } = await cloneJson('small', '--throttle-replica', other.uri);
    assert.match(stdout, /does not replicate: its lag is not watched/);
    assert.deepEqual(summary.throttle.reasons, {});
  });

  it('verify paces its donor checksums the same way, and its report says so', async () => {
    const joiner = await startServer('throttle-verify');
    const copied = await reseed(copyArgs(donor, joiner, '--schemas', 'big'));
    assert.equal(copied.code, 0, copied.stderr);
    const args = ['verify', '--from', donor.uri, '--to', joiner.uri, '--schemas', 'big'];
    const r = await reseed([...args, '--throttle-query', 'SELECT 1', '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      ok: boolean;
      throttle: { reasons: Record<string, number> };
    };
    assert.equal(report.ok, true);
    assert.ok((report.throttle.reasons['health query'] ?? 0) >= 1, JSON.stringify(report.throttle));
    const text = await reseed([...args, '--max-rate', '100M']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /throttle: cap 100\.0 MiB\/s; never slowed/);
    // At a low cap a chunk's wait is long: Ctrl-C must end it at once, not after the wait.
    let sentAt = 0;
    const stopped = await reseed([...args, '--max-rate', '200k'], {
      onStderr: (_, pid) => {
        if (sentAt) return;
        sentAt = Date.now();
        setTimeout(() => process.kill(pid, 'SIGINT'), 1500);
      },
    });
    const took = Date.now() - sentAt - 1500;
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.ok(took < 10_000, `exited ${took} ms after SIGINT (the whole verify would take about 60 s)`);
  });

  it('--no-throttle turns it off; with a --throttle-* option it is refused', async () => {
    const { summary } = await cloneJson('small', '--no-throttle');
    assert.equal(summary.throttle.adaptive, false);
    const joiner = await startServer('throttle-refused');
    const r = await reseed(copyArgs(donor, joiner, '--no-throttle', '--throttle-query', 'SELECT 1'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--no-throttle contradicts --throttle-query/);
    const bad = await reseed(copyArgs(donor, joiner, '--max-rate', 'fast'));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--max-rate takes bytes per second, e\.g\. 50M/);
    // A health query that fails, or a watched replica that cannot be reached, is refused by
    // preflight: nothing copied, no journal left.
    const query = await reseed(copyArgs(donor, joiner, '--throttle-query', 'SELEC 1'));
    assert.equal(query.code, 4, query.stderr);
    assert.match(query.stderr, /--throttle-query failed on the donor: .*SQL syntax/);
    const replica = await reseed(copyArgs(donor, joiner, '--throttle-replica', 'mysql://root@127.0.0.1:1'));
    assert.equal(replica.code, 4, replica.stderr);
    assert.match(replica.stderr, /--throttle-replica: cannot connect to root@127\.0\.0\.1:1/);
    assert.deepEqual(
      await joiner.sql(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ('big', 'small')",
      ),
      [],
    );
  });
});
