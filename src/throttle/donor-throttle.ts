import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Endpoint } from '../mysql/credentials.js';
import { connect } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import type { ProgressSink } from '../progress.js';
import { RateGate } from './rate-gate.js';

/** How reads from the donor are paced (`reseed clone --help`, docs/throttling.md). */
export interface ThrottleOptions {
  /** bytes/s read from the donor, at most; undefined: no cap */
  maxRate: number | undefined;
  /** slow the reads down while the donor's health is degraded */
  adaptive: boolean;
  /** overload when the donor's Threads_running, less reseed's own sessions, exceeds this */
  threadsRunning: number;
  /** overload when the health probe takes longer than this (ms); 0: from the baseline */
  latencyMs: number;
  /** the donor's own replicas, whose lag is watched */
  replicas: Endpoint[];
  /** overload when a watched replica is this many seconds behind */
  maxLagSeconds: number;
  /** the user's own check: overload while its first value is true (not 0, not NULL) */
  healthQuery: string | undefined;
}

export const DEFAULT_THROTTLE: ThrottleOptions = {
  maxRate: undefined,
  adaptive: true,
  threadsRunning: 16,
  latencyMs: 0,
  replicas: [],
  maxLagSeconds: 10,
  healthQuery: undefined,
};

export interface ThrottleReport {
  adaptive: boolean;
  maxRate: number | undefined;
  /** how long the reads ran below the cap (or below full speed without one) */
  slowedMs: number;
  /** why the reads were slowed: each signal and how many times it made them slower */
  reasons: Record<string, number>;
  /** the lowest rate the reads were held to (bytes/s) */
  lowestRate: number | undefined;
  /** the probe's latency with the donor undisturbed (ms), and the threshold derived from it */
  baselineMs: number | undefined;
  latencyLimitMs: number | undefined;
}

/** The controller looks at the donor this often. */
const TICK_MS = 250;
/** Never slower than this: a clone that cannot finish protects nobody. */
const MIN_RATE = 1 << 20;
/** The rate of a donor found overloaded before any row was read from it. */
const FIRST_RATE = 16 << 20;
/** Healthy ticks in a row before the rate is raised again. */
const CALM_TICKS = 4;
/**
 * The throughput the controller acts on is measured over this many ticks: a reader that charges
 * the gate in lumps (verify charges a whole chunk once it is hashed) reads nothing in most ticks
 * and a lot in one, and a single tick would halve the rate from a figure near zero.
 */
const MEASURE_TICKS = 8;

interface Reading {
  /** the first overload signal seen, with its measure, or undefined when healthy */
  overload: { signal: string; detail: string } | undefined;
}

/**
 * Paces every read from the donor through one RateGate and, when adaptive, adjusts its two levers
 * (sessions reading at once, the rate) from the donor's health; see #adjust. Its own sessions (one to the donor, one per watched replica) are closed by stop().
 */
export class DonorThrottle {
  readonly gate: RateGate;
  readonly #options: ThrottleOptions;
  readonly #cap: number;
  /** connection ids of reseed's own sessions on the donor, not counted as its load */
  readonly #ours: number[];
  /** how many sessions read rows from the donor at full speed */
  readonly #readers: number;
  readonly #log: Logger;
  readonly #progress: ProgressSink;
  #probe: Server | undefined;
  #replicas: Server[] = [];
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #calm = 0;
  #slowedSince: number | undefined;
  #slowedMs = 0;
  #reasons: Record<string, number> = {};
  #lowest: number | undefined;
  #baselineMs: number | undefined;
  #latencyLimitMs: number | undefined;
  #lastTick = Date.now();
  /** bytes charged and milliseconds, for each of the last MEASURE_TICKS ticks */
  #recent: { bytes: number; ms: number }[] = [];
  /** the highest throughput measured while the reads were not slowed */
  #fullSpeed: number | undefined;
  #slowLatencyTicks = 0;
  #warned = new Set<string>();

