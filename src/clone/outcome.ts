import { ReseedError, errorMessage, isReseedError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import type { Journal, Target } from '../journal/journal.js';
import type { Logger } from '../log.js';
import type { Endpoint } from '../mysql/credentials.js';
import { HOST_STATE_LABEL, undoAndCompare } from './undo.js';

const LOST = new Set(['PROTOCOL_CONNECTION_LOST', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNREFUSED']);

/**
 * A server's refusal inside a phase is that phase's failure (exit code by phase), and a lost
 * connection is CONNECT_FAILED; anything else keeps its own code.
 */
export function phaseError(err: unknown, code: ErrorCode): unknown {
  if (!isReseedError(err) || err.code !== 'INTERNAL') return err;
  const { sqlErrno, sqlCode } = err as { sqlErrno?: number; sqlCode?: string };
  if ((sqlCode && LOST.has(sqlCode)) || sqlErrno === 2006 || sqlErrno === 2013)
    return new ReseedError('CONNECT_FAILED', `lost the connection: ${err.message}`, {
      cause: err,
      hints: err.hints,
    });
  if (sqlErrno !== undefined || sqlCode !== undefined)
    return new ReseedError(code, err.message, { cause: err, hints: err.hints });
  return err;
}

export async function inPhase<T>(code: ErrorCode, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (err) {
    throw phaseError(err, code);
  }
}

/**
 * Undoes the journal, then compares both servers with the state recorded before the first
 * change. The operator is told what differs, never only that all is well.
 */
export async function rollback(
  journal: Journal,
  endpoints: Record<Target, Endpoint>,
  err: unknown,
  log: Logger,
): Promise<Error> {
  const original = isReseedError(err) ? err : new ReseedError('INTERNAL', errorMessage(err), { cause: err });
  const steps = journal.pending().length;
  let outcome: Awaited<ReturnType<typeof undoAndCompare>>;
  try {
    outcome = await undoAndCompare(journal, endpoints);
  } catch (rollbackError) {
    log.error({ err: rollbackError }, 'rollback could not run');
    const state = [
      `rollback could not run: ${errorMessage(rollbackError)}`,
      `journal: ${journal.path} (retry with: reseed recover)`,
    ];
    return Object.assign(new AggregateError([original, rollbackError], original.message), {
      code: 'JOURNAL',
      hints: [...original.hints, ...state],
    });
  }
  const { report, differences } = outcome;
  const hints = [...original.hints, ...describeOutcome(report, differences, steps, journal)];
  if (report.failed.length > 0) {
    const rollbackError = new ReseedError('JOURNAL', hints.join('\n'));
    return Object.assign(new AggregateError([original, rollbackError], original.message), {
      code: 'JOURNAL',
      hints,
    });
  }
  if ((differences && differences.length > 0) || journal.irreversible().length > 0)
    return new ReseedError('STATE_DIFFERS', original.message, { cause: original, hints });
  return new ReseedError(original.code, original.message, {
    cause: original,
    retryable: original.retryable,
    hints,
  });
}

/** The lines that say what state the servers are in after a rollback (clone and recover). */
export function describeOutcome(
  report: { undone: string[]; failed: { title: string; error: string }[] },
  differences: string[] | undefined,
  steps: number,
  journal: Journal,
): string[] {
  const out: string[] = [];
  if (report.failed.length > 0) {
    out.push(`rollback incomplete: ${report.failed.length} step(s) could not be undone:`);
    for (const f of report.failed) out.push(`  ${f.title}: ${f.error}`);
    out.push(`journal: ${journal.path} (retry with: reseed recover)`);
  } else if (steps === 0 && journal.irreversible().length === 0) {
    out.push('nothing had been changed on either server');
  } else {
    out.push(`every change was undone (${report.undone.length} step(s))`);
  }
  const irreversible = journal.irreversible();
  for (const t of irreversible) out.push(`not undone (it cannot be, as the plan said): ${t}`);
  if (differences === undefined) {
    if (report.failed.length === 0 && steps > 0)
      out.push('the servers could not be compared with the state recorded before the first change');
  } else if (differences.length === 0) {
    if (report.failed.length === 0)
      out.push(
        `compared with the state recorded before the first change: ${
          // A transfer touches no server: only the receiving host's paths were recorded.
          journal.header.operation === 'transfer'
            ? 'the receiving host is as it was'
            : `donor and joiner${hostsRecorded(journal)} are as they were`
        }${irreversible.length ? ', but for what could not be undone' : ''}`,
      );
  } else {
    out.push('compared with the state recorded before the first change, these differ:');
    for (const d of differences) out.push(`  ${d}`);
  }
  return out;
}

/** ", and the joiner's host" when the journal recorded hosts' state (datadirs, mysqld) too. */
function hostsRecorded(journal: Journal): string {
  const hosts = Object.keys((journal.state(HOST_STATE_LABEL) ?? {}) as object);
  return hosts.length ? `, and the ${hosts.join("'s and ")}'s host${hosts.length > 1 ? 's' : ''},` : '';
}
