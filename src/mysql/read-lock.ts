import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, throwIfAborted } from '../errors.js';
import type { Logger } from '../log.js';
import type { Flavor, ReadLockMode } from './flavor/index.js';
import { sqlErrno } from './server.js';
import type { Server } from './server.js';

/**
 * The donor's read-lock policy: wait for a window with no long-running query, give up and kill
 * our own blocked lock statement after `lockWaitTimeoutMs` (so the donor's clients queued behind
 * it are released), retry, and never hold the lock past `maxLockTimeMs`.
 */
export interface ReadLockPolicy {
  lockWaitTimeoutMs: number;
  maxLockTimeMs: number;
  /** a query running at least this long closes the window */
  longQuerySeconds: number;
  retries: number;
}

export const DEFAULT_READ_LOCK_POLICY: ReadLockPolicy = {
  lockWaitTimeoutMs: 10_000,
  maxLockTimeMs: 5_000,
  longQuerySeconds: 10,
  retries: 3,
};

export interface HeldReadLock {
  readonly mode: ReadLockMode;
  /** milliseconds the lock was held (final once released) */
  readonly heldMs: number;
  /** throws if the watchdog had to release the lock */
  assertHeld(): void;
  release(): Promise<number>;
}

interface BlockingQuery {
  id: number;
  user: string;
  time: number;
  info: string;
}

/** Sessions that never block a read lock: idle, replication, binlog dump, daemons. */
const IGNORED_COMMANDS = [
  'Sleep',
  'Binlog Dump',
  'Binlog Dump GTID',
  'Daemon',
  'Slave_IO',
  'Slave_SQL',
  'Slave_worker',
];

async function longQueries(
  monitor: Server,
  exclude: number,
  seconds: number,
  signal?: AbortSignal,
): Promise<BlockingQuery[]> {
  const rows = await monitor.query(
    `SELECT ID AS id, USER AS user, TIME AS time, LEFT(IFNULL(INFO, ''), 80) AS info
       FROM information_schema.PROCESSLIST
      WHERE ID <> CONNECTION_ID() AND ID <> ? AND TIME >= ?
        AND COMMAND NOT IN (${IGNORED_COMMANDS.map(() => '?').join(', ')})
        AND USER NOT IN ('system user', 'event_scheduler')`,
    [exclude, seconds, ...IGNORED_COMMANDS],
    signal,
  );
  return rows.map((r) => ({
    id: Number(r.id),
    user: String(r.user),
    time: Number(r.time),
    info: String(r.info),
  }));
}

export interface ReadLockArgs {
  /** the session that takes and holds the lock */
  lockConnection: Server;
  /** another session, that watches the processlist and kills */
  monitor: Server;
  flavor: Flavor;
  mode: ReadLockMode;
  policy: ReadLockPolicy;
  log: Logger;
  signal?: AbortSignal | undefined;
  /** told why the lock waits (long-running queries), and undefined once it goes on */
  onWaiting?: ((reason: string | undefined) => void) | undefined;
  /** run once a quiet window is found, just before the lock statement (each attempt) */
  beforeLock?: (() => Promise<void>) | undefined;
}

