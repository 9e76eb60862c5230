import type { PacketSink } from '../mysql/server.js';

/** Bytes read between two charges of the gate: small enough to pace, large enough to be cheap. */
const CHARGE_BYTES = 64 << 10;
/** A burst the gate lets through without waiting, as time at the current rate. */
const BURST_MS = 50;
/**
 * The longest a reader sleeps before it looks at the gate again: a wait priced at a low rate
 * shortens when the rate is raised (and ends at once when the gate is opened).
 */
const RECHECK_MS = 200;

/**
 * What every session that reads the donor goes through: a token bucket (`charge(bytes)` says how
 * long the reader must wait before reading on, so that all of them together stay under `rate`
 * bytes/s) and reading slots (at most `slots` sessions stream at once; a paused one gives its
 * slot up). Both can be changed at any time (the throttle controller does); Infinity lets all
 * through.
 */
export class RateGate {
  #rate: number;
  #slots = Infinity;
  #inUse = 0;
  #waiting: (() => void)[] = [];
  /** when the bytes charged so far have been "paid for" at the rate */
  #paidUntil = 0;
  /** bytes charged since the last call to takeCharged() */
  #charged = 0;

  constructor(rate = Infinity) {
    this.#rate = rate;
  }

  get rate(): number {
    return this.#rate;
  }

  /**
   * A new rate also re-prices what is still owed: bytes charged at 1 MiB/s are not waited for
   * at 1 MiB/s once the rate is back at 50 MiB/s (a verify chunk of 20 MB would otherwise keep
   * its reader asleep for 20 s after the donor recovered).
   */
  set rate(bytesPerSecond: number) {
    this.setRate(bytesPerSecond);
  }

  setRate(bytesPerSecond: number, now = Date.now()): void {
    const next = bytesPerSecond > 0 ? bytesPerSecond : Infinity;
    const owed = Math.max(0, this.#paidUntil - now);
    if (next === Infinity) this.#paidUntil = Math.min(this.#paidUntil, now);
    else if (owed > 0 && this.#rate !== Infinity) this.#paidUntil = now + (owed * this.#rate) / next;
    this.#rate = next;
  }

  get slots(): number {
    return this.#slots;
  }

  set slots(n: number) {
    this.#slots = Math.max(1, n);
    this.#wake();
  }

  /** Calls `go` once a reading slot is free (at once when one is). */
  acquire(go: () => void): void {
    if (this.#inUse < this.#slots) {
      this.#inUse++;
      go();
    } else this.#waiting.push(go);
  }

  release(): void {
    this.#inUse--;
    this.#wake();
  }

  #wake(): void {
    while (this.#inUse < this.#slots && this.#waiting.length) {
      this.#inUse++;
      this.#waiting.shift()!();
    }
  }

  /** Milliseconds to wait before reading more, after `bytes` were read. */
  charge(bytes: number, now = Date.now()): number {
    this.#charged += bytes;
    if (this.#rate === Infinity) {
      this.#paidUntil = now;
      return 0;
    }
    this.#paidUntil = Math.max(this.#paidUntil, now - BURST_MS) + (bytes / this.#rate) * 1000;
    return Math.max(0, this.#paidUntil - now);
  }

  /** Milliseconds until what was charged so far is paid for at the current rate. */
  owedMs(now = Date.now()): number {
    return this.#rate === Infinity ? 0 : Math.max(0, this.#paidUntil - now);
  }

  /**
   * Waits until what was charged is paid for, looking again every RECHECK_MS so that a raised
   * rate shortens the wait; ends early with the abort (the caller checks it).
   */
  async settle(signal?: AbortSignal): Promise<void> {
    for (let owed = this.owedMs(); owed > 0 && !signal?.aborted; owed = this.owedMs())
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(owed, RECHECK_MS));
        signal?.addEventListener('abort', done, { once: true });
      });
  }

  /**
   * For readers that are not SQL sessions (files, child processes): charges `bytes` and waits as
   * long as the gate says, ending early with the abort.
   */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.charge(bytes) > 0) await this.settle(signal);
  }

  /** The bytes charged since the last call: the throughput the controller measures. */
  takeCharged(): number {
    const n = this.#charged;
    this.#charged = 0;
    return n;
  }
}

/**
 * `sink` with its reads paced by `gate`. The statement starts once the caller holds a reading slot
 * (see `start`); after each CHARGE_BYTES of rows the connection pauses for as long as the gate
 * says. A pause of the sink's own (its consumer is behind) and the gate's are both honoured, and
 * a paused connection gives its slot up: reading resumes when neither holds and a slot is free.
 * `finish()` must be called once the statement has ended, so that nothing pending resumes another
 * statement on that connection, and the slot is given back.
 */
export function pacedSink(
  sink: PacketSink,
  gate: RateGate,
): { sink: PacketSink; start: () => Promise<void>; finish: () => void } {
  let resume = () => {};
  let consumerHolds = false;
  let timer: NodeJS.Timeout | undefined;
  let pending = 0;
  let finished = false;
  let holding = false;
  let asking = false;
  const resumeWithSlot = () => {
    if (finished || consumerHolds || timer || holding || asking) return;
    asking = true;
    gate.acquire(() => {
      asking = false;
      if (finished) return gate.release();
      holding = true;
      resume();
    });
  };
  const pause = () => {
    if (holding) gate.release();
    holding = false;
  };
  // Sleeps while the gate is owed, looking again every RECHECK_MS (the rate may have been raised).
  const sleepOwed = (ms: number) => {
    timer = setTimeout(
      () => {
        timer = undefined;
        const owed = gate.owedMs();
        if (owed > 0 && !finished) sleepOwed(Math.min(owed, RECHECK_MS));
        else resumeWithSlot();
      },
      Math.min(ms, RECHECK_MS),
    );
  };
  return {
    start: () =>
      new Promise<void>((go) =>
        gate.acquire(() => {
          holding = true;
          go();
        }),
      ),
    sink: {
      onRow(buf, start, end, columns) {
        const more = sink.onRow(buf, start, end, columns);
        if (!more) consumerHolds = true;
        pending += end - start;
        if (pending >= CHARGE_BYTES) {
          const wait = gate.charge(pending);
          pending = 0;
          if (wait > 0 && !timer) sleepOwed(wait);
        }
        if (more && !timer) return true;
        pause();
        return false;
      },
      setResume(fn) {
        resume = fn;
        sink.setResume(() => {
          consumerHolds = false;
          resumeWithSlot();
        });
      },
    },
    finish() {
      finished = true;
      if (pending > 0) gate.charge(pending);
      pending = 0;
      if (timer) clearTimeout(timer);
      timer = undefined;
      pause();
    },
  };
}
