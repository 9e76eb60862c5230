import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProgressModel } from '../../src/cli/progress-model.js';
import type { ProgressEvent } from '../../src/progress.js';

/** Events at given milliseconds after the model's start. */
function feed(model: ProgressModel, events: [number, ProgressEvent][]): void {
  for (const [ms, e] of events) model.apply(e, model.startedAt + ms);
}

describe('progress model', () => {
  it('knows the totals before the copy and corrects them as chunks finish', () => {
    const m = new ProgressModel(0);
    feed(m, [
      [0, { type: 'plan', lines: [], dryRun: false, phases: ['preflight', 'copy', 'verify'] }],
      [10, { type: 'table-planned', table: 'a.big', estimatedRows: 1000, estimatedBytes: 1 << 20 }],
      [10, { type: 'table-planned', table: 'a.small', estimatedRows: 100, estimatedBytes: 4096 }],
      [20, { type: 'phase', phase: 'copy' }],
    ]);
    let r = m.report(20);
    assert.equal(r.copy!.rowsTotal, 1100, 'the estimates, before any row');
    assert.equal(r.verify!.rowsTotal, 1100, 'verify will compare what is copied');
    assert.equal(r.phaseNumber, 2);
    assert.equal(r.etaMs, null, 'no speed measured yet');

    // a.big is split in 4 chunks; two are in with 300 rows each: it holds about 1200 rows.
    feed(m, [
      [520, { type: 'rows', table: 'a.big', rows: 300, bytes: 3000 }],
      [
        520,
        {
          type: 'chunk-done',
          table: 'a.big',
          rows: 300,
          bytes: 3000,
          chunks: 4,
          chunksDone: 1,
          allPlanned: true,
        },
      ],
      [1020, { type: 'rows', table: 'a.big', rows: 300, bytes: 3000 }],
      [
        1020,
        {
          type: 'chunk-done',
          table: 'a.big',
          rows: 300,
          bytes: 3000,
          chunks: 4,
          chunksDone: 2,
          allPlanned: true,
        },
      ],
    ]);
    r = m.report(1020);
    assert.equal(r.copy!.rowsTotal, 1300);
    assert.equal(r.copy!.bytesTotal, 12_000 + 4096, 'bytes as they travel, per row of the table');
    assert.equal(r.copy!.percent, 46.1);
    assert.ok(r.copy!.rowsPerSecond! > 0 && r.copy!.etaMs! > 0);
    assert.equal(r.etaForecast, true, "verify's time is forecast at the copy's speed");
    assert.deepEqual(
      r.copy!.active.map((t) => t.table),
      ['a.big'],
    );

    // A table bigger than its estimate: the total follows, the percentage stays under 100.
    feed(m, [[1100, { type: 'rows', table: 'a.small', rows: 250, bytes: 250 }]]);
    r = m.report(1100);
    assert.equal(r.copy!.rowsTotal, 1200 + 250);
    feed(m, [
      [1200, { type: 'rows', table: 'a.big', rows: 600, bytes: 6000 }],
      [1200, { type: 'table-done', table: 'a.big', rows: 1200, bytes: 12_000 }],
    ]);
    r = m.report(1200);
    assert.equal(r.copy!.percent, 99.9, 'never 100 before the copy is done');
    assert.ok(r.percent! < 100);
    feed(m, [
      [1300, { type: 'table-done', table: 'a.small', rows: 250, bytes: 250 }],
      [1300, { type: 'phase', phase: 'verify' }],
    ]);
    r = m.report(1300);
    assert.equal(r.copy!.percent, 100);
    assert.equal(r.copy!.rowsTotal, 1450, 'what was copied');
    assert.equal(r.percent, 50);
  });

  it('counts verify by chunks and tables, and reaches 100 at the end only', () => {
    const m = new ProgressModel(0);
    feed(m, [
      [0, { type: 'verify-planned', table: 'a.t', estimatedRows: 200 }],
      [0, { type: 'verify-planned', table: 'a.u', estimatedRows: 10 }],
      [
        1500,
        {
          type: 'verify-chunk',
          table: 'a.t',
          rows: 100,
          chunks: 2,
          chunksDone: 1,
          allPlanned: false,
          mismatch: false,
        },
      ],
    ]);
    let r = m.report(1500);
    assert.equal(r.verify!.chunksDone, 1);
    assert.equal(r.verify!.allPlanned, false);
    assert.equal(r.verify!.tables, 2);
    assert.equal(r.percent, 47.6);
    feed(m, [
      [
        2000,
        {
          type: 'verify-chunk',
          table: 'a.t',
          rows: 100,
          chunks: 2,
          chunksDone: 2,
          allPlanned: true,
          mismatch: true,
        },
      ],
      [2000, { type: 'verify-table', table: 'a.t', chunks: 2, rows: 200, mismatches: 1 }],
      [
        2100,
        {
          type: 'verify-chunk',
          table: 'a.u',
          rows: 10,
          chunks: 1,
          chunksDone: 1,
          allPlanned: true,
          mismatch: false,
        },
      ],
      [2100, { type: 'verify-table', table: 'a.u', chunks: 1, rows: 10, mismatches: 0 }],
    ]);
    r = m.report(2100);
    assert.equal(r.verify!.done, true);
    assert.equal(r.verify!.mismatches, 1);
    assert.equal(r.verify!.tablesDone, 2);
    m.finish(2200);
    assert.equal(m.report(2200).percent, 100);
  });

  it('reports the catch-up and what the donor waits for', () => {
    const m = new ProgressModel(0);
    feed(m, [
      [0, { type: 'phase', phase: 'snapshot' }],
      [10, { type: 'throttle', active: true, reason: 'read lock waits for a query' }],
    ]);
    assert.equal(m.report(10).throttle, 'read lock waits for a query');
    feed(m, [
      [20, { type: 'throttle', active: false, reason: 'read lock waits for a query' }],
      [30, { type: 'phase', phase: 'replicate' }],
      [40, { type: 'lag', secondsBehind: 12, gtid: '0-1-100', transactionsBehind: 40 }],
    ]);
    const r = m.report(540);
    assert.equal(r.throttle, undefined);
    assert.deepEqual(r.catchUp, { secondsBehind: 12, transactionsBehind: 40, gtid: '0-1-100', ms: 500 });
  });
});
