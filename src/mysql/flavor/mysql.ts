import type { ChangeSourceOptions, Flavor, ReadLockMode, ReplicaStatus, Statement } from './flavor.js';
import { parseReplicaStatusRow, str } from './flavor.js';
import type { Row } from '../server.js';
import { quoteString } from '../server.js';
import type { BinlogPosition } from '../../replication/coordinates.js';

/**
 * MySQL 8.0.23+ (the REPLICA/SOURCE spelling). Not tested against a real server here: no MySQL
 * server package is reachable on our machines; unit tests cover the SQL and the parsing.
 */
export function mysqlFlavor(version: { major: number; minor: number; patch: number }): Flavor {
  const v84 = version.major > 8 || (version.major === 8 && version.minor >= 4);
  return {
    name: 'mysql',
    // MySQL has no way to block only commits; FLUSH TABLES WITH READ LOCK is what mysqldump uses.
    readLockModes: ['ftwrl'],
    snapshotReportsBinlogPosition: false,
    currentGtidSql: 'SELECT @@GLOBAL.gtid_executed AS gtid',
    binlogStatusSql: v84 ? 'SHOW BINARY LOG STATUS' : 'SHOW MASTER STATUS',
    replicaStatusSql: 'SHOW REPLICA STATUS',
    allReplicaStatusSql: 'SHOW REPLICA STATUS',
    // MySQL names a channel in each statement (FOR CHANNEL): reseed uses the default channel only.
    useReplicaConnectionSql(): undefined {
      return undefined;
    },
    replicateWildDoTableSql(patterns: string[]): string[] {
      return [
        `CHANGE REPLICATION FILTER REPLICATE_WILD_DO_TABLE = (${patterns.map((p) => quoteString(p)).join(', ')})`,
      ];
    },
    resetBinlogSql: v84 ? 'RESET BINARY LOGS AND GTIDS' : 'RESET MASTER',
    stopReplicaSql: 'STOP REPLICA',
    startReplicaSql: 'START REPLICA',
    stopReplicaSqlThreadSql: 'STOP REPLICA SQL_THREAD',
    startReplicaSqlThreadSql: 'START REPLICA SQL_THREAD',
    resetReplicaAllSql: 'RESET REPLICA ALL',
    replicaGtidPositionSql: 'SELECT @@GLOBAL.gtid_executed AS gtid',
    unboundedSessionSql: [
      'SET SESSION max_execution_time = 0',
      'SET SESSION net_write_timeout = 3600',
      'SET SESSION net_read_timeout = 3600',
    ],
    bulkLoadSessionSql: [
      'SET SESSION sql_log_bin = 0',
      'SET SESSION foreign_key_checks = 0',
      'SET SESSION unique_checks = 0',
      "SET SESSION time_zone = '+00:00'",
      // Zero dates and a 0 in an AUTO_INCREMENT column load as they are.
      "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    ],
    acquireReadLockSql(_mode: ReadLockMode): string[] {
      return ['FLUSH TABLES WITH READ LOCK'];
    },
    releaseReadLockSql(_mode: ReadLockMode): string[] {
      return ['UNLOCK TABLES'];
    },
    gtidAtBinlogSql(): undefined {
      return undefined;
    },
    setGtidPositionSql(gtid: string): string[] {
      // gtid_purged may only be set when gtid_executed is empty: the joiner's own binlog is reset
      // first (the load ran with sql_log_bin = 0, so it holds nothing of the clone).
      const clean = gtid.replace(/[^0-9a-fA-F:,-]/g, '');
      return [v84 ? 'RESET BINARY LOGS AND GTIDS' : 'RESET MASTER', `SET GLOBAL gtid_purged = '${clean}'`];
    },
    restoreGtidPositionSql(previous: string): string[] {
      return this.setGtidPositionSql(previous);
    },
    changeSourceSql(o: ChangeSourceOptions, password: string): Statement {
      const parts = ['SOURCE_HOST = ?', 'SOURCE_PORT = ?', 'SOURCE_USER = ?', 'SOURCE_PASSWORD = ?'];
      const params: unknown[] = [o.host, o.port, o.user, password];
      if (o.gtid) parts.push('SOURCE_AUTO_POSITION = 1');
      else {
        parts.push('SOURCE_AUTO_POSITION = 0', 'SOURCE_LOG_FILE = ?', 'SOURCE_LOG_POS = ?');
        params.push(o.binlog?.file, o.binlog?.position);
      }
      if (o.ssl) {
        parts.push('SOURCE_SSL = 1');
        if (o.ssl.ca) {
          parts.push('SOURCE_SSL_CA = ?', 'SOURCE_SSL_VERIFY_SERVER_CERT = 1');
          params.push(o.ssl.ca);
        }
      }
      // caching_sha2_password over a non-TLS link needs the server's RSA key.
      parts.push('GET_SOURCE_PUBLIC_KEY = 1');
      return { sql: `CHANGE REPLICATION SOURCE TO ${parts.join(', ')}`, params };
    },
    waitForGtidSql(gtid: string, timeoutSeconds: number): Statement {
      // WAIT_FOR_EXECUTED_GTID_SET returns 0 when reached and 1 on timeout: mapped to -1.
      return {
        sql: 'SELECT IF(WAIT_FOR_EXECUTED_GTID_SET(?, ?) = 0, 0, -1) AS result',
        params: [gtid, timeoutSeconds],
      };
    },
    waitForPositionSql(p: BinlogPosition, timeoutSeconds: number): Statement {
      return {
        sql: 'SELECT IFNULL(SOURCE_POS_WAIT(?, ?, ?), -1) AS result',
        params: [p.file, p.position, timeoutSeconds],
      };
    },
    parseReplicaStatus(row: Row): ReplicaStatus {
      return parseReplicaStatusRow(row, {
        io: 'Replica_IO_Running',
        sql: 'Replica_SQL_Running',
        behind: 'Seconds_Behind_Source',
        host: 'Source_Host',
        port: 'Source_Port',
        user: 'Source_User',
        serverId: 'Source_Server_Id',
        gtid: 'Auto_Position',
        gtidOn: (v) => v === '1',
        file: 'Relay_Source_Log_File',
        position: 'Exec_Source_Log_Pos',
        connection: 'Channel_Name',
      });
    },
    parseBinlogStatus(row: Row): BinlogPosition {
      return { file: str(row, 'File'), position: Number(row.Position) };
    },
    startReplicaUntilGtidSql(gtid: string): Statement {
      return { sql: 'START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS = ?', params: [gtid] };
    },
  };
}
