import type { Command } from 'commander';
import { ReseedError } from '../errors.js';
import { resolveEndpoint } from '../mysql/credentials.js';
import type { Endpoint } from '../mysql/credentials.js';
import { formatRate, parseRate } from '../throttle/donor-throttle.js';
import type { ThrottleOptions, ThrottleReport } from '../throttle/donor-throttle.js';
import { parseDuration, parsePositiveInt } from './common.js';
import { formatMs } from './output.js';

/** The donor throttle's flags, shared by clone and verify (docs/throttling.md). */
export interface ThrottleFlags {
  maxRate?: string;
  throttle: boolean;
  throttleThreads: string;
  throttleLatency?: string;
  throttleReplica: string[];
  throttleLag: string;
  throttleQuery?: string;
  donorDefaultsFile?: string;
  defaultsFile?: string;
}

export function addThrottleOptions(cmd: Command): Command {
  // Listed after the command's own options in its --help.
  return cmd
    .option('--max-rate <bytes/s>', 'read the donor at most this fast, e.g. 50M (MiB/s); default no cap')
    .option(
      '--no-throttle',
      "do not slow the donor's reads when its health degrades (see docs/throttling.md)",
    )
    .option('--throttle-threads <n>', 'overload: more donor threads running than this (not ours)', '16')
    .option(
      '--throttle-latency <duration>',
      'overload: the health probe slower than this (default: 3x its latency before the copy, at least +5ms)',
    )
    .option(
      '--throttle-replica <uri>',
      "a replica of the donor whose lag is watched (repeat for several; the donor's credentials)",
      (value: string, list: string[]) => [...list, value],
      [] as string[],
    )
    .option('--throttle-lag <duration>', 'overload: a watched replica further behind than this', '10s')
    .option(
      '--throttle-query <sql>',
      'your own check, run on the donor: overload while its first value is true (not 0 or NULL)',
    );
}

/** Options that mean nothing without the adaptive throttle, by their flag. */
const THROTTLE_FLAGS: [keyof ThrottleFlags, string][] = [
  ['throttleThreads', '--throttle-threads'],
  ['throttleLatency', '--throttle-latency'],
  ['throttleReplica', '--throttle-replica'],
  ['throttleLag', '--throttle-lag'],
  ['throttleQuery', '--throttle-query'],
];

export function checkThrottleConflicts(flags: ThrottleFlags, command: Command): void {
  if (flags.throttle) return;
  const clash = THROTTLE_FLAGS.filter(([k]) => command.getOptionValueSource(k) === 'cli').map(([, f]) => f);
  if (clash.length)
    throw new ReseedError(
      'USAGE',
      `--no-throttle contradicts ${clash.join(', ')}: drop ${clash.length > 1 ? 'them' : 'it'}, or drop --no-throttle`,
    );
}

export function throttleOptions(flags: ThrottleFlags, donor: Endpoint): ThrottleOptions {
  let maxRate: number | undefined;
  if (flags.maxRate !== undefined) {
    maxRate = parseRate(flags.maxRate);
    if (maxRate === undefined)
      throw new ReseedError(
        'USAGE',
        `--max-rate takes bytes per second, e.g. 50M or 1.5G (binary units), not '${flags.maxRate}'`,
      );
  }
  const replicas = flags.throttleReplica.map((uri) => {
    // Credentials as for the donor (RESEED_DONOR_PASSWORD, --donor-defaults-file...), and its TLS.
    const { endpoint } = resolveEndpoint(uri, {
      side: 'donor',
      sideDefaultsFile: flags.donorDefaultsFile,
      defaultsFile: flags.defaultsFile,
    });
    if (!endpoint.tls && donor.tls) endpoint.tls = donor.tls;
    return endpoint;
  });
  return {
    maxRate,
    adaptive: flags.throttle,
    threadsRunning: parsePositiveInt('--throttle-threads', flags.throttleThreads, 100_000),
    latencyMs:
      flags.throttleLatency === undefined ? 0 : positiveDuration(flags.throttleLatency, '--throttle-latency'),
    replicas,
    maxLagSeconds: parseDuration(flags.throttleLag, '--throttle-lag') / 1000,
    healthQuery: flags.throttleQuery,
  };
}

/** "slowed 12.3 s (probe latency x3, threads_running x1), down to 4.0 MiB/s; cap 50.0 MiB/s". */
export function describeThrottle(t: ThrottleReport): string {
  const cap = t.maxRate === undefined ? '' : `cap ${formatRate(t.maxRate)}; `;
  if (!t.adaptive) return `${cap}adaptive throttling off (--no-throttle)`;
  const reasons = Object.entries(t.reasons);
  if (reasons.length === 0) return `${cap}never slowed (the donor stayed healthy)`;
  return (
    `${cap}slowed for ${formatMs(t.slowedMs)} (${reasons.map(([k, n]) => `${k} x${n}`).join(', ')}), ` +
    `down to ${formatRate(t.lowestRate ?? 0)}`
  );
}

/** A duration that must be more than zero (0 ms would mean "always overloaded"). */
function positiveDuration(text: string, option: string): number {
  const ms = parseDuration(text, option);
  if (ms <= 0) throw new ReseedError('USAGE', `${option} must be more than 0, e.g. 20ms (not '${text}')`);
  return ms;
}
