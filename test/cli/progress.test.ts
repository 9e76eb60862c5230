import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadSampleData } from '../../src/sandbox/sample-data.js';
import {
  REPL_ENV,
  ROOT,
  cloneArgs,
  createReplUser,
  reseed,
  startServer,
  stopAll,
} from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

/**
 * What a person sees: `reseed clone --verify` runs in a real pseudo-terminal (tmux, 120x50), and
 * the screen is captured several times a second while it runs, then once with its scrollback.
 */

const run = promisify(execFile);
const base = process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test';
/** Our own tmux server, its socket under the test directory: other tmux sessions are never touched. */
const SOCKET = join(base, `tmux-${process.pid}.sock`);
const SESSION = 'clone';
const RUN_MS = 120_000;
const PHASES = ['preflight', 'snapshot', 'schema', 'copy', 'objects', 'replicate', 'verify', 'catch-up'];

/** A JSON line, read field by field. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const tmux = (...args: string[]) => run('tmux', ['-S', SOCKET, ...args], { timeout: 10_000 });

let donor: TestServer;
let joiner: TestServer;
/** rows in the donor's tables */
let donorRows = 0;

/** The numbers of a live-area line such as "copy  ███░░ 42% | 9,362/~208,304 rows | ...". */
function lineNumbers(
  screen: string,
  label: string,
): { percent: number; done: number; total: number } | undefined {
  const m = new RegExp(`^${label} +[█░]* +(\\d+)% \\| (?:.*?\\| )?([\\d,]+)/~([\\d,]+) rows`, 'm').exec(
    screen,
  );
  if (!m) return undefined;
  const n = (s: string) => Number(s.replace(/,/g, ''));
  return { percent: Number(m[1]), done: n(m[2]!), total: n(m[3]!) };
}

function totalPercent(screen: string): number | undefined {
  const m = /^total +[█░]+ +(\d+)% \|/m.exec(screen);
  return m ? Number(m[1]) : undefined;
}

