import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  truncateSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ReseedError, errorMessage } from '../errors.js';
import type { PublicEndpoint } from '../mysql/credentials.js';

export type Target = 'donor' | 'joiner';

/**
 * How to undo one step, on one server. Never holds a secret. Either plain statements run in
 * order, or an operation (`op`) whose executor checks the server before it acts (move back only
 * the tables that moved, drop a schema only when it is empty): an undo must never destroy data
 * because the step it undoes was cut off half-way.
 */
export interface UndoAction {
  target: Target;
  statements?: string[];
  op?: UndoOp;
  /**
   * This undo restarts something that changes data on its own (a replica's threads): the state
   * comparison after a rollback reads the data before it runs.
   */
  resumes?: boolean;
  /**
   * An undo that runs on the target's host rather than through SQL (move a directory back, start
   * mysqld, remove a temporary file): only on the machine named by `on`, by whoever owns it there
   * (`reseed recover` run on that host, or its agent). Interpreted by src/host/host-undo.ts.
   */
  host?: { on: { hostname: string; machineId: string }; op: UndoOp };
}

/** An undo operation, interpreted by the executor (src/clone/undo.ts); plain JSON. */
export interface UndoOp {
  kind: string;
  [key: string]: unknown;
}

export interface JournalHeader {
  operation: string;
  donor: PublicEndpoint;
  joiner: PublicEndpoint;
}

type Entry =
  | ({ t: 'begin'; id: string; at: string; pid: number; pidStart?: string } & JournalHeader)
  | { t: 'state'; label: string; record: unknown }
  | { t: 'step'; seq: number; title: string; undo: UndoAction | null }
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

export type UndoExecutor = (action: UndoAction) => Promise<void>;

export function journalDir(): string {
  return resolve(process.env.RESEED_STATE_DIR ?? join(homedir(), '.reseed', 'state'), 'journal');
}

/**
 * The durable undo log of one operation. Every step that changes a server records how to undo
 * itself *before* it acts (append + fsync), so a crash at any point leaves a journal that
 * `reseed recover` can roll back. Undo runs in reverse order. The file is made at the first
 * record: an operation refused before it changed anything leaves no journal behind.
 */
export class Journal {
  readonly path: string;
  readonly header: JournalHeader & { id: string; pid: number; pidStart: string | undefined };
  #entries: Entry[];
  #fd: number | undefined;
  #written: boolean;
  readonly #readOnly: boolean;

  private constructor(path: string, entries: Entry[], written: boolean, readOnly: boolean) {
    this.path = path;
    this.#entries = entries;
    this.#written = written;
    this.#readOnly = readOnly;
    const begin = entries[0];
    if (!begin || begin.t !== 'begin') throw new ReseedError('JOURNAL', `${path} is not a reseed journal`);
    this.header = {
      id: begin.id,
      pid: begin.pid,
      pidStart: begin.pidStart,
      operation: begin.operation,
      donor: begin.donor,
      joiner: begin.joiner,
    };
  }

  static create(header: JournalHeader, dir = journalDir()): Journal {
    const id = `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`;
    const begin: Entry = {
      t: 'begin',
      id,
      at: new Date().toISOString(),
      pid: process.pid,
      pidStart: processStartTime(process.pid),
      ...header,
    };
    return new Journal(join(dir, `${id}.jsonl`), [begin], false, false);
  }