export async function acquireReadLock(args: ReadLockArgs): Promise<HeldReadLock> {
  const { lockConnection, monitor, flavor, mode, policy, log, signal } = args;
  let lastBlocker: BlockingQuery | undefined;
  let loggedAt = 0;
  for (let attempt = 1; attempt <= policy.retries; attempt++) {
    throwIfAborted(signal);
    // 1. Wait for a window with no long-running query.
    const windowDeadline = Date.now() + policy.lockWaitTimeoutMs;
    for (;;) {
      const blockers = await longQueries(
        monitor,
        lockConnection.connectionId,
        policy.longQuerySeconds,
        signal,
      );
      if (blockers.length === 0) break;
      lastBlocker = blockers[0];
      if (Date.now() >= windowDeadline) break;
      const longest = blockers.reduce((a, b) => (b.time > a.time ? b : a));
      args.onWaiting?.(
        `read lock waits for ${blockers.length === 1 ? 'a query' : `${blockers.length} queries`} running over ${policy.longQuerySeconds} s to end (connection ${longest.id} of ${longest.user}, ${longest.time} s; attempt ${attempt} of ${policy.retries})`,
      );
      if (Date.now() - loggedAt >= 5000) {
        loggedAt = Date.now();
        log.info(
          { blockers: blockers.length, attempt },
          'waiting for long-running queries before the read lock',
        );
      }
      await sleep(250, undefined, signal ? { signal } : undefined).catch(() => undefined);
      throwIfAborted(signal);
    }
    args.onWaiting?.(undefined);
    await args.beforeLock?.();
    throwIfAborted(signal);
    // 2. Take the lock; our own statement is killed if it waits longer than allowed.
    const started = Date.now();
    let killed = false;
    const killer = setTimeout(() => {
      killed = true;
      monitor.query(`KILL QUERY ${lockConnection.connectionId}`).catch((err: unknown) => {
        log.warn({ err }, 'could not kill our own blocked read-lock statement');
      });
    }, policy.lockWaitTimeoutMs);
    try {
      for (const sql of flavor.acquireReadLockSql(mode)) await lockConnection.query(sql, [], signal);
      clearTimeout(killer);
      if (killed) throw new ReseedError('DONOR_LOCK_TIMEOUT', 'read lock statement was killed');
      return holdWithWatchdog({ ...args, acquiredAt: Date.now() });
    } catch (err) {
      clearTimeout(killer);
      // A half-taken BACKUP STAGE must be ended before the next attempt; harmless otherwise.
      await Promise.allSettled(flavor.releaseReadLockSql(mode).map((sql) => lockConnection.query(sql)));
      const interrupted = killed || sqlErrno(err) === 1317;
      if (!interrupted) throw err;
      log.warn(
        { attempt, waitedMs: Date.now() - started },
        'read lock not granted in time; our statement was killed',
      );
      await sleep(Math.min(1000 * attempt, 5000), undefined, signal ? { signal } : undefined).catch(
        () => undefined,
      );
    }
  }
  const blocker = lastBlocker
    ? ` (connection ${lastBlocker.id} of ${lastBlocker.user} has run for ${lastBlocker.time}s: ${lastBlocker.info})`
    : '';
  throw new ReseedError(
    'DONOR_LOCK_TIMEOUT',
    `could not take the donor's read lock (${mode}) within ${policy.lockWaitTimeoutMs} ms in ${policy.retries} attempts${blocker}`,
    {
      retryable: true,
      hints: [
        "our lock statement was killed each time, so the donor's clients were not kept waiting",
        'retry when the donor is quieter, or raise --lock-wait-timeout',
      ],
    },
  );
}

function holdWithWatchdog(args: ReadLockArgs & { acquiredAt: number }): HeldReadLock {
  const { lockConnection, monitor, flavor, mode, policy, log, acquiredAt } = args;
  let releasedAt: number | undefined;
  let expired = false;
  // The watchdog ends the lock session itself: the server then drops every lock it held.
  const watchdog = setTimeout(() => {
    expired = true;
    releasedAt = Date.now();
    log.error({ maxLockTimeMs: policy.maxLockTimeMs }, 'read lock held too long; the watchdog released it');
    monitor.query(`KILL ${lockConnection.connectionId}`).catch(() => lockConnection.destroy());
  }, policy.maxLockTimeMs);
  return {
    mode,
    get heldMs() {
      return (releasedAt ?? Date.now()) - acquiredAt;
    },
    assertHeld() {
      if (expired) {
        throw new ReseedError(
          'DONOR_LOCK_TOO_LONG',
          `the donor's read lock reached --max-lock-time (${policy.maxLockTimeMs} ms) and was released by the watchdog`,
          { retryable: true, hints: ['the donor is no longer locked; retry, or raise --max-lock-time'] },
        );
      }
    },
    async release() {
      clearTimeout(watchdog);
      if (!expired) {
        for (const sql of flavor.releaseReadLockSql(mode)) await lockConnection.query(sql);
        releasedAt = Date.now();
      }
      return (releasedAt ?? Date.now()) - acquiredAt;
    },
  };
}