  private constructor(
    options: ThrottleOptions,
    ours: number[],
    readers: number,
    log: Logger,
    progress: ProgressSink,
  ) {
    this.#options = options;
    this.#cap = options.maxRate ?? Infinity;
    this.gate = new RateGate(this.#cap);
    this.#ours = ours;
    this.#readers = Math.max(1, readers);
    this.#log = log;
    this.#progress = progress;
  }

  /**
   * Opens the throttle's sessions, measures the probe's baseline latency (before the copy loads
   * the donor) and starts watching. `ours`: reseed's sessions that read the donor.
   */
  static async start(o: {
    donor: Endpoint;
    options: ThrottleOptions;
    ours: Server[];
    /** how many of them stream rows (the copy's workers) */
    readers: number;
    log: Logger;
    progress: ProgressSink;
  }): Promise<DonorThrottle> {
    const ids = o.ours.map((s) => s.connectionId);
    const t = new DonorThrottle(o.options, ids, o.readers, o.log, o.progress);
    if (!o.options.adaptive) return t;
    try {
      t.#probe = await connect(o.donor);
      for (const r of o.options.replicas) t.#replicas.push(await connect(r));
      const samples: number[] = [];
      for (let i = 0; i < 7; i++) {
        const started = performance.now();
        await t.#probe.query(t.#runningSql());
        samples.push(performance.now() - started);
        await new Promise((r) => setTimeout(r, 20));
      }
      samples.sort((a, b) => a - b);
      t.#baselineMs = samples[3]!;
      t.#latencyLimitMs = o.options.latencyMs || Math.max(3 * t.#baselineMs, t.#baselineMs + 5);
    } catch (err) {
      await t.#closeSessions();
      throw err;
    }
    // A donor already overloaded is read slowly from the first row on.
    t.#lastTick = Date.now();
    await t.#tick();
    t.#timer = setInterval(() => void t.#tick(), TICK_MS);
    t.#timer.unref();
    return t;
  }

  /** Stops watching, closes the sessions and reports what the throttle did. */
  async stop(): Promise<ThrottleReport> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    // A tick in flight finishes on the sessions before they close.
    for (let i = 0; i < 100 && this.#busy; i++) await new Promise((r) => setTimeout(r, 20));
    this.#markSlowed(false);
    await this.#closeSessions();
    return {
      adaptive: this.#options.adaptive,
      maxRate: this.#options.maxRate,
      slowedMs: this.#slowedMs,
      reasons: { ...this.#reasons },
      lowestRate: this.#lowest,
      baselineMs: this.#baselineMs,
      latencyLimitMs: this.#latencyLimitMs,
    };
  }

  async #closeSessions(): Promise<void> {
    const all = [this.#probe, ...this.#replicas].filter((s): s is Server => s !== undefined);
    this.#probe = undefined;
    this.#replicas = [];
    await Promise.allSettled(all.map((s) => s.close()));
  }

  async #tick(): Promise<void> {
    if (this.#busy || !this.#probe) return;
    this.#busy = true;
    try {
      const now = Date.now();
      this.#recent.push({ bytes: this.gate.takeCharged(), ms: Math.max(1, now - this.#lastTick) });
      if (this.#recent.length > MEASURE_TICKS) this.#recent.shift();
      this.#lastTick = now;
      const sum = (key: 'bytes' | 'ms') => this.#recent.reduce((n, r) => n + r[key], 0);
      const measured = (sum('bytes') / sum('ms')) * 1000;
      const { overload } = await this.#read();
      const took = Date.now() - now;
      if (took > 4 * TICK_MS)
        this.#warnOnce(
          'slow',
          `the throttle's checks took ${took} ms (the health probe and any --throttle-query or --throttle-replica): the donor is watched less often than every ${TICK_MS} ms`,
        );
      this.#adjust(overload, measured);
    } catch (err) {
      // A probe that fails (the donor restarting, a network cut) slows nothing by itself: the
      // copy's own sessions fail and say why.
      this.#warnOnce('probe', `the throttle's health probe failed: ${errorMessage(err)}`);
    } finally {
      this.#busy = false;
    }
  }

  async #read(): Promise<Reading> {
    const o = this.#options;
    const started = performance.now();
    const [row] = await this.#probe!.query(this.#runningSql());
    const latency = performance.now() - started;
    const others = Number(row?.n ?? 0);
    if (others > o.threadsRunning)
      return { overload: { signal: 'threads_running', detail: `${others} threads running on the donor` } };
    // One slow probe is noise; two in a row, or one far over the limit, is the donor suffering.
    const limit = this.#latencyLimitMs!;
    this.#slowLatencyTicks = latency > limit ? this.#slowLatencyTicks + 1 : 0;
    if (this.#slowLatencyTicks >= 2 || latency > 3 * limit)
      return {
        overload: {
          signal: 'probe latency',
          detail: `probe took ${latency.toFixed(1)} ms (limit ${limit.toFixed(1)} ms)`,
        },
      };
    for (const replica of this.#replicas) {
      const [st] = await replica.query('SHOW SLAVE STATUS');
      const lag = st?.Seconds_Behind_Master;
      if (lag === null || lag === undefined) {
        this.#warnOnce(`lag ${replica.label}`, `${replica.label} does not replicate: its lag is not watched`);
        continue;
      }
      if (Number(lag) > o.maxLagSeconds)
        return { overload: { signal: 'replica lag', detail: `${replica.label} is ${String(lag)} s behind` } };
    }
    if (o.healthQuery) {
      const [r] = await this.#probe!.query(o.healthQuery);
      // True as SQL reads it: a number not 0 ('abc' is 0, '2 rows' is 2); NULL is false.
      const v = r ? Object.values(r)[0] : undefined;
      const n = v === null || v === undefined ? 0 : Number.parseFloat(String(v));
      if (Number.isFinite(n) && n !== 0)
        return { overload: { signal: 'health query', detail: `the health query returned ${String(v)}` } };
    }
    return { overload: undefined };
  }

  /**
   * The probe: the donor's sessions running a statement, but for reseed's own, this one, and
   * the server's own threads (replication, binlog senders): what Threads_running means to a DBA.
   */
  #runningSql(): string {
    const ids = [...this.#ours, 'CONNECTION_ID()'].join(', ');
    return (
      `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID NOT IN (${ids}) AND COMMAND NOT IN ` +
      `('Sleep', 'Daemon', 'Killed', 'Binlog Dump', 'Binlog Dump GTID', 'Slave_IO', 'Slave_SQL', 'Slave_worker')`
    );
  }

  /**
   * Overload cuts both levers: the sessions reading at once (to 1) and the read rate (halved, from
   * what was actually read). Calm gives them back in the other order, a step per second of calm:
   * the rate doubled (at least a quarter of the unslowed speed) until it reaches the cap, that
   * speed, or no longer binds; then the sessions, doubled.
   */
  #adjust(overload: Reading['overload'], measured: number): void {
    const gate = this.gate;
    if (overload) {
      this.#calm = 0;
      const [rateBefore, slotsBefore] = [gate.rate, gate.slots];
      gate.slots = 1;
      const from = Math.min(gate.rate, measured > 0 ? measured : gate.rate);
      const rate = Math.max(MIN_RATE, Number.isFinite(from) ? from / 2 : FIRST_RATE);
      gate.rate = rate;
      this.#lowest = Math.min(this.#lowest ?? Infinity, rate);
      this.#reasons[overload.signal] = (this.#reasons[overload.signal] ?? 0) + 1;
      this.#markSlowed(true);
      // Held at the floor: nothing changed, nothing to tell.
      if (rate === rateBefore && gate.slots === slotsBefore) return;
      this.#announce(`${overload.detail}: donor reads slowed to ${formatRate(rate)}`);
      this.#log.info(
        { signal: overload.signal, detail: overload.detail, rate, sessions: gate.slots },
        'donor reads slowed',
      );
      return;
    }
    if (this.#slowedSince === undefined) {
      // What the reads take unslowed: where the rate may go back to at once when calm returns.
      if (measured > 0) this.#fullSpeed = Math.max(this.#fullSpeed ?? 0, measured);
      return;
    }
    if (++this.#calm < CALM_TICKS) return;
    this.#calm = 0;
    const full = this.#fullSpeed;
    if (gate.rate < this.#cap) {
      // Doubled, and at least a quarter of the unslowed speed at once: from the 1 MiB/s floor,
      // raising by half a step a second took 8 s to matter again (first-user trial).
      const raised = Math.min(this.#cap, Math.max(gate.rate * 2, (full ?? 0) / 4));
      // The rate is back once it reaches the unslowed speed, or no longer binds (the reads run
      // slower than it lets them).
      const free =
        raised >= this.#cap ||
        (this.#cap === Infinity &&
          ((full !== undefined && raised >= full) || (measured > 0 && raised > 4 * measured)));
      gate.rate = free ? this.#cap : raised;
      this.#announce(
        `donor calm for 1 s: ${
          !free
            ? `reads raised to ${formatRate(gate.rate)}`
            : this.#cap === Infinity
              ? 'reads no longer held to a rate'
              : `reads back at --max-rate ${formatRate(this.#cap)}`
        }`,
      );
      return;
    }
    if (gate.slots * 2 < this.#readers) {
      gate.slots = gate.slots * 2;
      this.#announce('donor calm for 1 s: more sessions read again');
      return;
    }
    gate.slots = Infinity;
    this.#markSlowed(false);
    this.#progress.emit({ type: 'throttle', active: false, reason: 'the donor recovered' });
    this.#log.info('donor reads back to full speed');
  }

  /** A change of the levers while slowed: a throttle event, as every change is (docs/throttling.md). */
  #announce(what: string): void {
    const sessions = `${this.gate.slots} session${this.gate.slots === 1 ? '' : 's'}`;
    this.#progress.emit({ type: 'throttle', active: true, reason: `${what}, ${sessions} at a time` });
  }

  #markSlowed(slowed: boolean): void {
    const now = Date.now();
    if (slowed && this.#slowedSince === undefined) this.#slowedSince = now;
    if (!slowed && this.#slowedSince !== undefined) {
      this.#slowedMs += now - this.#slowedSince;
      this.#slowedSince = undefined;
    }
  }

  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#progress.emit({ type: 'warning', message });
    this.#log.warn(message);
  }
}

/**
 * The throttle's own inputs, checked before anything changes: the user's health query must run
 * on the donor, and every watched replica must answer SHOW SLAVE STATUS. One line per problem.
 */
export async function throttleProblems(options: ThrottleOptions, donor: Server): Promise<string[]> {
  const problems: string[] = [];
  if (!options.adaptive) return problems;
  if (options.healthQuery !== undefined) {
    try {
      await donor.query(options.healthQuery);
    } catch (err) {
      problems.push(`--throttle-query failed on the donor: ${errorMessage(err)}`);
    }
  }
  for (const endpoint of options.replicas) {
    let replica: Server | undefined;
    try {
      replica = await connect(endpoint);
      await replica.query('SHOW SLAVE STATUS');
    } catch (err) {
      problems.push(`--throttle-replica: ${errorMessage(err)}`);
    } finally {
      await replica?.close();
    }
  }
  return problems;
}

export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond)) return 'unlimited';
  return `${(bytesPerSecond / 2 ** 20).toFixed(1)} MiB/s`;
}

/** "50M", "1.5G", "200k", "1000000": bytes per second. */
export function parseRate(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?(\/s)?$/i.exec(text.trim());
  if (!m) return undefined;
  const units = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  const unit = units[m[2]!.toLowerCase() as keyof typeof units];
  const n = Math.round(Number(m[1]) * unit);
  return n > 0 ? n : undefined;
}
