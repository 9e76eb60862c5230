import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, throwIfAborted } from '../errors.js';
import type { Logger } from '../log.js';
import type { BinlogPosition, Coordinates } from '../replication/coordinates.js';
import { compareBinlog } from '../replication/coordinates.js';
import type { Endpoint } from './credentials.js';
import type { Flavor, ReadLockMode } from './flavor/index.js';
import { acquireReadLock } from './read-lock.js';
import type { ReadLockPolicy } from './read-lock.js';
import { connect } from './server.js';
import type { Server } from './server.js';

export type SnapshotLockMode = 'auto' | 'none' | ReadLockMode;

/** N donor sessions that all read the same consistent snapshot, and that snapshot's position. */
export interface SnapshotGroup {
  readonly sessions: Server[];
  readonly coordinates: Omit<Coordinates, 'source'>;
  /** how the sessions were lined up: no lock at all, or which read lock */
  readonly lockMode: 'none' | ReadLockMode;
  readonly lockHeldMs: number;
  /** ends the snapshot transactions and closes the sessions */
  close(): Promise<void>;
  /** drops the sessions at once (the server releases everything they held) */
  destroy(): void;
}

export interface SnapshotOptions {
  endpoint: Endpoint;
  flavor: Flavor;
  sessions: number;
  /** statements each session runs before its snapshot (time zone, raw results...) */
  sessionInit: string[];
  lockMode: SnapshotLockMode;
  policy: ReadLockPolicy;
  /** an open connection to the donor, used to watch and kill */
  monitor: Server;
  log: Logger;
  signal?: AbortSignal | undefined;
  /** lock-free attempts before falling back to a read lock (auto mode) */
  lockFreeAttempts?: number;
  /** told why the read lock waits (long-running queries), and undefined once it goes on */
  onWaiting?: ((reason: string | undefined) => void) | undefined;
}

const START = 'START TRANSACTION WITH CONSISTENT SNAPSHOT';

export async function openSnapshotGroup(o: SnapshotOptions): Promise<SnapshotGroup> {
  const sessions: Server[] = [];
  try {
    for (let i = 0; i < o.sessions; i++) {
      throwIfAborted(o.signal);
      sessions.push(
        await connect(o.endpoint, {
          init: ['SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ', ...o.sessionInit],
        }),
      );
    }
    const lockFree = o.lockMode === 'auto' || o.lockMode === 'none';
    if (lockFree && o.flavor.snapshotReportsBinlogPosition) {
      const pos = await lineUpWithoutLock(sessions, o);
      if (pos && pos.gtid !== null)
        return group(sessions, { ...pos, gtid: pos.gtid, flavor: o.flavor.name }, 'none', 0);
      // BINLOG_GTID_POS gives NULL when it cannot read the binary log up to the position (an
      // event there longer than max_allowed_packet): never taken as "no GTID", which would start
      // a replica from the beginning of the donor's binary log or compare at no position.
      const unreadable =
        pos !== undefined &&
        `BINLOG_GTID_POS('${pos.binlog.file}', ${pos.binlog.position}) returned NULL on the donor (an event in its binary log may be longer than its max_allowed_packet)`;
      if (o.lockMode === 'none' && unreadable)
        throw new ReseedError(
          'SNAPSHOT_FAILED',
          `the snapshot's GTID position could not be read: ${unreadable}`,
          {
            hints: [
              'use --lock-mode auto: under a brief read lock the position is read from @@gtid_binlog_pos',
              "or raise the donor's max_allowed_packet above its largest binary log event",
            ],
          },
        );
      if (o.lockMode === 'none') {
        throw new ReseedError(
          'SNAPSHOT_FAILED',
          'could not line up the snapshot sessions without a lock (the donor commits too often)',
          {
            retryable: true,
            hints: ['use --lock-mode auto to fall back to a brief read lock'],
          },
        );
      }
      o.log.info(
        unreadable
          ? `${unreadable}: falling back to a read lock, under which the position is read directly`
          : 'lock-free snapshot did not line up; falling back to a read lock',
      );
    } else if (o.lockMode === 'none') {
      throw new ReseedError(
        'USAGE',
        `--lock-mode none needs a server that reports a snapshot's binlog position (MariaDB)`,
      );
    }
    const mode: ReadLockMode =
      o.lockMode === 'auto' ? o.flavor.readLockModes[0]! : (o.lockMode as ReadLockMode);
    if (!o.flavor.readLockModes.includes(mode)) {
      throw new ReseedError('USAGE', `--lock-mode ${mode} is not offered by ${o.flavor.name}`);
    }
    return await lineUpUnderLock(sessions, mode, o);
  } catch (err) {
    for (const s of sessions) s.destroy();
    throw err;
  }
}

