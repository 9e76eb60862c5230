import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Journal, unfinishedJournals } from '../../src/journal/journal.js';

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
    assert.deepEqual(unfinishedJournals(dir), []);
  });

  it('survives a torn last line, and keeps a failed undo owed for `recover`', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-journal-'));
    const j = Journal.create(header, dir);
    j.record('one', { target: 'joiner', statements: ['undo 1'] });
    j.record('two', { target: 'joiner', statements: ['undo 2'] });
    j.close();
    appendFileSync(j.path, '{"t":"step","seq":3,"ti');
    const [again] = unfinishedJournals(dir);
    assert.ok(again);
    assert.deepEqual(
      again.pending().map((p) => p.title),
      ['two', 'one'],
    );
    const report = await again.rollback(async (undo) => {
      if (undo.statements?.includes('undo 2')) throw new Error('server gone');
    });
    assert.deepEqual(report.failed, [{ title: 'two', error: 'server gone' }]);
    const [third] = unfinishedJournals(dir);
    assert.deepEqual(
      third!.pending().map((p) => p.title),
      ['two'],
    );
    third!.close();
    assert.doesNotMatch(readFileSync(j.path, 'utf8'), /password/i);
  });
});
