import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, errorMessage, throwIfAborted } from '../errors.js';
import type { Journal } from '../journal/journal.js';
import type { ChangeSourceOptions, Flavor, ReplicaStatus } from '../mysql/flavor/index.js';
import type { Server } from '../mysql/server.js';
import { connect, quoteString, sqlErrno } from '../mysql/server.js';
import { globalPrivileges } from '../mysql/facts.js';
import type { ProgressSink } from '../progress.js';
import type { TlsSettings } from '../mysql/credentials.js';
import type { BinlogPosition } from './coordinates.js';
import { gtidDistance } from './coordinates.js';

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

/** Where the joiner's new replication points, and how it is limited. */
export interface ReplicaSetup {
  target: ReplicationTarget;
  /** replicate_wild_do_table patterns (the copied schemas, when the user named them) */
  filters: string[] | undefined;
}

/** `schema.%` for replicate_wild_do_table, the schema name's `%`, `_` and `\` taken literally. */
export function schemaPattern(schema: string): string {
  return `${schema.replace(/[\\%_]/g, (c) => `\\${c}`)}.%`;
}

/**
 * Proves, before anything is copied, that the joiner can replicate from the target: a temporary
 * named connection on the joiner logs in to the source with the replication account and asks
 * for a binary log that cannot exist. "Could not find first log file" (1236) means the host was
 * reached, the password was right and the account may read binary logs; anything else is the
 * reason replication would fail. (It asks for no real position: an I/O thread that reads a real
 * binary log without GTID sets the joiner's gtid_slave_pos, shared by every connection.)
 * Journaled, and removed whatever happens. Returns a problem line, or undefined when all is well;
 * undefined too where the flavor has no named connections (MySQL).
 */
export async function probeSource(args: {
  joiner: Server;
  flavor: Flavor;
  target: Omit<ReplicationTarget, 'useGtid' | 'gtid' | 'binlog'>;
  connection: string;
  journal: Journal;
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
}): Promise<string | undefined> {
  const { joiner, flavor, target, connection, journal, signal } = args;
  const use = flavor.useReplicaConnectionSql(connection);
  if (!use) return undefined;
  const where = `${target.host}:${target.port}`;
  const seq = journal.record(`probe replication from ${where} on the joiner`, {
    target: 'joiner',
    op: { kind: 'remove-replica-connection', connection },
  });
  await joiner.query(use, [], signal);
  try {
    const change = flavor.changeSourceSql(
      {
        host: target.host,
        port: target.port,
        user: target.user,
        gtid: false,
        binlog: { file: 'reseed-probe-no-such-log.000001', position: 4 },
        ssl: target.ssl,
      },
      target.password,
    );
    await joiner.query(change.sql, change.params, signal);
    await joiner.query(`${flavor.startReplicaSql} IO_THREAD`, [], signal);
    const deadline = Date.now() + (args.timeoutMs ?? 10_000);
    for (;;) {
      const s = await replicaStatus(joiner, flavor, signal);
      if (s?.lastIoErrno === 1236) return undefined;
      if (s && s.lastIoErrno !== 0)
        return `the joiner cannot replicate from ${where} as ${target.user}: ${s.lastIoError.replace(/ - retry-time: .*? message: /, ': ')}`;
      if (Date.now() > deadline)
        return `the joiner could not reach ${where} within ${Math.round((args.timeoutMs ?? 10_000) / 1000)} s (pass the address the joiner reaches the donor at with --replication-host)`;
      await sleep(200, undefined, signal ? { signal } : undefined);
    }
  } finally {
    await joiner.query(flavor.stopReplicaSql).catch(() => undefined);
    // 1617: the connection was never made (its CHANGE MASTER failed): nothing to remove.
    await joiner.query(flavor.resetReplicaAllSql).catch((err: unknown) => {
      if (sqlErrno(err) !== 1617) throw err;
    });
    await joiner.query(flavor.useReplicaConnectionSql('')!);
    journal.resolve(seq);
  }
}

/**
 * Checks the replication account from reseed's own host: it logs in to the source and may read
 * binary logs (REPLICATION SLAVE). Used when the joiner already has a connection to that source,
 * which the probe's second connection cannot be (MariaDB refuses two connections to one
 * host:port). Returns a problem line, a warning (the source is not reachable from here), or
 * nothing.
 */
