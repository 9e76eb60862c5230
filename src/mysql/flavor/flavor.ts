import type { BinlogPosition, FlavorName } from '../../replication/coordinates.js';
import type { Row } from '../server.js';

/** A replica's state, in the same words whatever the flavor calls its columns. */
export interface ReplicaStatus {
  /** the multi-source connection (MariaDB) or channel (MySQL) name; '' for the default one */
  connection: string;
  ioRunning: boolean;
  /** the I/O thread is on but not connected yet (or retrying after an error) */
  ioConnecting: boolean;
  sqlRunning: boolean;
  secondsBehind: number | null;
  sourceHost: string;
  sourcePort: number;
  sourceUser: string;
  /** the server_id of the source the I/O thread last connected to; 0 before it ever did */
  sourceServerId: number;
  usingGtid: boolean;
  /** position in the source's binlog of the last transaction the replica applied */
  executed: BinlogPosition;
  lastIoError: string;
  lastIoErrno: number;
  lastSqlError: string;
  lastSqlErrno: number;
  /** the replication filters in force (Replicate_Do_DB, Replicate_Wild_Do_Table...), by column */
  filters: Record<string, string>;
}

export type ReadLockMode = 'backup-stage' | 'ftwrl';

export interface ChangeSourceOptions {
  host: string;
  port: number;
  user: string;
  /** GTID auto-positioning; otherwise `binlog` gives the file/position */
  gtid: boolean;
  binlog?: BinlogPosition;
  /** TLS for the replication link; `ca` (a path on the joiner's host) also checks the certificate */
  ssl?: { ca?: string | undefined } | undefined;
}

/** A statement with its parameters kept apart, so secrets never sit in the SQL text. */
export interface Statement {
  sql: string;
  params: unknown[];
}

/**
 * Everything that differs between MariaDB and MySQL SQL lives behind this interface; the rest
 * of reseed knows no flavor. MariaDB 10.11 is tested against real servers; MySQL 8 only through
 * unit tests of this layer (no MySQL server package is reachable where we test).
 */
export interface Flavor {
  readonly name: FlavorName;
  /** read-lock modes this server offers, preferred first */
  readonly readLockModes: ReadLockMode[];
  /** whether START TRANSACTION WITH CONSISTENT SNAPSHOT reports its binlog position */
  readonly snapshotReportsBinlogPosition: boolean;
  readonly currentGtidSql: string;
  readonly binlogStatusSql: string;
  readonly replicaStatusSql: string;
  /** the status of every replication connection (MariaDB) or channel (MySQL), one row each */
  readonly allReplicaStatusSql: string;
  /**
   * A session statement that makes the replica statements of this session (SHOW SLAVE STATUS,
   * CHANGE MASTER, START/STOP/RESET SLAVE, filters) act on a named connection; undefined where the
   * flavor has no such session setting (MySQL names its channel in each statement instead).
   */
  useReplicaConnectionSql(name: string): string | undefined;
  /** statements that limit this session's replica connection to tables matching `patterns` */
  replicateWildDoTableSql(patterns: string[]): string[];
  /** deletes the server's binary logs and its GTID history (cannot be undone) */
  readonly resetBinlogSql: string;
  readonly stopReplicaSql: string;
  readonly startReplicaSql: string;
  readonly stopReplicaSqlThreadSql: string;
  readonly startReplicaSqlThreadSql: string;
  readonly resetReplicaAllSql: string;
  /** the replica's own applied GTID position (what a replica "has") */
  readonly replicaGtidPositionSql: string;
  /** session settings that let a long streaming statement run without a server-side time limit */
  readonly unboundedSessionSql: string[];
  /** session settings of a joiner session that bulk-loads: no binlog, no checks, exact values */
  readonly bulkLoadSessionSql: string[];
  acquireReadLockSql(mode: ReadLockMode): string[];
  releaseReadLockSql(mode: ReadLockMode): string[];
  /** GTID position for a binlog position, when the server can compute it */
  gtidAtBinlogSql(): string | undefined;
  /** statements that make the joiner's GTID state equal `gtid` before replication starts */
  setGtidPositionSql(gtid: string): string[];
  /** statements that put back the joiner's GTID state read before setGtidPositionSql ran */
  restoreGtidPositionSql(previous: string): string[];
  changeSourceSql(options: ChangeSourceOptions, password: string): Statement;
  /** a query returning one column `result`: -1 on timeout, 0 (or 1 on MySQL) when reached */
  waitForGtidSql(gtid: string, timeoutSeconds: number): Statement;
  /** like waitForGtidSql, for a file/position replica: -1 on timeout, >= 0 when reached */
  waitForPositionSql(position: BinlogPosition, timeoutSeconds: number): Statement;
  parseReplicaStatus(row: Row): ReplicaStatus;
  /** SHOW MASTER STATUS / SHOW BINARY LOG STATUS row to a position */
  parseBinlogStatus(row: Row): BinlogPosition;
  /** a start-replica statement that stops the SQL thread once `gtid` is applied */
  startReplicaUntilGtidSql(gtid: string): Statement;
}

export function str(row: Row, key: string): string {
  const v = row[key];
  return v === null || v === undefined ? '' : String(v);
}

/** The columns of SHOW SLAVE/REPLICA STATUS, by what they mean. */
export interface ReplicaStatusColumns {
  io: string;
  sql: string;
  behind: string;
  host: string;
  port: string;
  user: string;
  serverId: string;
  gtid: string;
  gtidOn: (value: string) => boolean;
  file: string;
  position: string;
  connection: string;
}

export function parseReplicaStatusRow(row: Row, c: ReplicaStatusColumns): ReplicaStatus {
  const behind = row[c.behind];
  const filters: Record<string, string> = {};
  for (const k of Object.keys(row))
    if (/^Replicate_/.test(k) && k !== 'Replicate_Ignore_Server_Ids') filters[k] = str(row, k);
  return {
    connection: str(row, c.connection),
    ioRunning: str(row, c.io) === 'Yes',
    ioConnecting: str(row, c.io) === 'Connecting',
    sqlRunning: str(row, c.sql) === 'Yes',
    secondsBehind: behind === null || behind === undefined || behind === '' ? null : Number(behind),
    sourceHost: str(row, c.host),
    sourcePort: Number(row[c.port] ?? 0),
    sourceUser: str(row, c.user),
    sourceServerId: Number(row[c.serverId] ?? 0),
    usingGtid: c.gtidOn(str(row, c.gtid)),
    executed: { file: str(row, c.file), position: Number(row[c.position] ?? 0) },
    lastIoError: str(row, 'Last_IO_Error'),
    lastIoErrno: Number(row.Last_IO_Errno ?? 0),
    lastSqlError: str(row, 'Last_SQL_Error'),
    lastSqlErrno: Number(row.Last_SQL_Errno ?? 0),
    filters,
  };
}