function group(
  sessions: Server[],
  coordinates: Omit<Coordinates, 'source'>,
  lockMode: 'none' | ReadLockMode,
  lockHeldMs: number,
): SnapshotGroup {
  return {
    sessions,
    coordinates,
    lockMode,
    lockHeldMs,
    async close() {
      await Promise.allSettled(
        sessions.map(async (s) => {
          await s.query('COMMIT').catch(() => undefined);
          await s.close();
        }),
      );
    },
    destroy() {
      for (const s of sessions) s.destroy();
    },
  };
}

async function snapshotPosition(session: Server): Promise<BinlogPosition> {
  const rows = await session.query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'");
  const get = (name: string) =>
    String(rows.find((r) => String(r.Variable_name).toLowerCase() === name)?.Value ?? '');
  return { file: get('binlog_snapshot_file'), position: Number(get('binlog_snapshot_position')) };
}

/**
 * MariaDB makes a consistent snapshot consistent with the binary log: the snapshot holds exactly
 * the transactions before its reported binlog position. So sessions whose snapshots report the
 * same position see the same data, and no lock is needed. Sessions that land behind are
 * restarted until all agree (or we give up and take a lock). Caveat: writes made on the donor
 * with sql_log_bin=0 are outside the binlog order and could differ between sessions.
 */
async function lineUpWithoutLock(
  sessions: Server[],
  o: SnapshotOptions,
): Promise<{ gtid: string | null; binlog: BinlogPosition } | undefined> {
  const positions: (BinlogPosition | undefined)[] = sessions.map(() => undefined);
  const attempts = o.lockFreeAttempts ?? 20;
  for (let attempt = 0; attempt < attempts; attempt++) {
    throwIfAborted(o.signal);
    const target = positions.reduce<BinlogPosition | undefined>(
      (max, p) => (p && (!max || compareBinlog(p, max) > 0) ? p : max),
      undefined,
    );
    await Promise.all(
      sessions.map(async (s, i) => {
        const p = positions[i];
        if (p && target && compareBinlog(p, target) === 0) return;
        if (p) await s.query('ROLLBACK');
        await s.query(START);
        positions[i] = await snapshotPosition(s);
      }),
    );
    const first = positions[0]!;
    if (positions.every((p) => p && compareBinlog(p, first) === 0)) {
      const sql = o.flavor.gtidAtBinlogSql();
      const [row] = sql ? await sessions[0]!.query(sql, [first.file, first.position]) : [];
      o.log.debug({ attempt, binlog: first }, 'snapshot sessions lined up without a lock');
      // No GTID function (MySQL): ''. NULL: the position could not be read (the caller decides).
      const gtid = !sql ? '' : row?.gtid === null || row?.gtid === undefined ? null : String(row.gtid);
      return { gtid, binlog: first };
    }
  }
  for (const s of sessions) await s.query('ROLLBACK');
  return undefined;
}

/**
 * Fault injection for tests only: RESEED_FAULT_HOLD_LOCK_MS keeps the read lock that much longer,
 * so the --max-lock-time watchdog can be seen to work (the real hold is well under a millisecond).
 */
async function faultHoldLock(): Promise<void> {
  const ms = Number(process.env.RESEED_FAULT_HOLD_LOCK_MS ?? 0);
  if (ms > 0) await sleep(ms);
}

async function lineUpUnderLock(
  sessions: Server[],
  mode: ReadLockMode,
  o: SnapshotOptions,
): Promise<SnapshotGroup> {
  const lockConnection = await connect(o.endpoint);
  try {
    const lock = await acquireReadLock({
      lockConnection,
      monitor: o.monitor,
      flavor: o.flavor,
      mode,
      policy: o.policy,
      log: o.log,
      signal: o.signal,
      onWaiting: o.onWaiting,
    });
    let binlog: BinlogPosition;
    let gtid: string;
    try {
      await Promise.all(sessions.map((s) => s.query(START)));
      await faultHoldLock();
      const [status] = await lockConnection.query(o.flavor.binlogStatusSql);
      binlog = status ? o.flavor.parseBinlogStatus(status) : { file: '', position: 0 };
      const [g] = await lockConnection.query(o.flavor.currentGtidSql);
      gtid = String(g?.gtid ?? '');
    } catch (err) {
      // A session the watchdog killed fails here first: report the watchdog, not the symptom.
      lock.assertHeld();
      throw err;
    } finally {
      await lock.release().catch(() => undefined);
    }
    lock.assertHeld();
    return group(sessions, { flavor: o.flavor.name, gtid, binlog }, mode, lock.heldMs);
  } finally {
    await lockConnection.close();
  }
}
