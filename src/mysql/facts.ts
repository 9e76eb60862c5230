import type { Server, Row } from './server.js';
import { detectFlavor, parseVersion } from './flavor/index.js';
import type { Flavor, ReplicaStatus, ServerVersion } from './flavor/index.js';

/** What reseed needs to know about a server before deciding anything. */
export interface ServerFacts {
  flavor: Flavor;
  version: ServerVersion;
  serverId: number;
  /** MySQL's @@server_uuid; MariaDB has none */
  serverUuid: string | undefined;
  hostname: string;
  port: number;
  datadir: string;
  logBin: boolean;
  logSlaveUpdates: boolean;
  binlogFormat: string;
  readOnly: boolean;
  localInfile: boolean;
  /** the replica status of the default connection, when this server replicates */
  replica: ReplicaStatus | undefined;
  /** global privileges of the connected account, upper case ("ALL PRIVILEGES" expanded) */
  privileges: Set<string>;
  user: string;
}

function bool(v: unknown): boolean {
  return v === 1 || v === '1' || v === 'ON' || v === 'on' || v === true;
}

export async function inspect(server: Server, signal?: AbortSignal): Promise<ServerFacts> {
  const [vars] = await server.query(
    `SELECT @@version AS version, @@version_comment AS comment, @@server_id AS server_id,
            @@hostname AS hostname, @@port AS port, @@datadir AS datadir, @@log_bin AS log_bin,
            @@log_slave_updates AS log_slave_updates, @@binlog_format AS binlog_format,
            @@read_only AS read_only, @@local_infile AS local_infile, CURRENT_USER() AS user`,
    [],
    signal,
  );
  const v = vars as Row;
  const flavor = detectFlavor(String(v.version), String(v.comment ?? ''));
  let serverUuid: string | undefined;
  if (flavor.name === 'mysql') {
    const [u] = await server.query('SELECT @@server_uuid AS uuid', [], signal);
    serverUuid = String(u?.uuid ?? '');
  }
  const replicaRows = await server.query(flavor.replicaStatusSql, [], signal).catch(() => []);
  const replica = replicaRows[0] ? flavor.parseReplicaStatus(replicaRows[0]) : undefined;
  return {
    flavor,
    version: parseVersion(String(v.version)),
    serverId: Number(v.server_id),
    serverUuid,
    hostname: String(v.hostname),
    port: Number(v.port),
    datadir: String(v.datadir),
    logBin: bool(v.log_bin),
    logSlaveUpdates: bool(v.log_slave_updates),
    binlogFormat: String(v.binlog_format),
    readOnly: bool(v.read_only),
    localInfile: bool(v.local_infile),
    replica: replica && replica.sourceHost !== '' ? replica : undefined,
    privileges: await globalPrivileges(server, signal),
    user: String(v.user),
  };
}

/**
 * Global privileges from SHOW GRANTS of the current account (roles granted by default are not
 * followed: an account that relies on one may be refused where it would work).
 */
export async function globalPrivileges(server: Server, signal?: AbortSignal): Promise<Set<string>> {
  const rows = await server.query('SHOW GRANTS FOR CURRENT_USER()', [], signal);
  const out = new Set<string>();
  for (const row of rows) {
    const text = String(Object.values(row)[0] ?? '');
    const m = /^GRANT (.+?) ON \*\.\* TO /i.exec(text);
    if (!m) continue;
    for (const p of m[1]!.split(',')) out.add(p.trim().toUpperCase());
  }
  return out;
}

export function hasPrivilege(facts: ServerFacts, privilege: string): boolean {
  const p = facts.privileges;
  if (p.has('ALL PRIVILEGES') || p.has('ALL')) return true;
  if (p.has(privilege)) return true;
  // MariaDB 10.5 split SUPER and REPLICATION CLIENT into finer privileges; either name will do.
  // MySQL 8 spells the dynamic privileges with underscores (SYSTEM_VARIABLES_ADMIN...).
  const aliases: Record<string, string[]> = {
    'BINLOG MONITOR': ['REPLICATION CLIENT', 'SUPER'],
    'REPLICATION CLIENT': ['BINLOG MONITOR', 'SUPER'],
    'BINLOG ADMIN': ['SUPER', 'SYSTEM_VARIABLES_ADMIN', 'SESSION_VARIABLES_ADMIN'],
    'REPLICATION SLAVE ADMIN': ['SUPER', 'REPLICATION_SLAVE_ADMIN'],
    'READ_ONLY ADMIN': ['SUPER', 'SYSTEM_VARIABLES_ADMIN'],
    'SET USER': ['SUPER'],
    'CONNECTION ADMIN': ['SUPER'],
  };
  return (aliases[privilege] ?? []).some((a) => p.has(a));
}

/** Whether two inspected endpoints are one server (by server_uuid, or server_id with host, port and datadir). */
export function sameServer(a: ServerFacts, b: ServerFacts): boolean {
  return (
    (a.serverUuid !== undefined && a.serverUuid === b.serverUuid) ||
    (a.serverId === b.serverId && a.hostname === b.hostname && a.port === b.port && a.datadir === b.datadir)
  );
}
