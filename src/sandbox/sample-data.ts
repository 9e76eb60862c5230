import type { Server } from '../mysql/server.js';

/**
 * A shop-like sample schema with a realistic variety of types and objects, generated on the
 * server itself (MariaDB's SEQUENCE engine), so hundreds of MB take seconds, not minutes.
 */
export async function loadSampleData(
  server: Server,
  options: { bytes: number; schema?: string },
  signal?: AbortSignal,
): Promise<void> {
  const db = options.schema ?? 'shop';
  // About 320 bytes of table data and indexes per order with its customer share and items.
  const orders = Math.max(1000, Math.round(options.bytes / 320));
  const customers = Math.max(100, Math.round(orders / 10));
  const run = (sql: string) => server.query(sql, [], signal);
  await run(`CREATE DATABASE IF NOT EXISTS \`${db}\` CHARACTER SET utf8mb4`);
  await run(`USE \`${db}\``);
  await run(`CREATE TABLE customers (
      id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
      name VARCHAR(100) NOT NULL,
      email VARCHAR(190) NOT NULL,
      country CHAR(2) CHARACTER SET latin1 NOT NULL,
      status ENUM('new','active','suspended') NOT NULL DEFAULT 'new',
      tags SET('vip','wholesale','newsletter') NOT NULL DEFAULT '',
      flags BIT(8) NOT NULL DEFAULT b'0',
      balance DECIMAL(12,2) NOT NULL DEFAULT 0,
      score DOUBLE NULL,
      profile JSON NULL,
      created_at DATETIME(6) NOT NULL,
      UNIQUE KEY email (email),
      KEY country_status (country, status)
    ) ENGINE=InnoDB`);
  await run(`CREATE TABLE orders (
      id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
      customer_id INT UNSIGNED NOT NULL,
      amount DECIMAL(10,2) NOT NULL,
      ordered_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
      note TEXT NULL,
      amount_with_tax DECIMAL(12,2) AS (amount * 1.2) VIRTUAL,
      KEY customer (customer_id),
      CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
    ) ENGINE=InnoDB`);
  await run(`CREATE TABLE order_items (
      order_id BIGINT NOT NULL,
      line SMALLINT NOT NULL,
      sku VARBINARY(16) NOT NULL,
      qty INT NOT NULL,
      price FLOAT NOT NULL,
      PRIMARY KEY (order_id, line)
    ) ENGINE=InnoDB`);
  await run(`CREATE TABLE stores (
      id INT NOT NULL PRIMARY KEY,
      name VARCHAR(80) NOT NULL,
      location POINT NOT NULL,
      description TEXT NOT NULL,
      SPATIAL KEY location (location),
      FULLTEXT KEY description (description)
    ) ENGINE=InnoDB`);
  await run(`CREATE TABLE audit_log (
      at DATETIME NOT NULL,
      who VARCHAR(64) NOT NULL,
      what VARCHAR(255) NULL
    ) ENGINE=InnoDB`);
  await run(`INSERT INTO customers (id, name, email, country, status, tags, flags, balance, score, profile, created_at)
      SELECT seq, CONCAT('Customer ', seq, IF(seq % 7 = 0, ' Ünïcödé ✓', '')), CONCAT('c', seq, '@example.com'),
             ELT(1 + seq % 5, 'DE', 'FR', 'US', 'JP', 'BR'), ELT(1 + seq % 3, 'new', 'active', 'suspended'),
             IF(seq % 4 = 0, 'vip,newsletter', IF(seq % 3 = 0, 'wholesale', '')), seq % 256,
             (seq % 100000) / 7, IF(seq % 10 = 0, NULL, seq / 3),
             JSON_OBJECT('lang', ELT(1 + seq % 3, 'en', 'de', 'ja'), 'visits', seq % 50),
             '2020-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 1000000) MICROSECOND
        FROM seq_1_to_${customers}`);
  await run(`INSERT INTO orders (id, customer_id, amount, ordered_at, note)
      SELECT seq, 1 + seq % ${customers}, (seq % 100000) / 100, FROM_UNIXTIME(1600000000 + seq),
             IF(seq % 5 = 0, NULL, REPEAT(CONCAT('note ', seq, ' '), 1 + seq % 20))
        FROM seq_1_to_${orders}`);
  await run(`INSERT INTO order_items SELECT o.seq, l.seq, UNHEX(MD5(o.seq * 10 + l.seq)), 1 + (o.seq + l.seq) % 9, (o.seq % 1000) / 3
        FROM seq_1_to_${orders} o JOIN seq_1_to_2 l`);
  await run(`INSERT INTO stores SELECT seq, CONCAT('Store ', seq), POINT(seq % 180, seq % 90),
             CONCAT('A store selling ', ELT(1 + seq % 3, 'books', 'tea', 'bicycles'), ' since ', 1900 + seq % 120)
        FROM seq_1_to_500`);
  await run(`INSERT INTO audit_log SELECT '2024-01-01' + INTERVAL seq MINUTE, ELT(1 + seq % 3, 'alice', 'bob', 'carol'),
             IF(seq % 2, CONCAT('changed order ', seq), NULL) FROM seq_1_to_5000`);
  await run(
    `INSERT INTO audit_log VALUES ('2024-01-01 00:00:00', 'alice', 'duplicate row'), ('2024-01-01 00:00:00', 'alice', 'duplicate row')`,
  );
  await run(
    `CREATE VIEW customer_totals AS SELECT c.id, c.name, SUM(o.amount) AS total FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name`,
  );
  await run(`CREATE VIEW big_customers AS SELECT id, name, total FROM customer_totals WHERE total > 1000`);
  await run(
    `CREATE FUNCTION order_tax(amount DECIMAL(10,2)) RETURNS DECIMAL(10,2) DETERMINISTIC RETURN amount * 0.2`,
  );
  await run(
    `CREATE PROCEDURE customer_orders(IN cid INT) READS SQL DATA SELECT * FROM orders WHERE customer_id = cid`,
  );
  await run(
    `CREATE TRIGGER orders_audit AFTER UPDATE ON orders FOR EACH ROW INSERT INTO audit_log VALUES (NOW(), CURRENT_USER(), CONCAT('order ', NEW.id))`,
  );
  await run(
    `CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY DO DELETE FROM audit_log WHERE at < NOW() - INTERVAL 1 YEAR`,
  );
}
