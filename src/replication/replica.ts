import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, throwIfAborted } from '../errors.js';
import type { Journal } from '../journal/journal.js';
import type { ChangeSourceOptions, Flavor, ReplicaStatus } from '../mysql/flavor/index.js';
import type { Server } from '../mysql/server.js';
import { quoteString } from '../mysql/server.js';
import type { ProgressSink } from '../progress.js';
import type { BinlogPosition } from './coordinates.js';

export interface ReplicationTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  /** GTID auto-positioning from `gtid`; otherwise file/position from `binlog` */
  useGtid: boolean;
  gtid: string;
  binlog: BinlogPosition;
  ssl?: ChangeSourceOptions['ssl'];
}

export async function replicaStatus(
  server: Server,
  flavor: Flavor,
  signal?: AbortSignal,
): Promise<ReplicaStatus | undefined> {
  const [row] = await server.query(flavor.replicaStatusSql, [], signal);
  return row ? flavor.parseReplicaStatus(row) : undefined;
}

/**
 * Points the joiner at its new source from the snapshot's coordinates and starts it. The
 * journal's undo removes the new settings and restores the previous source (all but its
 * password, which no server reveals).
 */
export async function configureReplica(args: {
  joiner: Server;
  flavor: Flavor;
  target: ReplicationTarget;
  journal: Journal;
  signal?: AbortSignal | undefined;
}): Promise<void> {
  const { joiner, flavor, target, journal, signal } = args;
  const before = await replicaStatus(joiner, flavor, signal);
  const [gtidRow] = await joiner.query(flavor.replicaGtidPositionSql, [], signal);
  const previousGtid = String(gtidRow?.gtid ?? '');
  const undo = [flavor.stopReplicaSql, flavor.resetReplicaAllSql];
  if (flavor.name === 'mariadb') undo.push(`SET GLOBAL gtid_slave_pos = ${quoteString(previousGtid)}`);
  if (before && before.sourceHost) {
    const change = flavor.changeSourceSql(
      {
        host: before.sourceHost,
        port: before.sourcePort,
        user: before.sourceUser,
        gtid: before.usingGtid,
        ...(before.usingGtid ? {} : { binlog: before.executed }),
      },
      '',
    );
    // Inline the previous settings (no secret among them; the password is left out on purpose).
    undo.push(inlineWithoutPassword(change.sql, change.params));
  }
  await journal.apply(
    `configure replication on the joiner from ${target.host}:${target.port}`,
    { target: 'joiner', statements: undo },
    async () => {
      await joiner.query(flavor.stopReplicaSql, [], signal);
      await joiner.query(flavor.resetReplicaAllSql, [], signal);
      if (target.useGtid)
        for (const sql of flavor.setGtidPositionSql(target.gtid)) await joiner.query(sql, [], signal);
      const change = flavor.changeSourceSql(
        {
          host: target.host,
          port: target.port,
          user: target.user,
          gtid: target.useGtid,
          binlog: target.binlog,
          ssl: target.ssl,
        },
        target.password,
      );
      await joiner.query(change.sql, change.params, signal);
      await joiner.query(flavor.startReplicaSql, [], signal);
    },
  );
}

function inlineWithoutPassword(sql: string, params: unknown[]): string {
  const parts = sql.split('?');
  let out = parts[0]!;
  for (let i = 1; i < parts.length; i++) {
    const p = params[i - 1];
    out += (typeof p === 'number' ? String(p) : quoteString(String(p ?? ''))) + parts[i]!;
  }
  return out.replace(/,\s*(MASTER|SOURCE)_PASSWORD\s*=\s*''/, '');
}

/**
 * Waits until the replica has applied everything the source had when the wait began (its GTID
 * position, or its binlog position without GTID), reporting lag meanwhile. Fails early when a
 * replication thread stops with an error.
 */
export async function waitForCatchUp(args: {
  replica: Server;
  source: Server;
  flavor: Flavor;
  useGtid: boolean;
  timeoutMs: number;
  progress: ProgressSink;
  signal?: AbortSignal | undefined;
}): Promise<{ gtid: string; waitedMs: number }> {
  const { replica, source, flavor, useGtid, timeoutMs, progress, signal } = args;
  const started = Date.now();
  const [g] = await source.query(flavor.currentGtidSql, [], signal);
  const gtid = String(g?.gtid ?? '');
  const [s] = await source.query(flavor.binlogStatusSql, [], signal);
  const position = s ? flavor.parseBinlogStatus(s) : { file: '', position: 0 };
  for (;;) {
    throwIfAborted(signal);
    const wait = useGtid ? flavor.waitForGtidSql(gtid, 1) : flavor.waitForPositionSql(position, 1);
    const [r] = await replica.query(wait.sql, wait.params, signal);
    const reached = Number(r?.result ?? -1) >= 0;
    const status = await replicaStatus(replica, flavor, signal);
    // Having the position is not enough: a replica whose I/O thread cannot connect also "has"
    // it when the source was idle. Both threads must run.
    if (reached && status?.ioRunning && status.sqlRunning) return { gtid, waitedMs: Date.now() - started };
    progress.emit({ type: 'lag', secondsBehind: status?.secondsBehind ?? null, gtid });
    if (status && (!status.ioRunning || !status.sqlRunning) && (status.lastIoError || status.lastSqlError)) {
      throw new ReseedError(
        'REPLICATION_FAILED',
        `replication stopped with an error: ${status.lastIoError || status.lastSqlError}`,
        {
          hints: [
            'see SHOW SLAVE STATUS on the joiner; check the replication user, its password and the host the joiner connects to',
          ],
        },
      );
    }
    if (Date.now() - started > timeoutMs) {
      throw new ReseedError(
        'CATCHUP_TIMEOUT',
        `the replica did not catch up within ${Math.round(timeoutMs / 1000)} s (lag ${status?.secondsBehind ?? 'unknown'} s)`,
        {
          retryable: true,
          hints: ['replication keeps running; watch it with SHOW SLAVE STATUS, or raise --catchup-timeout'],
        },
      );
    }
    await sleep(200, undefined, signal ? { signal } : undefined).catch(() => undefined);
  }
}
