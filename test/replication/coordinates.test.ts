import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatCoordinates,
  gtidContains,
  gtidDistance,
  normalizeGtid,
  parseMariadbGtid,
  parseMysqlGtidSet,
} from '../../src/replication/coordinates.js';

describe('GTID positions', () => {
  it('parses and normalizes MariaDB positions', () => {
    assert.equal(normalizeGtid('mariadb', '1-2-5, 0-1-100'), '0-1-100,1-2-5');
    assert.equal(normalizeGtid('mariadb', ''), '');
    assert.equal(parseMariadbGtid('0-1-18446744073709551615').get(0)?.seq, 18446744073709551615n);
    assert.throws(() => parseMariadbGtid('0-1'), /not a MariaDB GTID/);
    assert.throws(() => parseMariadbGtid('0-1-5,0-2-6'), /twice/);
  });

  it('compares MariaDB positions per domain', () => {
    assert.equal(gtidContains('mariadb', '0-1-10,1-1-5', '0-1-9'), true);
    assert.equal(gtidContains('mariadb', '0-1-10', '0-1-10,1-1-1'), false);
    assert.equal(gtidContains('mariadb', '0-1-10', '0-2-11'), false);
  });

  it('parses, merges and formats MySQL GTID sets', () => {
    const u = '3e11fa47-71ca-11e1-9e33-c80aa9429562';
    const v = '4e11fa47-71ca-11e1-9e33-c80aa9429562';
    assert.equal(normalizeGtid('mysql', `${v}:1-3,${u.toUpperCase()}:1-5:6-9:11`), `${u}:1-9:11,${v}:1-3`);
    assert.deepEqual(parseMysqlGtidSet(`${u}:7`).get(u), [[7n, 7n]]);
    assert.throws(() => parseMysqlGtidSet('nope:1-2'), /not a MySQL GTID set/);
    assert.throws(() => parseMysqlGtidSet(`${u}:tag:1-2`), /unsupported GTID interval/);
  });

  it('compares MySQL GTID sets by containment', () => {
    const u = '3e11fa47-71ca-11e1-9e33-c80aa9429562';
    assert.equal(gtidContains('mysql', `${u}:1-100`, `${u}:5-10:20`), true);
    assert.equal(gtidContains('mysql', `${u}:1-10:12-20`, `${u}:10-12`), false);
    assert.equal(gtidContains('mysql', `${u}:1-10`, ''), true);
  });

  it('counts the transactions a position lacks (the catch-up distance)', () => {
    assert.equal(gtidDistance('mariadb', '0-1-120,1-2-7', '0-1-100,1-2-7'), 20);
    assert.equal(gtidDistance('mariadb', '0-1-10,1-2-3', '0-1-10'), 3, 'a domain not seen yet');
    assert.equal(gtidDistance('mariadb', '0-1-10', '0-1-12'), 0, 'ahead counts as there');
    const u = '3e11fa47-71ca-11e1-9e33-c80aa9429562';
    const v = '4e11fa47-71ca-11e1-9e33-c80aa9429562';
    assert.equal(gtidDistance('mysql', `${u}:1-100,${v}:1-5`, `${u}:1-90`), 15);
    assert.equal(gtidDistance('mysql', `${u}:1-100`, `${u}:1-10:20-30:95-200`), 73);
    assert.equal(gtidDistance('mysql', `${u}:1-10`, `${u}:1-10`), 0);
  });

  it('formats coordinates with the source position of a replica donor', () => {
    const text = formatCoordinates({
      flavor: 'mariadb',
      gtid: '0-1-5',
      binlog: { file: 'binlog.000002', position: 400 },
      source: { host: 'db0', port: 3306, gtid: '0-1-5', binlog: { file: 'mysql-bin.000009', position: 77 } },
    });
    assert.match(
      text,
      /binlog binlog.000002:400; in source db0:3306: gtid 0-1-5, binlog mysql-bin.000009:77/,
    );
  });
});
