import type { ProgressSink } from '../progress.js';
import { ProgressModel } from './progress-model.js';

export { formatBytes, formatMs } from '../format.js';

/**
 * --json: one event per line on stdout, each stamped with the time, and once there is something
 * to measure, `progress` lines with the numbers the terminal shows (at most one a second, and at
 * each phase): percentages, totals, rates and ETAs, per phase and overall.
 */
export function jsonSink(
  write: (line: string) => void = (l) => process.stdout.write(l),
): ProgressSink & { stop(completed?: boolean): void } {
  const model = new ProgressModel();
  let last = 0;
  const progress = (now: number) => {
    last = now;
    write(JSON.stringify({ at: new Date(now).toISOString(), type: 'progress', ...model.report(now) }) + '\n');
  };
  return {
    emit(e) {
      const now = Date.now();
      write(JSON.stringify({ at: new Date(now).toISOString(), ...e }) + '\n');
      model.apply(e, now);
      // Estimates come one table at a time: a progress line waits for them all.
      if ((!model.measurable && !model.catchUp) || e.type === 'table-planned' || e.type === 'verify-planned')
        return;
      if (e.type === 'phase' || now - last >= 1000) progress(now);
    },
    stop(completed = false) {
      if (!completed || !model.measurable) return;
      model.finish();
      progress(Date.now());
    },
  };
}
