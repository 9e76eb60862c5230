import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ReseedError, errorMessage } from '../errors.js';
import type { PublicEndpoint } from '../mysql/credentials.js';

export type Target = 'donor' | 'joiner';

/** How to undo one step: statements run in order on one server. Never holds a secret. */
export interface UndoAction {
  target: Target;
  statements: string[];
}

export interface JournalHeader {
  operation: string;
  donor: PublicEndpoint;
  joiner: PublicEndpoint;
}

type Entry =
  | ({ t: 'begin'; id: string; at: string; pid: number } & JournalHeader)
  | { t: 'step'; seq: number; title: string; undo: UndoAction }
  | { t: 'resolved'; seq: number }
  | { t: 'undone'; seq: number; ok: boolean; error?: string }
  | { t: 'end'; outcome: 'committed' | 'rolled-back'; at: string };

export interface PendingStep {
  seq: number;
  title: string;
  undo: UndoAction;
}

export interface RollbackReport {
  undone: string[];
  failed: { title: string; error: string }[];
}

export type UndoExecutor = (target: Target, statement: string) => Promise<void>;

export function journalDir(): string {
  return resolve(process.env.RESEED_STATE_DIR ?? join(homedir(), '.reseed', 'state'), 'journal');
}

/**
 * The durable undo log of one operation. Every step that changes a server records how to undo
 * itself *before* it acts (append + fsync), so a crash at any point leaves a journal that
 * `reseed recover` can roll back. Undo runs in reverse order.
 */
export class Journal {
  readonly path: string;
  readonly header: JournalHeader & { id: string; pid: number };
  #entries: Entry[];
  #fd: number | undefined;

  private constructor(path: string, entries: Entry[], fd: number | undefined) {
    this.path = path;
    this.#entries = entries;
    this.#fd = fd;
    const begin = entries[0];
    if (!begin || begin.t !== 'begin') throw new ReseedError('JOURNAL', `${path} is not a reseed journal`);
    this.header = {
      id: begin.id,
      pid: begin.pid,
      operation: begin.operation,
      donor: begin.donor,
      joiner: begin.joiner,
    };
  }

  static create(header: JournalHeader, dir = journalDir()): Journal {
    mkdirSync(dir, { recursive: true });
    const id = `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`;
    const path = join(dir, `${id}.jsonl`);
    const fd = openSync(path, 'a', 0o600);
    const journal = new Journal(
      path,
      [{ t: 'begin', id, at: new Date().toISOString(), pid: process.pid, ...header }],
      fd,
    );
    journal.#write(journal.#entries[0]!);
    return journal;
  }

  static open(path: string): Journal {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      throw new ReseedError('JOURNAL', `cannot read journal ${path}: ${errorMessage(err)}`, { cause: err });
    }
    // A crash can leave a torn last line (no newline yet); everything before it was fsynced. The
    // torn tail is cut off, so what is appended next starts on a line of its own.
    const complete = bytes.lastIndexOf(0x0a) + 1;
    if (complete < bytes.length) truncateSync(path, complete);
    const entries: Entry[] = [];
    for (const line of bytes.subarray(0, complete).toString('utf8').split('\n')) {
      if (line.trim() !== '') entries.push(JSON.parse(line) as Entry);
    }
    return new Journal(path, entries, openSync(path, 'a', 0o600));
  }

  get finished(): boolean {
    return this.#entries.some((e) => e.t === 'end');
  }

  /** Steps whose undo is still owed, most recent first. */
  pending(): PendingStep[] {
    const closed = new Set<number>();
    for (const e of this.#entries) if (e.t === 'resolved' || (e.t === 'undone' && e.ok)) closed.add(e.seq);
    return this.#entries
      .filter((e): e is Extract<Entry, { t: 'step' }> => e.t === 'step' && !closed.has(e.seq))
      .map(({ seq, title, undo }) => ({ seq, title, undo }))
      .reverse();
  }

  /** Records a step and its undo; call before the step changes anything. */
  record(title: string, undo: UndoAction): number {
    const seq = this.#entries.filter((e) => e.t === 'step').length + 1;
    this.#append({ t: 'step', seq, title, undo });
    return seq;
  }

  /** Records, then runs `action`; the undo stays owed even if the action fails half-way. */
  async apply<T>(title: string, undo: UndoAction, action: () => Promise<T>): Promise<T> {
    this.record(title, undo);
    return action();
  }

  /** The step's effect is gone (the operation reverted it itself): nothing to undo. */
  resolve(seq: number): void {
    this.#append({ t: 'resolved', seq });
  }

  commit(): void {
    this.#append({ t: 'end', outcome: 'committed', at: new Date().toISOString() });
    this.close();
  }

  /**
   * Runs the owed undo actions in reverse order. A failing action does not stop the others;
   * every failure is reported.
   */
  async rollback(exec: UndoExecutor): Promise<RollbackReport> {
    const report: RollbackReport = { undone: [], failed: [] };
    for (const step of this.pending()) {
      try {
        for (const sql of step.undo.statements) await exec(step.undo.target, sql);
        this.#append({ t: 'undone', seq: step.seq, ok: true });
        report.undone.push(step.title);
      } catch (err) {
        this.#append({ t: 'undone', seq: step.seq, ok: false, error: errorMessage(err) });
        report.failed.push({ title: step.title, error: errorMessage(err) });
      }
    }
    // With failures the journal stays unfinished, so `reseed recover` finds it and tries again.
    if (report.failed.length === 0)
      this.#append({ t: 'end', outcome: 'rolled-back', at: new Date().toISOString() });
    this.close();
    return report;
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #append(entry: Entry): void {
    this.#entries.push(entry);
    this.#write(entry);
  }

  #write(entry: Entry): void {
    if (this.#fd === undefined) throw new ReseedError('JOURNAL', `journal ${this.path} is closed`);
    writeSync(this.#fd, JSON.stringify(entry) + '\n');
    fsyncSync(this.#fd);
  }
}

/** Journals of operations that never finished (crashed or killed), oldest first. */
export function unfinishedJournals(dir = journalDir()): Journal[] {
  if (!existsSync(dir)) return [];
  const out: Journal[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.jsonl')) continue;
    const j = Journal.open(join(dir, name));
    if (j.finished) j.close();
    else out.push(j);
  }
  return out;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