export async function checkAccountFromHere(
  target: Omit<ReplicationTarget, 'useGtid' | 'gtid' | 'binlog'>,
  tls: TlsSettings | undefined,
  signal?: AbortSignal,
): Promise<{ problem?: string; warning?: string; serverId?: number }> {
  let s: Server;
  try {
    s = await connect(
      {
        host: target.host,
        port: target.port,
        user: target.user,
        password: target.password,
        ...(tls ? { tls } : {}),
      },
      { connectTimeoutMs: 5000 },
    );
  } catch (err) {
    const errno = (err as { cause?: { errno?: number } }).cause?.errno;
    if (errno === 1045 || errno === 1044)
      return {
        problem: `the replication account ${target.user} cannot log in to ${target.host}:${target.port}: ${errorMessage(err).replace(/^cannot connect to [^:]+:\d+: /, '')}`,
      };
    return {
      warning: `the replication account could not be checked from this host (${target.host}:${target.port}: ${errorMessage(err).replace(/^cannot connect to [^:]+:\d+: /, '')}); the joiner already replicates from there`,
    };
  }
  try {
    const granted = await globalPrivileges(s, signal);
    if (!granted.has('ALL PRIVILEGES') && !granted.has('REPLICATION SLAVE'))
      return {
        problem: `the replication account ${target.user} lacks REPLICATION SLAVE on ${target.host}:${target.port}`,
      };
    const [id] = await s.query('SELECT @@server_id AS id', [], signal);
    return { serverId: Number(id?.id) };
  } finally {
    await s.close();
  }
}

/**
 * Parks a stopped replication connection that points at `host:port`, so a staged connection to
 * the same source can be made (MariaDB refuses two connections to one host:port): only its host
 * changes, to a name that resolves nowhere; its user, password (which no server reveals) and
 * other settings stay. The undo puts the host back, and the position for a file/position replica
 * (changing the host forgets it).
 */
export async function parkConnection(args: {
  joiner: Server;
  flavor: Flavor;
  connection: string;
  journal: Journal;
  signal?: AbortSignal | undefined;
}): Promise<void> {
  const { joiner, flavor, connection, journal, signal } = args;
  const use = flavor.useReplicaConnectionSql(connection);
  if (!use) return;
  await joiner.query(use, [], signal);
  try {
    const s = await replicaStatus(joiner, flavor, signal);
    if (!s) return;
    const restore = [
      `CHANGE MASTER TO MASTER_HOST = ${quoteString(s.sourceHost)}, MASTER_PORT = ${s.sourcePort}`,
    ];
    if (!s.usingGtid && s.executed.file)
      restore[0] += `, MASTER_LOG_FILE = ${quoteString(s.executed.file)}, MASTER_LOG_POS = ${s.executed.position}`;
    await journal.apply(
      `park the joiner's replication ${connection ? `connection '${connection}' ` : ''}from ${s.sourceHost}:${s.sourcePort} (its host renamed while the new replication is staged)`,
      // Stopped first: a joiner restarted meanwhile may have started the parked connection.
      {
        target: 'joiner',
        statements: [use, flavor.stopReplicaSql, ...restore, flavor.useReplicaConnectionSql('')!],
      },
      () => joiner.query(`CHANGE MASTER TO MASTER_HOST = ${quoteString(PARKED_HOST)}`, [], signal),
    );
  } finally {
    await joiner.query(flavor.useReplicaConnectionSql('')!);
  }
}

/** Where a parked connection points: a reserved name (RFC 2606) that resolves nowhere. */
export const PARKED_HOST = 'parked-by-reseed.invalid';

/**
 * Points the joiner at its new source from the snapshot's coordinates and starts it, on a
 * session whose replica statements act on `connection`: a staged connection (MariaDB) that
 * leaves the joiner's own replication settings, and the password no server reveals, untouched
 * until promoteReplica() replaces them once the clone is proven. Where the flavor has no named
 * connections (MySQL) the default one is replaced at once, and its undo restores the previous
 * settings without their password (the plan says so).
 */
export async function configureReplica(args: {
  joiner: Server;
  flavor: Flavor;
  setup: ReplicaSetup;
  connection: string | undefined;
  journal: Journal;
  signal?: AbortSignal | undefined;
}): Promise<void> {
  const { joiner, flavor, setup, connection, journal, signal } = args;
  const { target } = setup;
  const [gtidRow] = await joiner.query(flavor.replicaGtidPositionSql, [], signal);
  const previousGtid = String(gtidRow?.gtid ?? '');
  const title = `configure replication on the joiner from ${target.host}:${target.port}`;
  const use = connection === undefined ? undefined : flavor.useReplicaConnectionSql(connection);
  if (use) {
    await journal.apply(
      `${title} (staged as connection '${connection}')`,
      { target: 'joiner', op: { kind: 'remove-replica-connection', connection, gtidSlavePos: previousGtid } },
      async () => {
        await joiner.query(use, [], signal);
        await startReplica(joiner, flavor, setup, target.useGtid ? target.gtid : undefined, signal);
      },
    );
    return;
  }
  const before = await replicaStatus(joiner, flavor, signal);
  const undo = [
    flavor.stopReplicaSql,
    flavor.resetReplicaAllSql,
    ...flavor.restoreGtidPositionSql(previousGtid),
  ];
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
  await journal.apply(title, { target: 'joiner', statements: undo }, async () => {
    await joiner.query(flavor.stopReplicaSql, [], signal);
    await joiner.query(flavor.resetReplicaAllSql, [], signal);
    await startReplica(joiner, flavor, setup, target.useGtid ? target.gtid : undefined, signal);
  });
}

