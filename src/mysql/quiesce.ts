import type { Logger } from '../log.js';
import { inspect } from './facts.js';
import type { ReadLockMode } from './flavor/index.js';
import { acquireReadLock } from './read-lock.js';
import type { HeldReadLock, ReadLockPolicy } from './read-lock.js';
import { connect } from './server.js';
import type { Endpoint } from './credentials.js';

/** Where a server stood while it was quiesced: what a replica seeded from the snapshot starts from. */
export interface QuiesceCoordinates {
  server: string;
  serverId: number;
  version: string;
  lockMode: ReadLockMode;
  /** when the lock was granted (ISO 8601) */
  lockedAt: string;
  /** the GTID position (MariaDB gtid_binlog_pos, MySQL gtid_executed); empty without GTIDs */
  gtid: string;
  /** the binary log position; absent when binary logging is off */
  binlog?: { file: string; position: number } | undefined;
  /**
   * When the server is a replica: its position in its source's stream, as GTIDs (gtid_slave_pos on
   * MariaDB) and as the source's binary log file and position of the last transaction applied.
   */
  source?:
    | { host: string; port: number; gtid: string; binlog?: { file: string; position: number } | undefined }
    | undefined;
  /** the replica's applier (SQL thread) was stopped before the lock and started after it */
  applierPaused?: boolean | undefined;
}

/**
 * Pausing a replica's applier around the lock (innodb-hotcopy's replica-from-replica): the lock is
 * not kept waiting by a long replicated transaction, and the position in the source's stream is
 * exact. `before` runs before STOP SLAVE SQL_THREAD (to record durably that it must be started
 * again if this process dies), `after` once START SLAVE SQL_THREAD succeeded.
 */
export interface ApplierPause {
  before(): void;
  after(): void;
}

export interface Quiesced {
  coordinates: QuiesceCoordinates;
  lock: HeldReadLock;
  /** the lock released (if it still is held) and both sessions closed; the milliseconds it was held */
  release(): Promise<number>;
}

/**
 * The read lock with the full policy (a window with no long query, a bounded wait whose own
 * statement is killed, a watchdog at `maxLockTimeMs` that ends the lock's session), then the
 * coordinates read under it. `auto` is BACKUP STAGE BLOCK_COMMIT on MariaDB (InnoDB keeps working,
 * commits wait: an atomic snapshot taken now is consistent after crash recovery), FTWRL elsewhere.
 */
export async function quiesce(
  endpoint: Endpoint,
  o: {
    mode: ReadLockMode | 'auto';
    policy: ReadLockPolicy;
    log: Logger;
    signal?: AbortSignal | undefined;
    /** a replica's applier is paused while the lock is held (when it runs) */
    pauseApplier?: ApplierPause | undefined;
  },
): Promise<Quiesced> {
  const lockConnection = await connect(endpoint);
  const monitor = await connect(endpoint).catch((err: unknown) => {
    lockConnection.destroy();
    throw err;
  });
  let paused = false;
  const resumeApplier = async (): Promise<void> => {
    if (!paused) return;
    const { flavor } = facts!;
    try {
      await monitor.query(flavor.startReplicaSqlThreadSql);
      paused = false;
      o.pauseApplier!.after();
      o.log.info("the replica's applier started again");
    } catch (err) {
      o.log.error(
        { err },
        `the replica's applier could not be started again: run ${flavor.startReplicaSqlThreadSql} on it`,
      );
    }
  };
  let facts: Awaited<ReturnType<typeof inspect>> | undefined;
  try {
    facts = await inspect(monitor, o.signal);
    const mode = o.mode !== 'auto' ? o.mode : facts.flavor.name === 'mariadb' ? 'backup-stage' : 'ftwrl';
    const known = facts;
    // Paused once a quiet window is found, just before the lock: not while it is waited for (a
    // cancel then leaves the applier as it was), and the pause lasts the lock and snapshot only.
    const pause = async (): Promise<void> => {
      if (paused || !o.pauseApplier || !known.replica?.sqlRunning) return;
      o.pauseApplier.before();
      paused = true;
      await monitor.query(known.flavor.stopReplicaSqlThreadSql, [], o.signal);
      o.log.info("the replica's applier paused for the lock");
    };
    let lastSaid = 0;
    const lock = await acquireReadLock({
      lockConnection,
      monitor,
      flavor: facts.flavor,
      mode,
      policy: o.policy,
      log: o.log,
      signal: o.signal,
      beforeLock: pause,
      // Said every 5 s while it waits, not at every look (four a second).
      onWaiting: (reason) => {
        if (reason && Date.now() - lastSaid >= 5000) {
          o.log.warn(reason);
          lastSaid = Date.now();
        }
      },
    });
    const lockedAt = new Date().toISOString();
    const [g] = await monitor.query(facts.flavor.currentGtidSql, [], o.signal);
    const status = facts.logBin ? (await monitor.query('SHOW MASTER STATUS', [], o.signal))[0] : undefined;
    let source: QuiesceCoordinates['source'];
    if (facts.replica) {
      const [sp] =
        facts.flavor.name === 'mariadb'
          ? await monitor.query('SELECT @@GLOBAL.gtid_slave_pos AS p', [], o.signal)
          : [{ p: String(g?.gtid ?? '') }];
      const [row] = await monitor.query(facts.flavor.replicaStatusSql, [], o.signal);
      const executed = row ? facts.flavor.parseReplicaStatus(row).executed : undefined;
      source = {
        host: facts.replica.sourceHost,
        port: facts.replica.sourcePort,
        gtid: String(sp?.p ?? ''),
        ...(executed?.file ? { binlog: { file: executed.file, position: executed.position } } : {}),
      };
    }
    const coordinates: QuiesceCoordinates = {
      server: `${facts.hostname}:${facts.port}`,
      serverId: facts.serverId,
      version: facts.version.text,
      lockMode: mode,
      lockedAt,
      gtid: String(g?.gtid ?? ''),
      ...(status ? { binlog: { file: String(status.File), position: Number(status.Position) } } : {}),
      ...(source ? { source } : {}),
      ...(paused ? { applierPaused: true } : {}),
    };
    return {
      coordinates,
      lock,
      async release() {
        try {
          return await lock.release();
        } catch {
          return lock.heldMs; // the watchdog ended the session first
        } finally {
          lockConnection.destroy();
          await resumeApplier();
          monitor.destroy();
        }
      },
    };
  } catch (err) {
    lockConnection.destroy();
    await resumeApplier();
    monitor.destroy();
    throw err;
  }
}
