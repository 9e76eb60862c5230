import type { ChangeSourceOptions, Flavor, ReadLockMode, ReplicaStatus, Statement } from './flavor.js';
import { parseReplicaStatusRow, str } from './flavor.js';
import type { Row } from '../server.js';
import { quoteString } from '../server.js';
import type { BinlogPosition } from '../../replication/coordinates.js';

export const mariadb: Flavor = {
  name: 'mariadb',
  // BACKUP STAGE BLOCK_COMMIT stops commits without waiting for long SELECTs to finish, which
  // FLUSH TABLES WITH READ LOCK must do: it is the gentler lock where the server offers it.
  readLockModes: ['backup-stage', 'ftwrl'],
  snapshotReportsBinlogPosition: true,
  currentGtidSql: 'SELECT @@GLOBAL.gtid_binlog_pos AS gtid',
  binlogStatusSql: 'SHOW MASTER STATUS',
  replicaStatusSql: 'SHOW SLAVE STATUS',
  allReplicaStatusSql: 'SHOW ALL SLAVES STATUS',
  useReplicaConnectionSql(name: string): string {
    return `SET SESSION default_master_connection = ${quoteString(name)}`;
  },
  replicateWildDoTableSql(patterns: string[]): string[] {
    // Set for the session's default_master_connection; the connection's threads must be stopped.
    return [`SET GLOBAL replicate_wild_do_table = ${quoteString(patterns.join(','))}`];
  },
  resetBinlogSql: 'RESET MASTER',
  stopReplicaSql: 'STOP SLAVE',
  startReplicaSql: 'START SLAVE',
  stopReplicaSqlThreadSql: 'STOP SLAVE SQL_THREAD',
  startReplicaSqlThreadSql: 'START SLAVE SQL_THREAD',
  resetReplicaAllSql: 'RESET SLAVE ALL',
  replicaGtidPositionSql: 'SELECT @@GLOBAL.gtid_slave_pos AS gtid',
  unboundedSessionSql: [
    'SET SESSION max_statement_time = 0',
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
    'SET SESSION check_constraint_checks = 0',
  ],
  acquireReadLockSql(mode: ReadLockMode): string[] {
    return mode === 'backup-stage'
      ? ['BACKUP STAGE START', 'BACKUP STAGE BLOCK_COMMIT']
      : ['FLUSH TABLES WITH READ LOCK'];
  },
  releaseReadLockSql(mode: ReadLockMode): string[] {
    return mode === 'backup-stage' ? ['BACKUP STAGE END'] : ['UNLOCK TABLES'];
  },
  gtidAtBinlogSql(): string {
    return 'SELECT BINLOG_GTID_POS(?, ?) AS gtid';
  },
  setGtidPositionSql(gtid: string): string[] {
    // gtid_slave_pos may only change while the replica threads are stopped.
    return [`SET GLOBAL gtid_slave_pos = '${gtid.replace(/[^0-9,-]/g, '')}'`];
  },
  restoreGtidPositionSql(previous: string): string[] {
    return this.setGtidPositionSql(previous);
  },
  changeSourceSql(o: ChangeSourceOptions, password: string): Statement {
    const parts = ['MASTER_HOST = ?', 'MASTER_PORT = ?', 'MASTER_USER = ?', 'MASTER_PASSWORD = ?'];
    const params: unknown[] = [o.host, o.port, o.user, password];
    if (o.gtid) parts.push('MASTER_USE_GTID = slave_pos');
    else {
      parts.push('MASTER_USE_GTID = no', 'MASTER_LOG_FILE = ?', 'MASTER_LOG_POS = ?');
      params.push(o.binlog?.file, o.binlog?.position);
    }
    if (o.ssl) {
      parts.push('MASTER_SSL = 1');
      if (o.ssl.ca) {
        parts.push('MASTER_SSL_CA = ?', 'MASTER_SSL_VERIFY_SERVER_CERT = 1');
        params.push(o.ssl.ca);
      }
    }
    return { sql: `CHANGE MASTER TO ${parts.join(', ')}`, params };
  },
  waitForGtidSql(gtid: string, timeoutSeconds: number): Statement {
    return { sql: 'SELECT MASTER_GTID_WAIT(?, ?) AS result', params: [gtid, timeoutSeconds] };
  },
  waitForPositionSql(p: BinlogPosition, timeoutSeconds: number): Statement {
    return {
      sql: 'SELECT IFNULL(MASTER_POS_WAIT(?, ?, ?), -1) AS result',
      params: [p.file, p.position, timeoutSeconds],
    };
  },
  parseReplicaStatus(row: Row): ReplicaStatus {
    return parseReplicaStatusRow(row, {
      io: 'Slave_IO_Running',
      sql: 'Slave_SQL_Running',
      behind: 'Seconds_Behind_Master',
      host: 'Master_Host',
      port: 'Master_Port',
      user: 'Master_User',
      serverId: 'Master_Server_Id',
      gtid: 'Using_Gtid',
      gtidOn: (v) => !['', 'No'].includes(v),
      file: 'Relay_Master_Log_File',
      position: 'Exec_Master_Log_Pos',
      connection: 'Connection_name',
    });
  },
  parseBinlogStatus(row: Row): BinlogPosition {
    return { file: str(row, 'File'), position: Number(row.Position) };
  },
  startReplicaUntilGtidSql(gtid: string): Statement {
    return { sql: 'START SLAVE UNTIL master_gtid_pos = ?', params: [gtid] };
  },
};