/** CHANGE MASTER, filters, the GTID position when given, START SLAVE: on this session's connection. */
async function startReplica(
  joiner: Server,
  flavor: Flavor,
  setup: ReplicaSetup,
  gtid: string | undefined,
  signal?: AbortSignal,
): Promise<void> {
  const { target } = setup;
  if (gtid !== undefined)
    for (const sql of flavor.setGtidPositionSql(gtid)) await joiner.query(sql, [], signal);
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
  // Always set: a connection keeps the filters it had, even through RESET SLAVE ALL.
  for (const sql of flavor.replicateWildDoTableSql(setup.filters ?? [])) await joiner.query(sql, [], signal);
  await joiner.query(flavor.startReplicaSql, [], signal);
}

/**
 * Once the clone is proven (caught up, verified): the staged connection's replication moves to
 * the joiner's default connection, replacing the settings the joiner had, and the staged
 * connection is removed. A GTID replica goes on from gtid_slave_pos, which all connections share;
 * a file/position replica from where the staged connection stopped.
 */
export async function promoteReplica(args: {
  joiner: Server;
  flavor: Flavor;
  setup: ReplicaSetup;
  connection: string;
  signal?: AbortSignal | undefined;
}): Promise<void> {
  const { joiner, flavor, setup, connection, signal } = args;
  await joiner.query(flavor.useReplicaConnectionSql(connection)!, [], signal);
  await joiner.query(flavor.stopReplicaSql, [], signal);
  const staged = await replicaStatus(joiner, flavor, signal);
  await joiner.query(flavor.resetReplicaAllSql, [], signal);
  await joiner.query(flavor.useReplicaConnectionSql('')!, [], signal);
  await joiner.query(flavor.stopReplicaSql, [], signal);
  await joiner.query(flavor.resetReplicaAllSql, [], signal);
  const target = setup.target.useGtid ? setup.target : { ...setup.target, binlog: staged!.executed };
  await startReplica(joiner, flavor, { ...setup, target }, undefined, signal);
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
  const [id] = await source.query('SELECT @@server_id AS id', [], signal);
  const sourceId = Number(id?.id);
  for (;;) {
    throwIfAborted(signal);
    const wait = useGtid ? flavor.waitForGtidSql(gtid, 1) : flavor.waitForPositionSql(position, 1);
    const [r] = await replica.query(wait.sql, wait.params, signal);
    const reached = Number(r?.result ?? -1) >= 0;
    const status = await replicaStatus(replica, flavor, signal);
    // Having the position is not enough: a replica whose I/O thread cannot connect also "has"
    // it (its GTID position was set to it). Both threads must run, connected to the source.
    if (status && status.sourceServerId !== 0 && status.sourceServerId !== sourceId)
      throw new ReseedError(
        'REPLICATION_FAILED',
        `the joiner's replication reached the server with server_id ${status.sourceServerId}, not its source (server_id ${sourceId})`,
        { hints: ['check --replication-host: it must be the address at which the joiner reaches the donor'] },
      );
    if (reached && status?.ioRunning && status.sqlRunning && status.sourceServerId === sourceId)
      return { gtid, waitedMs: Date.now() - started };
    progress.emit({
      type: 'lag',
      secondsBehind: status?.secondsBehind ?? null,
      gtid,
      transactionsBehind: useGtid ? await transactionsBehind(replica, flavor, gtid, signal) : null,
    });
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

/** How many transactions of `gtid` the replica has yet to apply; null when it cannot be read. */
export async function transactionsBehind(
  replica: Server,
  flavor: Flavor,
  gtid: string,
  signal?: AbortSignal,
): Promise<number | null> {
  try {
    const [row] = await replica.query(flavor.replicaGtidPositionSql, [], signal);
    return gtidDistance(flavor.name, gtid, String(row?.gtid ?? ''));
  } catch {
    // progress only: a position that cannot be read or parsed shows as unknown
    return null;
  }
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
