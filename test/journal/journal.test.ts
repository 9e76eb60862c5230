import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Journal, processStartTime, scanJournals } from '../../src/journal/journal.js';

const header = {
  operation: 'clone',
  donor: { host: 'd', port: 1, user: 'u' },
  joiner: { host: 'j', port: 2, user: 'u' },
};

describe('journal', () => {
  it('undoes owed steps in reverse order, skipping resolved ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-journal-'));
    const j = Journal.create(header, dir);
    j.record('one', { target: 'joiner', statements: ['undo 1'] });
    const two = j.record('two', { target: 'donor', statements: ['undo 2a', 'undo 2b'] });
    j.record('three', { target: 'joiner', statements: ['undo 3'] });
    j.resolve(two);
    const ran: string[] = [];
    const report = await j.rollback(
      async (undo) => void ran.push(...(undo.statements ?? []).map((sql) => `${undo.target}:${sql}`)),
    );
    assert.deepEqual(ran, ['joiner:undo 3', 'joiner:undo 1']);
    assert.deepEqual(report, { undone: ['three', 'one'], failed: [] });
    assert.deepEqual(scanJournals(dir).unfinished, []);
  });

  it('survives a torn last line, and keeps a failed undo owed for `recover`', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-journal-'));
    const j = Journal.create(header, dir);
    j.record('one', { target: 'joiner', statements: ['undo 1'] });
    j.record('two', { target: 'joiner', statements: ['undo 2'] });
    j.close();
    appendFileSync(j.path, '{"t":"step","seq":3,"ti');
    const [again] = scanJournals(dir).unfinished;
    assert.ok(again);
    assert.deepEqual(
      again.pending().map((p) => p.title),
      ['two', 'one'],
    );
    const report = await again.rollback(async (undo) => {
      if (undo.statements?.includes('undo 2')) throw new Error('server gone');
    });
    assert.deepEqual(report.failed, [{ title: 'two', error: 'server gone' }]);
    const [third] = scanJournals(dir).unfinished;
    assert.deepEqual(
      third!.pending().map((p) => p.title),
      ['two'],
    );
    third!.close();
    assert.doesNotMatch(readFileSync(j.path, 'utf8'), /password/i);
  });
});

describe('journal files', () => {
  it('are made at the first record only, and a journal that owes nothing is discarded', () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-journal-'));
    const j = Journal.create(header, dir);
    assert.equal(existsSync(j.path), false, 'no file before anything is recorded');
    const probe = j.record('probe', { target: 'joiner', statements: ['undo'] });
    assert.equal(existsSync(j.path), true);
    j.resolve(probe);
    j.discardIfClean();
    assert.equal(existsSync(j.path), false, 'a refused operation leaves no journal');
  });

  it('a damaged line is reported with its file and line, and does not hide the other journals', () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-journal-'));
    const good = Journal.create(header, dir);
    good.record('one', { target: 'joiner', statements: ['undo 1'] });
    good.close();
    const bad = Journal.create(header, dir);
    bad.record('two', { target: 'joiner', statements: ['undo 2'] });
    bad.close();
    appendFileSync(bad.path, '{"t":"step", oops\n');
    const scan = scanJournals(dir, { readOnly: true });
    assert.deepEqual(
      scan.unfinished.map((j) => j.path),
      [good.path],
    );
    assert.equal(scan.damaged.length, 1);
    assert.match(scan.damaged[0]!.error.message, new RegExp(`${bad.path} is damaged at line 3`));
  });

  it('read-only opening writes nothing, even with a torn last line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-journal-'));
    const j = Journal.create(header, dir);
    j.record('one', { target: 'joiner', statements: ['undo 1'] });
    j.close();
    appendFileSync(j.path, '{"t":"step","seq":2,"ti');
    const before = readFileSync(j.path);
    const [listed] = scanJournals(dir, { readOnly: true }).unfinished;
    assert.deepEqual(
      listed!.pending().map((p) => p.title),
      ['one'],
    );
    assert.deepEqual(readFileSync(j.path), before);
    assert.throws(() => listed!.record('x', { target: 'joiner', statements: [] }), /read-only/);
  });

  it('tells its writer from a later process that reuses the PID', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-journal-'));
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const j = Journal.create(header, dir);
      j.record('one', { target: 'joiner', statements: [] });
      j.close();
      // Rewrite the journal as if `sleep` had written it: same PID, start time ours or its own.
      const lines = readFileSync(j.path, 'utf8').split('\n');
      const begin = JSON.parse(lines[0]!) as Record<string, unknown>;
      const mine = begin.pidStart;
      for (const [pidStart, alive] of [
        [processStartTime(child.pid!), true],
        [mine, false],
      ] as const) {
        lines[0] = JSON.stringify({ ...begin, pid: child.pid, pidStart });
        writeFileSync(j.path, lines.join('\n'));
        assert.equal(Journal.open(j.path, { readOnly: true }).ownerAlive(), alive);
      }
    } finally {
      child.kill('SIGKILL');
    }
  });
});
