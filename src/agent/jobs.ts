import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ReseedError, errorMessage, isReseedError } from '../errors.js';
import { processStartTime } from '../journal/journal.js';
import { writeFileDurably } from '../journal/durable-file.js';

/** A job's states, in the order a clone goes through them; the last four are final. */
export const JOB_STATES = [
  'queued',
  'preflight',
  'copying',
  'preparing',
  'swapping',
  'replicating',
  'verifying',
  'done',
  'failed',
  'cancelled',
  'interrupted',
] as const;
export type JobState = (typeof JOB_STATES)[number];
const FINAL: ReadonlySet<JobState> = new Set(['done', 'failed', 'cancelled', 'interrupted']);

export function isFinal(state: JobState): boolean {
  return FINAL.has(state);
}

export interface JobError {
  code: string;
  message: string;
  hints: string[];
}

/** A job as it is kept on the agent's host and shown by the API. Never holds a secret. */
export interface JobRecord {
  id: string;
  kind: string;
  state: JobState;
  /** what was asked, without credentials */
  request: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
  /** the agent process running it, and that process's start time (a reused PID is not it) */
  pid: number;
  pidStart: string | undefined;
  progress: Record<string, unknown> | undefined;
  result: Record<string, unknown> | undefined;
  error: JobError | undefined;
  /** the job's undo journal, while it has one */
  journal: string | undefined;
}

export interface JobEvent {
  seq: number;
  at: string;
  type: string;
  [key: string]: unknown;
}

/**
 * The agent's jobs, durable in its state directory: `<id>.json` (rewritten whole: temporary
 * file, fsync, rename) and `<id>.events.jsonl` (appended). Survives a restart or a kill -9: the
 * agent's next start finds the jobs that were running and reports them interrupted.
 */
export class JobStore {
  readonly dir: string;
  readonly #bus = new EventEmitter();
  readonly #seq = new Map<string, number>();

  /** the agent's name, for the commands its messages suggest */
  readonly agent: string;

  constructor(dir: string, agent = 'NAME') {
    this.dir = dir;
    this.agent = agent;
    makeDirs(dir);
    this.#bus.setMaxListeners(0);
  }

  #path(id: string): string {
    if (!/^[A-Za-z0-9-]+$/.test(id)) throw new ReseedError('NOT_FOUND', `no job ${id} on this agent`);
    return join(this.dir, `${id}.json`);
  }

  /** A new job, refused (409) while another job is not final: one job per host at a time. */
  create(kind: string, request: Record<string, unknown>): JobRecord {
    const busy = this.list().find((j) => !isFinal(j.state));
    if (busy)
      throw new ReseedError(
        'AGENT',
        `job ${busy.id} (${busy.kind}, ${busy.state}) holds this host: one job at a time`,
        {
          hints: [
            `follow it (reseed job ${busy.id} --on agent://${this.agent} --follow) or cancel it (reseed cancel ${busy.id} --on agent://${this.agent})`,
          ],
        },
      );
    const now = new Date().toISOString();
    const job: JobRecord = {
      id: `${now.replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`,
      kind,
      state: 'queued',
      request,
      createdAt: now,
      updatedAt: now,
      pid: process.pid,
      pidStart: processStartTime(process.pid),
      progress: undefined,
      result: undefined,
      error: undefined,
      journal: undefined,
    };
    this.#write(job);
    this.event(job.id, { type: 'state', state: 'queued' });
    return job;
  }

  get(id: string): JobRecord {
    const path = this.#path(id);
    if (!existsSync(path)) throw new ReseedError('NOT_FOUND', `no job ${id} on this agent`);
    return JSON.parse(readFileSync(path, 'utf8')) as JobRecord;
  }

  list(): JobRecord[] {
    return readdirSync(this.dir)
      .filter((n) => n.endsWith('.json'))
      .sort()
      .map((n) => JSON.parse(readFileSync(join(this.dir, n), 'utf8')) as JobRecord);
  }

  update(id: string, patch: Partial<Omit<JobRecord, 'id'>>): JobRecord {
    const job = { ...this.get(id), ...patch, updatedAt: new Date().toISOString() };
    this.#write(job);
    if (patch.state)
      this.event(id, { type: 'state', state: patch.state, ...(patch.error ? { error: patch.error } : {}) });
    return job;
  }

  #write(job: JobRecord): void {
    writeFileDurably(this.#path(job.id), JSON.stringify(job, null, 2) + '\n');
  }

  event(id: string, event: { type: string; [key: string]: unknown }): JobEvent {
    const seq = (this.#seq.get(id) ?? this.events(id).length) + 1;
    this.#seq.set(id, seq);
    const e: JobEvent = { ...event, type: event.type, seq, at: new Date().toISOString() };
    appendFileSync(join(this.dir, `${id}.events.jsonl`), JSON.stringify(e) + '\n', { mode: 0o600 });
    this.#bus.emit(id, e);
    return e;
  }

  events(id: string, after = 0): JobEvent[] {
    const path = join(this.dir, `${id}.events.jsonl`);
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter(Boolean)
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as JobEvent];
        } catch {
          return []; // a torn last line after a crash
        }
      })
      .filter((e) => e.seq > after);
  }

  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    this.#bus.on(id, listener);
    return () => this.#bus.off(id, listener);
  }

  /** Jobs that were running in an agent process that is gone (crash, kill -9, reboot). */
  orphans(): JobRecord[] {
    return this.list().filter((j) => {
      if (isFinal(j.state)) return false;
      const start = processStartTime(j.pid);
      return start === undefined || start !== j.pidStart || j.pid === process.pid;
    });
  }
}

/** An error as a job records it: stable code, message, hints; never a stack or a secret. */
export function jobError(err: unknown): JobError {
  if (isReseedError(err)) return { code: err.code, message: err.message, hints: err.hints };
  // A rollback that failed is an AggregateError carrying a code and the hints that say what is left.
  const e = err as { code?: unknown; hints?: unknown };
  if (err instanceof Error && typeof e.code === 'string' && Array.isArray(e.hints))
    return { code: e.code as JobError['code'], message: err.message, hints: e.hints.map(String) };
  return { code: 'INTERNAL', message: errorMessage(err), hints: [] };
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdir never returns under /proc (it retries an
 * ENOENT there forever), and a stateDir in the wrong place must fail with its path.
 */
function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) missing.unshift(d);
  for (const d of missing) mkdirSync(d, { mode: 0o700 });
}
