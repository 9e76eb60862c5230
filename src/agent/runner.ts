import { existsSync } from 'node:fs';
import { rollback } from '../clone/outcome.js';
import { ReseedError, errorMessage, isReseedError } from '../errors.js';
import { Journal } from '../journal/journal.js';
import type { Endpoint } from '../mysql/credentials.js';
import type { Logger } from '../log.js';
import { isFinal, jobError } from './jobs.js';
import type { JobRecord, JobState, JobStore } from './jobs.js';

/** What a job's code gets: its record, its journal, the abort signal (cancel), and its voice. */
export interface JobContext {
  job: JobRecord;
  journal: Journal;
  signal: AbortSignal;
  setState(state: JobState): void;
  emit(event: { type: string; [key: string]: unknown }): void;
  /**
   * For work that keeps a journal of its own (a logical clone run by the agent): the job's undo
   * is that journal from now on, here and at the agent's next start after a crash.
   */
  adoptJournal(journal: Journal): void;
}

/** The servers a job's SQL undo steps act on; jobs without SQL steps never dial them. */
export type JobEndpoints = (job: JobRecord) => { donor: Endpoint; joiner: Endpoint };

/** Jobs without SQL steps still go through the SQL-aware undo: these endpoints are never dialled. */
export const NO_SERVER: Endpoint = { host: 'none.invalid', port: 1, user: 'none' };

/**
 * Runs jobs on the agent: one at a time (the store refuses a second), each with its own journal
 * in the agent's state directory. Cancel aborts the job; any failure rolls its journal back and
 * the job's error ends with the comparison of the host with its recorded state. At start, jobs
 * that a previous agent process left running are undone and reported interrupted.
 */
export class JobRunner {
  readonly #running = new Map<string, { abort: AbortController; done: Promise<void> }>();

  constructor(
    readonly store: JobStore,
    readonly journalDir: string,
    readonly log: Logger,
    readonly endpointsOf: JobEndpoints = () => ({ donor: NO_SERVER, joiner: NO_SERVER }),
  ) {}

  start(
    kind: string,
    request: Record<string, unknown>,
    header: { donor: string; joiner: string },
    work: (ctx: JobContext) => Promise<Record<string, unknown>>,
  ): JobRecord {
    const job = this.store.create(kind, request);
    const journal = Journal.create(
      {
        operation: kind,
        donor: { host: header.donor, port: 0, user: 'agent' },
        joiner: { host: header.joiner, port: 0, user: 'agent' },
      },
      this.journalDir,
    );
    this.store.update(job.id, { journal: journal.path });
    const abort = new AbortController();
    const ctx: JobContext = {
      job,
      journal,
      adoptJournal: (own) => {
        ctx.journal.discardIfClean();
        ctx.journal = own;
        this.store.update(job.id, { journal: own.path });
      },
      signal: abort.signal,
      setState: (state) => {
        if (!abort.signal.aborted) this.store.update(job.id, { state });
      },
      emit: (event) => {
        if (event.type === 'progress') this.store.update(job.id, { progress: event });
        this.store.event(job.id, event);
      },
    };
    const done = this.#run(ctx, work).finally(() => this.#running.delete(job.id));
    this.#running.set(job.id, { abort, done });
    return this.store.get(job.id);
  }

  async #run(ctx: JobContext, work: (ctx: JobContext) => Promise<Record<string, unknown>>): Promise<void> {
    const { job } = ctx;
    try {
      const result = await work(ctx);
      if (!ctx.journal.finished) ctx.journal.commit();
      this.store.update(job.id, { state: 'done', result, journal: undefined });
    } catch (thrown) {
      const cancelled = ctx.signal.aborted;
      // A cancel keeps what the work said of its own rollback (a logical clone undoes itself).
      const base = cancelled
        ? new ReseedError('ABORTED', 'cancelled', {
            // A call the cancel cut off says "is the agent running there?": not the point here.
            hints: isReseedError(thrown) && thrown.code !== 'CONNECT_FAILED' ? thrown.hints : [],
          })
        : thrown;
      const e = jobError(await this.#undo(ctx.journal, this.store.get(job.id), base));
      this.log.info({ job: job.id, err: e.message }, cancelled ? 'job cancelled' : 'job failed');
      this.store.update(job.id, {
        state: cancelled ? 'cancelled' : 'failed',
        error: e,
        journal: ctx.journal.finished || !ctx.journal.written ? undefined : ctx.journal.path,
      });
    }
  }

  /**
   * Rolls a job's journal back after `err`, as the CLI's clone does: the error that comes back
   * says what was undone and how the servers and the host compare (STATE_DIFFERS when they
   * differ, JOURNAL when an undo failed).
   */
  async #undo(journal: Journal, job: JobRecord, err: unknown): Promise<Error> {
    // Rolled back by the work itself: its error says so already.
    if (journal.finished) return err instanceof Error ? err : new Error(String(err));
    if (!journal.written) {
      const e = isReseedError(err) ? err : new ReseedError('INTERNAL', errorMessage(err));
      return new ReseedError(e.code, e.message, {
        cause: e,
        // The message may say so already ("...; nothing was changed"): not twice.
        hints: /nothing (was|had been) changed/.test(e.message)
          ? e.hints
          : [...e.hints, 'nothing had been changed'],
      });
    }
    return rollback(journal, this.endpointsOf(job), err, this.log);
  }

  cancel(id: string): JobRecord {
    const job = this.store.get(id);
    if (isFinal(job.state))
      throw new ReseedError('AGENT', `job ${id} is ${job.state} already: nothing to cancel`);
    this.#running.get(id)?.abort.abort();
    return this.store.get(id);
  }

  /** Jobs a previous agent process left running (it crashed, or was killed): undone and reported. */
  async recoverOrphans(): Promise<JobRecord[]> {
    const out: JobRecord[] = [];
    for (const job of this.store.orphans()) {
      const stopped = new ReseedError('ABORTED', `the agent stopped while the job was ${job.state}`);
      let error = jobError(
        new ReseedError(stopped.code, stopped.message, { hints: ['no journal: nothing had been changed'] }),
      );
      // A journal is a file only once a step was recorded: none means nothing was changed.
      if (job.journal && existsSync(job.journal)) {
        try {
          error = jobError(await this.#undo(Journal.open(job.journal), job, stopped));
        } catch (err) {
          error = {
            ...jobError(stopped),
            hints: [
              `its journal ${job.journal} could not be read: ${isReseedError(err) ? err.message : errorMessage(err)}`,
            ],
          };
        }
      }
      out.push(this.store.update(job.id, { state: 'interrupted', error, journal: undefined }));
    }
    return out;
  }

  /** Cancels every running job and waits until each is undone. */
  async stop(): Promise<void> {
    for (const r of this.#running.values()) r.abort.abort();
    await Promise.allSettled([...this.#running.values()].map((r) => r.done));
  }
}