describe('progress on a terminal and in --json', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('prog-donor'), startServer('prog-joiner')]);
    const s = await donor.session();
    try {
      await loadSampleData(s, { bytes: 20 << 20 });
      // The statistics the estimates come from, as a long-lived donor has them.
      await s.query(
        'ANALYZE TABLE shop.orders, shop.order_items, shop.customers, shop.audit_log, shop.stores',
      );
    } finally {
      await s.close();
    }
    await createReplUser(donor);
    const [r] = await donor.sql(
      `SELECT (SELECT COUNT(*) FROM shop.orders) + (SELECT COUNT(*) FROM shop.order_items) +
              (SELECT COUNT(*) FROM shop.customers) + (SELECT COUNT(*) FROM shop.audit_log) +
              (SELECT COUNT(*) FROM shop.stores) AS n`,
    );
    donorRows = Number(r!.n);
  });
  after(async () => {
    await tmux('kill-session', '-t', SESSION).catch(() => undefined);
    rmSync(SOCKET, { force: true });
    await stopAll();
  });

  it('shows totals up front, a rising percentage, each phase once, verify progress and the summary', async (t) => {
    const stdoutFile = join(base, `progress-stdout-${process.pid}.txt`);
    const script = join(base, `progress-run-${process.pid}.sh`);
    const env = {
      ...REPL_ENV,
      RESEED_SANDBOX_DIR: process.env.RESEED_SANDBOX_DIR!,
      RESEED_STATE_DIR: process.env.RESEED_STATE_DIR!,
    };
    const args = cloneArgs(donor, joiner, '--verify', '--parallel', '2', '--chunk-rows', '5000');
    // stdout goes through tee, so the file shows what reached stdout; stderr stays the terminal.
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        ...Object.entries(env).map(([k, v]) => `export ${k}='${v}'`),
        `'${process.execPath}' '${join(ROOT, 'bin', 'reseed')}' ${args.map((a) => `'${a}'`).join(' ')} | tee '${stdoutFile}'`,
        'echo "EXIT $?"',
        'sleep 600',
      ].join('\n'),
      { mode: 0o755 },
    );
    await tmux('new-session', '-d', '-s', SESSION, '-x', '120', '-y', '50', script);
    const frames: string[] = [];
    let screen = '';
    const deadline = Date.now() + RUN_MS;
    try {
      while (!/^EXIT \d+$/m.test(screen)) {
        assert.ok(Date.now() < deadline, `no end within ${RUN_MS} ms; last screen:\n${screen}`);
        screen = (await tmux('capture-pane', '-p', '-t', SESSION)).stdout;
        if (screen !== frames.at(-1)) frames.push(screen);
        await new Promise((r) => setTimeout(r, 100));
      }
      // The whole output, scrollback included.
      screen = (await tmux('capture-pane', '-p', '-S', '-', '-t', SESSION)).stdout;
    } finally {
      await tmux('kill-session', '-t', SESSION).catch(() => undefined);
    }
    assert.match(screen, /^EXIT 0$/m, screen);

    // The copy: the total is known from its first frame, the percentage rises and stays below 100.
    const copying = frames.map((f) => lineNumbers(f, 'copy')).filter((c) => c !== undefined);
    t.diagnostic(`${frames.length} screens captured, ${copying.length} during the copy`);
    assert.ok(copying.length >= 2, `the copy seen in ${copying.length} frames:\n${frames.join('\n----\n')}`);
    for (const c of copying) {
      assert.ok(
        c.total >= donorRows * 0.8 && c.total <= donorRows * 1.2,
        `total ${c.total}, not about ${donorRows}`,
      );
      assert.ok(c.percent < 100, `${c.percent}% while copying`);
    }
    assert.ok(copying[0]!.done < copying[0]!.total, 'the total is there before the rows');
    for (let i = 1; i < copying.length; i++)
      assert.ok(copying[i]!.percent >= copying[i - 1]!.percent, 'the copy percentage never goes back');
    assert.ok(copying.at(-1)!.percent > copying[0]!.percent, 'and rises');
    assert.ok(!frames.some((f) => / 0\/1 rows/.test(f)), 'no "0/1 rows"');
    // The whole operation's percentage: below 100 until the end, never going back by more than
    // a corrected estimate can make it.
    const totals = frames.filter((f) => !f.includes('Clone complete')).map(totalPercent);
    const shown = totals.filter((p): p is number => p !== undefined);
    assert.ok(shown.length >= 3, 'the overall line is shown');
    for (let i = 0; i < shown.length; i++) {
      assert.ok(shown[i]! < 100, `overall ${shown[i]}% before the end`);
      if (i > 0)
        assert.ok(shown[i]! >= shown[i - 1]! - 1, `overall went from ${shown[i - 1]}% to ${shown[i]}%`);
    }
    assert.ok(
      frames.some((f) => /^ {2}shop\.order_items +[█░]+ +\d+% \| [\d,]+\/~[\d,]+ rows/m.test(f)),
      'a line per table',
    );

    // Verify: tables and chunks done while it runs, and its result after.
    assert.ok(
      frames.some((f) => /^verify +[█░]+ +\d+% \| tables \d\/5 \| chunks \d+(\/\d+| done) \|/m.test(f)),
      'verify shows tables and chunks done',
    );
    assert.match(screen, /^ {2}compared 5 tables, \d+ chunks, [\d,]+ rows in .*: no difference$/m);

    // Each phase once, as a line of its own; no bar left over anywhere.
    for (const phase of PHASES) {
      const lines = screen.split('\n').filter((l) => l.startsWith(`- ${phase}`));
      assert.equal(lines.length, 1, `"- ${phase}" lines:\n${screen}`);
      assert.match(lines[0]!, new RegExp(`^- ${phase}(: [^█░]*)?$`), 'nothing drawn over it');
    }
    assert.match(screen, /^- copy: 5 tables, ~[\d,]+ rows, ~[\d.]+ MiB \(the donor's estimates\)$/m);
    assert.doesNotMatch(screen, /[█░]/, 'the live area is gone at the end');

    // The summary: on the screen, and it came on stdout.
    assert.match(screen, /^Clone complete: .* \(logical\)$/m);
    assert.match(screen, /^ {2}verify +identical: 5 tables/m);
    const stdout = readFileSync(stdoutFile, 'utf8');
    assert.match(stdout, /^Clone complete: /m);
    assert.doesNotMatch(stdout, /^- copy/m, 'progress stays on stderr');
  });

  it('--json events carry the estimated totals, per-phase progress and verify progress', async () => {
    const r = await reseed(
      cloneArgs(donor, joiner, '--verify', '--force', '--chunk-rows', '20000', '--json'),
      {
        env: REPL_ENV,
        signal: AbortSignal.timeout(RUN_MS),
      },
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Json);
    const summary = events.at(-1)!;
    assert.equal(summary.type, 'summary');

    // Estimates before the copy starts.
    const copyStarts = events.findIndex((e) => e.type === 'phase' && e.phase === 'copy');
    const planned = events.slice(0, copyStarts).filter((e) => e.type === 'table-planned');
    assert.equal(planned.length, 5);
    const estimated = planned.reduce((a, e) => a + Number(e.estimatedRows), 0);
    assert.ok(
      estimated >= donorRows * 0.8 && estimated <= donorRows * 1.2,
      `estimated ${estimated} of ${donorRows}`,
    );

    const progress = events.filter((e) => e.type === 'progress');
    const first = progress.find((p) => p.stage === 'copy')!;
    assert.equal(first.copy.rowsTotal, estimated, 'the total from the first progress line on');
    assert.equal(first.copy.rows, 0);
    assert.equal(first.phases, 7);
    assert.equal(first.phaseNumber, 4);
    // Every phase of the plan after the estimates reports its progress.
    assert.deepEqual([...new Set(progress.map((p) => p.stage))], ['copy', 'objects', 'replicate', 'verify']);
    for (const p of progress.slice(0, -1)) assert.ok(p.percent < 100, `${p.percent}% before the end`);
    const last = progress.at(-1)!;
    assert.equal(last.percent, 100);
    assert.equal(last.copy.rows, summary.rows);
    assert.equal(last.copy.rowsTotal, summary.rows, 'corrected to what was copied');

    // Chunks and tables done, in the copy and in verify.
    const chunks = events.filter((e) => e.type === 'chunk-done');
    assert.ok(chunks.length > 5 && chunks.every((c) => c.chunksDone <= c.chunks));
    assert.equal(events.filter((e) => e.type === 'table-done').length, 5);
    assert.equal(events.filter((e) => e.type === 'verify-planned').length, 5);
    const verified = events.filter((e) => e.type === 'verify-table');
    assert.equal(verified.length, 5);
    assert.equal(
      verified.reduce((a, e) => a + Number(e.chunks), 0),
      summary.verify.chunks,
    );
    assert.equal(events.filter((e) => e.type === 'verify-chunk').length, summary.verify.chunks);
    assert.equal(last.verify.chunksDone, summary.verify.chunks);
    assert.equal(last.verify.tablesDone, 5);
    assert.equal(last.verify.rows, summary.verify.rows);
  });
});
