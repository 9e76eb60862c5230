import { ReseedError } from '../errors.js';

export type FlavorName = 'mariadb' | 'mysql';

export interface BinlogPosition {
  file: string;
  position: number;
}

/**
 * The donor's replication position at the instant of the copy. `gtid` is in the flavor's own
 * notation (MariaDB "domain-server-seq" list, MySQL "uuid:intervals" set). When the donor is a
 * replica, `source` is the same instant in its own source's stream.
 */
export interface Coordinates {
  flavor: FlavorName;
  gtid: string;
  binlog: BinlogPosition;
  source?: {
    host: string;
    port: number;
    gtid: string;
    binlog: BinlogPosition;
  };
}

/** MariaDB GTID position: at most one "domain-server-seq" per domain. */
export type MariadbGtidPos = Map<number, { serverId: number; seq: bigint }>;

export function parseMariadbGtid(text: string): MariadbGtidPos {
  const out: MariadbGtidPos = new Map();
  for (const part of text.split(',').map((s) => s.trim())) {
    if (part === '') continue;
    const m = /^(\d+)-(\d+)-(\d+)$/.exec(part);
    if (!m) throw new ReseedError('INTERNAL', `not a MariaDB GTID: "${part}"`);
    const domain = Number(m[1]);
    if (out.has(domain))
      throw new ReseedError('INTERNAL', `GTID position names domain ${domain} twice: ${text}`);
    out.set(domain, { serverId: Number(m[2]), seq: BigInt(m[3]!) });
  }
  return out;
}

export function formatMariadbGtid(pos: MariadbGtidPos): string {
  return [...pos.entries()]
    .sort(([a], [b]) => a - b)
    .map(([domain, { serverId, seq }]) => `${domain}-${serverId}-${seq}`)
    .join(',');
}

/** True when every domain of `b` is at or before the same domain in `a`. */
export function mariadbGtidContains(a: MariadbGtidPos, b: MariadbGtidPos): boolean {
  for (const [domain, { seq }] of b) {
    const mine = a.get(domain);
    if (!mine || mine.seq < seq) return false;
  }
  return true;
}

/** MySQL GTID set: source uuid to sorted, merged, inclusive intervals. */
export type MysqlGtidSet = Map<string, [bigint, bigint][]>;

export function parseMysqlGtidSet(text: string): MysqlGtidSet {
  const out: MysqlGtidSet = new Map();
  for (const part of text.replace(/\s+/g, '').split(',')) {
    if (part === '') continue;
    const [uuidRaw, ...ranges] = part.split(':');
    const uuid = (uuidRaw ?? '').toLowerCase();
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(uuid) || ranges.length === 0) {
      throw new ReseedError('INTERNAL', `not a MySQL GTID set: "${part}"`);
    }
    const list = out.get(uuid) ?? [];
    for (const r of ranges) {
      // MySQL 8.3+ tagged GTIDs ("uuid:tag:1-5") are not supported yet: say so rather than misread.
      const m = /^(\d+)(?:-(\d+))?$/.exec(r);
      if (!m) throw new ReseedError('INTERNAL', `unsupported GTID interval "${r}" in ${part}`);
      const lo = BigInt(m[1]!);
      const hi = m[2] === undefined ? lo : BigInt(m[2]);
      if (hi < lo) throw new ReseedError('INTERNAL', `bad GTID interval "${r}"`);
      list.push([lo, hi]);
    }
    out.set(uuid, mergeIntervals(list));
  }
  return out;
}

function mergeIntervals(list: [bigint, bigint][]): [bigint, bigint][] {
  const sorted = [...list].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (const [lo, hi] of sorted) {
    const last = out.at(-1);
    if (last && lo <= last[1] + 1n) last[1] = hi > last[1] ? hi : last[1];
    else out.push([lo, hi]);
  }
  return out;
}

export function formatMysqlGtidSet(set: MysqlGtidSet): string {
  return [...set.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(
      ([uuid, ranges]) =>
        `${uuid}:${ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(':')}`,
    )
    .join(',');
}

/** True when set `a` contains every transaction of set `b`. */
export function mysqlGtidContains(a: MysqlGtidSet, b: MysqlGtidSet): boolean {
  for (const [uuid, ranges] of b) {
    const mine = a.get(uuid) ?? [];
    for (const [lo, hi] of ranges) {
      if (!mine.some(([mlo, mhi]) => mlo <= lo && hi <= mhi)) return false;
    }
  }
  return true;
}

/** Normalizes a GTID text of either flavor (sorted, merged) so equal positions compare equal. */
export function normalizeGtid(flavor: FlavorName, text: string): string {
  return flavor === 'mariadb'
    ? formatMariadbGtid(parseMariadbGtid(text))
    : formatMysqlGtidSet(parseMysqlGtidSet(text));
}

export function gtidContains(flavor: FlavorName, a: string, b: string): boolean {
  return flavor === 'mariadb'
    ? mariadbGtidContains(parseMariadbGtid(a), parseMariadbGtid(b))
    : mysqlGtidContains(parseMysqlGtidSet(a), parseMysqlGtidSet(b));
}

/**
 * How many transactions of position `target` the position `have` lacks: the catch-up's "GTID
 * distance". MariaDB: per domain, how far `have`'s sequence number is behind (sequence numbers of
 * a domain count its transactions). MySQL: transactions of `target`'s set missing from `have`.
 */
export function gtidDistance(flavor: FlavorName, target: string, have: string): number {
  if (flavor === 'mariadb') {
    const mine = parseMariadbGtid(have);
    let n = 0n;
    for (const [domain, { seq }] of parseMariadbGtid(target)) {
      const at = mine.get(domain)?.seq ?? 0n;
      if (at < seq) n += seq - at;
    }
    return Number(n);
  }
  const mine = parseMysqlGtidSet(have);
  let n = 0n;
  for (const [uuid, ranges] of parseMysqlGtidSet(target)) {
    const covered = mine.get(uuid) ?? [];
    for (const [lo, hi] of ranges) {
      n += hi - lo + 1n;
      for (const [clo, chi] of covered) {
        const a = clo > lo ? clo : lo;
        const b = chi < hi ? chi : hi;
        if (a <= b) n -= b - a + 1n;
      }
    }
  }
  return Number(n);
}

export function compareBinlog(a: BinlogPosition, b: BinlogPosition): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.position - b.position;
}

export function formatCoordinates(c: Coordinates): string {
  const own = `gtid ${c.gtid || '(empty)'}, binlog ${c.binlog.file}:${c.binlog.position}`;
  if (!c.source) return own;
  return `${own}; in source ${c.source.host}:${c.source.port}: gtid ${c.source.gtid || '(empty)'}, binlog ${c.source.binlog.file}:${c.source.binlog.position}`;
}
