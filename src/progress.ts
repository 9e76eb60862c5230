/**
 * Progress events flow from the operation to whoever renders them (terminal bars, --json lines,
 * tests). Emitting never throws and never blocks the copy. Row and byte counts are per event
 * (increments) unless the field says otherwise; estimates come from the donor's statistics.
 */
export type ProgressEvent =
  | { type: 'phase'; phase: string; detail?: string }
  /**
   * What the operation will do, printed before it changes anything. `phases`: the phases it will
   * announce, in order (a renderer's "phase 4 of 7" and overall estimate).
   */
  | { type: 'plan'; lines: string[]; dryRun: boolean; phases?: string[] }
  /** the donor sessions' consistent snapshot is open (for the copy, or for verify) */
  | { type: 'snapshot'; sessions: number; lockMode: string; lockHeldMs: number; gtid: string }
  /** a table the copy will read, with the donor's estimates (TABLE_ROWS, DATA_LENGTH) */
  | { type: 'table-planned'; table: string; estimatedRows: number; estimatedBytes: number }
  | { type: 'rows'; table: string; rows: number; bytes: number }
  /**
   * A chunk of `table` is in the joiner (`rows`, `bytes`: that chunk's). `chunks` is the number of
   * chunks of the table known so far, final once `allPlanned`.
   */
  | {
      type: 'chunk-done';
      table: string;
      rows: number;
      bytes: number;
      chunks: number;
      chunksDone: number;
      allPlanned: boolean;
    }
  /** the table's rows are all in; its deferred secondary indexes are being built */
  | { type: 'table-indexing'; table: string; indexes: number }
  | { type: 'table-indexed'; table: string; indexes: number; ms: number }
  /** totals of the table (rows, bytes) */
  | { type: 'table-done'; table: string; rows: number; bytes: number }
  /** views, routines, triggers and events created on the joiner so far */
  | { type: 'objects'; done: number; total: number }
  /**
   * The replica catching up with `gtid` (the position it must reach). `transactionsBehind`:
   * transactions of that position the replica has not applied yet (null without GTID).
   */
  | { type: 'lag'; secondsBehind: number | null; gtid: string; transactionsBehind?: number | null }
  /**
   * The operation holds back for the donor's sake (a read lock waiting for long queries to end):
   * `reason` while it waits, `active: false` once it goes on.
   */
  | { type: 'throttle'; active: boolean; reason: string }
  | { type: 'warning'; message: string }
  /** a line worth reading that is no warning (a pass done, what comes next) */
  | { type: 'note'; message: string }
  /** a table verify will compare, with the donor's estimate */
  | { type: 'verify-planned'; table: string; estimatedRows: number }
  /** one chunk of `table` compared (`rows`: the donor's rows in it) */
  | {
      type: 'verify-chunk';
      table: string;
      rows: number;
      chunks: number;
      chunksDone: number;
      allPlanned: boolean;
      mismatch: boolean;
    }
  /** every chunk of `table` compared (totals) */
  | { type: 'verify-table'; table: string; chunks: number; rows: number; mismatches: number };

export interface ProgressSink {
  emit(event: ProgressEvent): void;
}

export const nullProgress: ProgressSink = { emit() {} };

/** Sends each event to every sink; a failing sink is skipped, never fatal. */
export function fanOut(...sinks: ProgressSink[]): ProgressSink {
  return {
    emit(event) {
      for (const s of sinks) {
        try {
          s.emit(event);
        } catch {
          // rendering must never break the operation
        }
      }
    },
  };
}

/**
 * The read lock's wait for long-running donor queries as throttle events: call it with the reason
 * while waiting, and with undefined once the wait is over.
 */
export function throttleReporter(progress: ProgressSink): (reason: string | undefined) => void {
  let last: string | undefined;
  return (reason) => {
    if (reason !== undefined) progress.emit({ type: 'throttle', active: true, reason });
    else if (last !== undefined) progress.emit({ type: 'throttle', active: false, reason: last });
    last = reason;
  };
}
