/**
 * Progress events flow from the operation to whoever renders them (terminal bars, --json lines,
 * tests). Emitting never throws and never blocks the copy.
 */
export type ProgressEvent =
  | { type: 'phase'; phase: string; detail?: string }
  /** what the operation will do, printed before it changes anything */
  | { type: 'plan'; lines: string[]; dryRun: boolean }
  | { type: 'table-planned'; table: string; estimatedRows: number; estimatedBytes: number }
  | { type: 'rows'; table: string; rows: number; bytes: number }
  | { type: 'table-done'; table: string; rows: number; bytes: number }
  | { type: 'table-indexed'; table: string; indexes: number; ms: number }
  | { type: 'lag'; secondsBehind: number | null; gtid: string }
  | { type: 'warning'; message: string }
  | { type: 'verify-table'; table: string; chunks: number; mismatches: number };

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
