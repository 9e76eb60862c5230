import type { ProgressSink } from '../progress.js';
import { ProgressModel } from './progress-model.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

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