  /**
   * Reads a journal. `readOnly` (for listing) never writes; otherwise a torn last line (a crash
   * before its newline; everything before it was fsynced) is cut off so appends start cleanly.
   */
  static open(path: string, options: { readOnly?: boolean } = {}): Journal {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      throw new ReseedError('JOURNAL', `cannot read journal ${path}: ${errorMessage(err)}`, { cause: err });
    }
    const complete = bytes.lastIndexOf(0x0a) + 1;
    const entries: Entry[] = [];
    const lines = bytes.subarray(0, complete).toString('utf8').split('\n');
    for (const [i, line] of lines.entries()) {
      if (line.trim() === '') continue;
      try {
        entries.push(JSON.parse(line) as Entry);
      } catch (err) {
        throw new ReseedError(
          'JOURNAL',
          `journal ${path} is damaged at line ${i + 1} (${errorMessage(err)}); nothing in it was run`,
          {
            cause: err,
            hints: [
              'look at that line: a step whose undo cannot be read must be undone by hand, then move the file away',
            ],
          },
        );
      }
    }
    if (!options.readOnly && complete < bytes.length) truncateSync(path, complete);
    return new Journal(path, entries, true, options.readOnly === true);
  }

  get finished(): boolean {
    return this.#entries.some((e) => e.t === 'end');
  }

  /** 'committed', 'rolled-back', or undefined while the operation has not finished */
  get outcome(): 'committed' | 'rolled-back' | undefined {
    const end = this.#entries.find((e): e is Extract<Entry, { t: 'end' }> => e.t === 'end');
    return end?.outcome;
  }

  /** Whether the file exists (something was recorded). */
  get written(): boolean {
    return this.#written;
  }

  /** Steps whose undo is still owed, most recent first. A finished journal owes nothing. */
  pending(): PendingStep[] {
    if (this.finished) return [];
    const closed = new Set<number>();
    for (const e of this.#entries) if (e.t === 'resolved' || (e.t === 'undone' && e.ok)) closed.add(e.seq);
    return this.#entries
      .filter(
        (e): e is Extract<Entry, { t: 'step' }> & { undo: UndoAction } =>
          e.t === 'step' && e.undo !== null && !closed.has(e.seq),
      )
      .map(({ seq, title, undo }) => ({ seq, title, undo }))
      .reverse();
  }

  /** Steps that were run and cannot be undone (recorded with no undo), in order. */
  irreversible(): string[] {
    return this.#entries
      .filter((e): e is Extract<Entry, { t: 'step' }> => e.t === 'step' && e.undo === null)
      .map((e) => e.title);
  }

  /** Records a step and its undo; call before the step changes anything. */
  record(title: string, undo: UndoAction): number {
    return this.#recordStep(title, undo);
  }

  /**
   * Records a step that cannot be undone (the plan printed before it said so), so that the
   * journal and `recover` tell what happened.
   */
  recordIrreversible(title: string): number {
    return this.#recordStep(title, null);
  }

  #recordStep(title: string, undo: UndoAction | null): number {
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

  /** Keeps a state record (what a server looked like before the first change), by label. */
  keepState(label: string, record: unknown): void {
    this.#append({ t: 'state', label, record });
  }

  state(label: string): unknown {
    for (const e of this.#entries) if (e.t === 'state' && e.label === label) return e.record;
    return undefined;
  }

  commit(): void {
    if (!this.#written) return;
    this.#append({ t: 'end', outcome: 'committed', at: new Date().toISOString() });
    this.close();
  }

  /**
   * Runs the owed undo actions in reverse order, except those that resume activity (replica
   * threads, see UndoAction.resumes): they run last, after everything else is put back, so a
   * replica restarts on restored data, and `beforeResume` (the state comparison's read of the
   * data) runs between the two. A failing action does not stop the others; every failure is
   * reported.
   */
  async rollback(exec: UndoExecutor, beforeResume?: () => Promise<void>): Promise<RollbackReport> {
    const report: RollbackReport = { undone: [], failed: [] };
    const owed = this.pending();
    const ordered = [...owed.filter((p) => !p.undo.resumes), ...owed.filter((p) => p.undo.resumes)];
    let before = beforeResume;
    for (const step of ordered) {
      if (step.undo.resumes && before) {
        await before();
        before = undefined;
      }
      try {
        await exec(step.undo);
        this.#append({ t: 'undone', seq: step.seq, ok: true });
        report.undone.push(step.title);
      } catch (err) {
        this.#append({ t: 'undone', seq: step.seq, ok: false, error: errorMessage(err) });
        report.failed.push({ title: step.title, error: errorMessage(err) });
      }
    }
    if (before) await before();
    // With failures the journal stays unfinished, so `reseed recover` finds it and tries again.
    if (report.failed.length === 0 && this.#written)
      this.#append({ t: 'end', outcome: 'rolled-back', at: new Date().toISOString() });
    this.close();
    return report;
  }

  /** Removes the file of a journal that owes nothing and ran nothing irreversible. */
  discardIfClean(): void {
    this.close();
    if (this.#written && this.pending().length === 0 && this.irreversible().length === 0) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
      this.#written = false;
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  /** Whether the process that wrote this journal still runs (the same process, not a reused PID). */
  ownerAlive(): boolean {
    const { pid, pidStart } = this.header;
    if (pid === process.pid) return false;
    const now = processStartTime(pid);
    if (now === undefined) return false;
    // Journals written before the start time was recorded: trust the PID alone.
    return pidStart === undefined || pidStart === now;
  }

  #append(entry: Entry): void {
    if (this.#readOnly) throw new ReseedError('INTERNAL', `journal ${this.path} was opened read-only`);
    this.#entries.push(entry);
    if (this.#fd === undefined) {
      mkdirSync(join(this.path, '..'), { recursive: true });
      this.#fd = openSync(this.path, 'a', 0o600);
      if (!this.#written) {
        // The begin entry goes first, with the first step.
        this.#write(this.#entries[0]!);
        this.#written = true;
      }
    }
    this.#write(entry);
  }

  #write(entry: Entry): void {
    writeSync(this.#fd!, JSON.stringify(entry) + '\n');
    fsyncSync(this.#fd!);
  }
}

export interface JournalScan {
  /** journals of operations that never finished (crashed or killed), oldest first */
  unfinished: Journal[];
  /** files that could not be read: each is reported, and does not stop the others */
  damaged: { path: string; error: ReseedError }[];
}

export function scanJournals(dir = journalDir(), options: { readOnly?: boolean } = {}): JournalScan {
  const scan: JournalScan = { unfinished: [], damaged: [] };
  if (!existsSync(dir)) return scan;
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.jsonl')) continue;
    const path = join(dir, name);
    try {
      const j = Journal.open(path, options);
      if (j.finished) j.close();
      else scan.unfinished.push(j);
    } catch (err) {
      scan.damaged.push({
        path,
        error: err instanceof ReseedError ? err : new ReseedError('JOURNAL', errorMessage(err)),
      });
    }
  }
  return scan;
}

/**
 * The kernel's start time of a process (field 22 of /proc/PID/stat), which tells a live process
 * from a later one that reuses its PID. Undefined when no such process runs.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}
