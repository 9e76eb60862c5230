import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareVersions, detectFlavor, parseVersion } from '../../src/mysql/flavor/index.js';

describe('flavor detection and SQL', () => {
  it('detects MariaDB and MySQL from the version', () => {
    assert.equal(detectFlavor('10.11.6-MariaDB-0+deb12u1').name, 'mariadb');
    assert.equal(detectFlavor('8.0.36', 'MySQL Community Server - GPL').name, 'mysql');
    assert.equal(detectFlavor('5.5.5-10.11.6-MariaDB').name, 'mariadb');
    assert.ok(compareVersions(parseVersion('10.11.6'), parseVersion('10.6.20')) > 0);
  });

  it('MySQL 8.0 and 8.4 use their own replication statements', () => {
    const m80 = detectFlavor('8.0.36');
    const m84 = detectFlavor('8.4.2');
    assert.equal(m80.binlogStatusSql, 'SHOW MASTER STATUS');
    assert.equal(m84.binlogStatusSql, 'SHOW BINARY LOG STATUS');
    assert.deepEqual(m84.setGtidPositionSql('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'), [
      'RESET BINARY LOGS AND GTIDS',
      "SET GLOBAL gtid_purged = '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'",
    ]);
    const change = m80.changeSourceSql({ host: 'db1', port: 3307, user: 'repl', gtid: true }, 's3cret');
    assert.match(
      change.sql,
      /^CHANGE REPLICATION SOURCE TO SOURCE_HOST = \?, SOURCE_PORT = \?, SOURCE_USER = \?, SOURCE_PASSWORD = \?, SOURCE_AUTO_POSITION = 1/,
    );
    assert.ok(!change.sql.includes('s3cret'), 'the password travels as a parameter, never in the SQL text');
    assert.deepEqual(change.params, ['db1', 3307, 'repl', 's3cret']);
    const tls = m80.changeSourceSql(
      { host: 'db1', port: 3307, user: 'repl', gtid: true, ssl: { ca: '/etc/ca.pem' } },
      's3cret',
    );
    assert.match(tls.sql, /SOURCE_SSL = 1, SOURCE_SSL_CA = \?, SOURCE_SSL_VERIFY_SERVER_CERT = 1/);
    assert.deepEqual(tls.params, ['db1', 3307, 'repl', 's3cret', '/etc/ca.pem']);
    assert.deepEqual(m80.readLockModes, ['ftwrl']);
    assert.equal(m80.snapshotReportsBinlogPosition, false);
  });

  it('parses a MySQL SHOW REPLICA STATUS row', () => {
    const s = detectFlavor('8.0.36').parseReplicaStatus({
      Replica_IO_Running: 'Yes',
      Replica_SQL_Running: 'No',
      Seconds_Behind_Source: null,
      Source_Host: 'db0',
      Source_Port: 3306,
      Source_User: 'repl',
      Auto_Position: '1',
      Relay_Source_Log_File: 'binlog.000003',
      Exec_Source_Log_Pos: '1234',
      Last_IO_Error: '',
      Last_SQL_Errno: 1062,
      Last_SQL_Error: 'Duplicate entry',
      Channel_Name: 'eu',
      Replicate_Do_DB: 'app',
      Replicate_Ignore_Server_Ids: '',
    });
    assert.deepEqual(s, {
      connection: 'eu',
      ioRunning: true,
      ioConnecting: false,
      sqlRunning: false,
      secondsBehind: null,
      sourceHost: 'db0',
      sourcePort: 3306,
      sourceUser: 'repl',
      sourceServerId: 0,
      usingGtid: true,
      executed: { file: 'binlog.000003', position: 1234 },
      lastIoError: '',
      lastIoErrno: 0,
      lastSqlError: 'Duplicate entry',
      lastSqlErrno: 1062,
      filters: { Replicate_Do_DB: 'app' },
    });
  });

  it('MariaDB file/position replication names the file and position', () => {
    const m = detectFlavor('10.11.6-MariaDB');
    const c = m.changeSourceSql(
      { host: 'h', port: 1, user: 'u', gtid: false, binlog: { file: 'binlog.000001', position: 4 } },
      'pw',
    );
    assert.match(c.sql, /MASTER_USE_GTID = no, MASTER_LOG_FILE = \?, MASTER_LOG_POS = \?$/);
    assert.deepEqual(c.params, ['h', 1, 'u', 'pw', 'binlog.000001', 4]);
    const tls = m.changeSourceSql({ host: 'h', port: 1, user: 'u', gtid: true, ssl: {} }, 'pw');
    assert.match(tls.sql, /MASTER_USE_GTID = slave_pos, MASTER_SSL = 1$/);
    assert.deepEqual(m.acquireReadLockSql('backup-stage'), [
      'BACKUP STAGE START',
      'BACKUP STAGE BLOCK_COMMIT',
    ]);
  });
});
