import { ReseedError } from './errors.js';

/**
 * Test-only fault injection: RESEED_FAULT=<point> makes the operation fail at that point as if a
 * server had refused a statement; RESEED_FAULT=<point>:kill makes the process die there at once
 * (kill -9), leaving its journal for `reseed recover`; RESEED_FAULT=<point>:stall blocks the
 * process there for 3 s (a slow step: timers fire late). The points are named where they are placed
 * (docs/testing.md lists them). Unset, this does nothing.
 */
export function faultPoint(point: string): void {
  const fault = process.env.RESEED_FAULT;
  if (!fault) return;
  if (fault === `${point}:kill`) process.kill(process.pid, 'SIGKILL');
  if (fault === `${point}:stall`) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000);
  if (fault === point) throw new ReseedError('INTERNAL', `fault injected at ${point} (RESEED_FAULT)`);
}

const fired = new Set<string>();

/**
 * Test-only: whether RESEED_FAULT names `point` (a data fault, such as a corrupted frame, rather
 * than a failure); with `once`, only the first time in this process.
 */
export function faultActive(point: string, once = false): boolean {
  if (process.env.RESEED_FAULT !== point) return false;
  if (once && fired.has(point)) return false;
  fired.add(point);
  return true;
}
