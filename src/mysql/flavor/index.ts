import type { Flavor } from './flavor.js';
import { mariadb } from './mariadb.js';
import { mysqlFlavor } from './mysql.js';

export type { Flavor, ReadLockMode, ReplicaStatus, Statement, ChangeSourceOptions } from './flavor.js';

export interface ServerVersion {
  major: number;
  minor: number;
  patch: number;
  text: string;
}

export function parseVersion(text: string): ServerVersion {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(text);
  if (!m) return { major: 0, minor: 0, patch: 0, text };
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), text };
}

export function compareVersions(a: ServerVersion, b: ServerVersion): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/** Picks the flavor from @@version and @@version_comment. */
export function detectFlavor(version: string, comment = ''): Flavor {
  if (/mariadb/i.test(version) || /mariadb/i.test(comment)) return mariadb;
  return mysqlFlavor(parseVersion(version));
}
