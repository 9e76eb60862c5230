import type { Server } from '../src/mysql/server.js';

/** The full-size dataset is about 2.2 GB of InnoDB data; `scale` multiplies every row count. */
export interface DatasetShape {
  sbtestTables: number;
  sbtestRows: number;
  wideRows: number;
  compositeRows: number;
  noKeyRows: number;
}

export function shape(scale: number): DatasetShape {
  const n = (rows: number) => Math.max(1000, Math.round(rows * scale));
  return {
    sbtestTables: 8,
    sbtestRows: n(1_000_000),
    wideRows: n(200_000),
    compositeRows: n(500_000),
    noKeyRows: n(300_000),
  };
}

const eleven = "LPAD(FLOOR(RAND() * 99999999999), 11, '0')";

/**
 * sysbench's oltp tables (same DDL, same random CHAR contents), plus wide rows of ~1.5 KB of
 * JSON, TEXT and BLOB, a table with a composite primary key and one with no key at all. Made on
 * the server with the SEQUENCE engine.
 */
export async function createDataset(server: Server, s: DatasetShape): Promise<void> {
  const q = (sql: string) => server.query(sql);
  await q('CREATE DATABASE bench');
  await q('USE bench');
  for (let t = 1; t <= s.sbtestTables; t++) {
    await q(`CREATE TABLE sbtest${t} (
        id INT NOT NULL AUTO_INCREMENT, k INT NOT NULL DEFAULT 0,
        c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '',
        PRIMARY KEY (id), KEY k_${t} (k)) ENGINE=InnoDB`);
    await q(`INSERT INTO sbtest${t} (id, k, c, pad)
        SELECT seq, FLOOR(RAND() * ${s.sbtestRows}),
               CONCAT_WS('-', ${Array(10).fill(eleven).join(', ')}),
               CONCAT_WS('-', ${Array(5).fill(eleven).join(', ')})
          FROM seq_1_to_${s.sbtestRows}`);
  }
  await q(`CREATE TABLE wide (
      id BIGINT NOT NULL PRIMARY KEY, doc JSON NOT NULL, body TEXT NOT NULL, bin BLOB NOT NULL,
      updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB`);
  await q(`INSERT INTO wide
      SELECT seq,
             JSON_OBJECT('id', seq, 'name', CONCAT('user', seq), 'tags', JSON_ARRAY('a', 'b', seq % 17),
                         'text', REPEAT(MD5(seq), 8)),
             REPEAT(CONCAT(MD5(RAND()), ' '), 16),
             UNHEX(REPEAT(MD5(RAND()), 8)),
             '2024-01-01' + INTERVAL seq SECOND
        FROM seq_1_to_${s.wideRows}`);
  await q(`CREATE TABLE composite (
      tenant INT NOT NULL, day DATE NOT NULL, seq INT NOT NULL, amount DECIMAL(12,2) NOT NULL,
      label VARCHAR(40) NOT NULL, PRIMARY KEY (tenant, day, seq)) ENGINE=InnoDB`);
  await q(`INSERT INTO composite
      SELECT seq % 97, '2020-01-01' + INTERVAL (seq DIV 97) % 1500 DAY, seq, (seq % 100000) / 100,
             CONCAT('label-', MD5(seq))
        FROM seq_1_to_${s.compositeRows}`);
  await q(
    `CREATE TABLE nokey (at DATETIME NOT NULL, who VARCHAR(32) NOT NULL, what VARCHAR(200) NULL) ENGINE=InnoDB`,
  );
  await q(`INSERT INTO nokey
      SELECT '2024-01-01' + INTERVAL seq MINUTE, ELT(1 + seq % 4, 'alice', 'bob', 'carol', 'dave'),
             IF(seq % 3 = 0, NULL, CONCAT('did ', MD5(seq), ' ', MD5(seq + 1)))
        FROM seq_1_to_${s.noKeyRows}`);
  await q(
    'ANALYZE TABLE ' +
      [...Array(s.sbtestTables).keys()]
        .map((i) => `sbtest${i + 1}`)
        .concat(['wide', 'composite', 'nokey'])
        .join(', '),
  );
}
