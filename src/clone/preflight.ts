import { ReseedError } from '../errors.js';
import { compareVersions } from '../mysql/flavor/index.js';
import { hasPrivilege } from '../mysql/facts.js';
import { listSchemas, SYSTEM_SCHEMAS } from '../mysql/tables.js';
import type { CloneContext, TransferMethod } from '../methods/method.js';
import { joinerSchemas } from './joiner-prepare.js';
import type { JoinerSchemaState } from './joiner-prepare.js';

export interface PreflightResult {
  schemas: string[];
  /** joiner schemas with the same names as the donor's: empty ones, and (with --force) user data */
  conflicts: JoinerSchemaState[];
  warnings: string[];
}

const DONOR_PRIVILEGES = ['SELECT', 'RELOAD', 'SHOW VIEW', 'EVENT', 'TRIGGER', 'PROCESS', 'BINLOG MONITOR'];
const JOINER_PRIVILEGES = [
  'CREATE',
  'DROP',
  'INSERT',
  'ALTER',
  'INDEX',
  'CREATE VIEW',
  'CREATE ROUTINE',
  'ALTER ROUTINE',
  'EVENT',
  'TRIGGER',
  'SUPER',
];

/**
 * Everything that would make the clone fail or do harm, checked before anything changes; one
 * line each, all at once, so the operator fixes them in one go.
 */
export async function preflight(
  ctx: Omit<CloneContext, 'journal'>,
  method: TransferMethod,
): Promise<PreflightResult> {
  const { donor, joiner, options, signal } = ctx;
  const problems: string[] = [];
  const warnings: string[] = [];
  const d = donor.facts;
  const j = joiner.facts;

  const sameServer =
    (d.serverUuid !== undefined && d.serverUuid === j.serverUuid) ||
    (d.serverId === j.serverId && d.hostname === j.hostname && d.port === j.port && d.datadir === j.datadir);
  if (sameServer) {
    problems.push(`donor and joiner are the same server (${d.hostname}:${d.port}, server_id ${d.serverId})`);
  } else if (d.serverId === j.serverId) {
    problems.push(
      `donor and joiner have the same server_id ${d.serverId}: give the joiner its own (server_id in its config) and restart it`,
    );
  }
  if (!d.logBin && options.replicate) {
    problems.push(
      "binary logging is off on the donor: a replica needs it (log_bin in the donor's config, then a restart); or clone with --no-replicate",
    );
  }
  if (options.replicate && options.replicateFrom === 'source' && !d.replica) {
    problems.push('--replicate-from source: the donor is not a replica, so it has no source to follow');
  }
  if (options.replicate && options.replicateFrom === 'donor' && d.replica && !d.logSlaveUpdates) {
    problems.push(
      'the donor is a replica without log_slave_updates: what it replicates would never reach the joiner; use --replicate-from source or enable log_slave_updates',
    );
  }
  if (
    compareVersions(j.version, d.version) < 0 &&
    (j.version.major !== d.version.major || j.version.minor !== d.version.minor)
  ) {
    problems.push(
      `the joiner (${j.version.text}) is older than the donor (${d.version.text}): replication from a newer server is not supported`,
    );
  }
  if (d.flavor.name !== j.flavor.name) {
    problems.push(
      `donor is ${d.flavor.name} and joiner is ${j.flavor.name}: replication between flavors is not supported`,
    );
  }
  if (options.replicate && !options.replicationUser) {
    problems.push(
      'no replication account: pass --replication-user (its password in RESEED_REPLICATION_PASSWORD), or clone with --no-replicate',
    );
  }
  const missingDonor = DONOR_PRIVILEGES.filter((p) => !hasPrivilege(d, p));
  if (missingDonor.length) problems.push(`the donor account ${d.user} lacks ${missingDonor.join(', ')}`);
  const missingJoiner = JOINER_PRIVILEGES.filter((p) => !hasPrivilege(j, p));
  if (missingJoiner.length) problems.push(`the joiner account ${j.user} lacks ${missingJoiner.join(', ')}`);

  // Schemas: the named ones must exist; by default all but the system schemas.
  const donorSchemas = await listSchemas(donor.meta, signal);
  let schemas = donorSchemas;
  if (options.schemas.length > 0) {
    const missing = options.schemas.filter((s) => !donorSchemas.includes(s));
    const system = options.schemas.filter((s) => SYSTEM_SCHEMAS.includes(s));
    if (missing.length)
      problems.push(`--schemas names schemas the donor does not have: ${missing.join(', ')}`);
    if (system.length)
      problems.push(`--schemas names system schemas, which are never copied: ${system.join(', ')}`);
    schemas = options.schemas.filter((s) => donorSchemas.includes(s));
  }
  if (schemas.length === 0 && problems.length === 0) problems.push('the donor has no user schema to copy');

  // The joiner: user data anywhere is refused unless --force.
  const joinerAll = await joinerSchemas(joiner.meta, await listSchemas(joiner.meta, signal), signal);
  const withData = joinerAll.filter((s) => s.objects > 0);
  if (withData.length > 0 && !options.force) {
    problems.push(
      `the joiner already holds user data in ${withData.map((s) => s.schema).join(', ')}: use --force to replace it (moved aside, restored if the clone fails)`,
    );
  }
  const conflicts = joinerAll.filter((s) => schemas.includes(s.schema) || (options.force && s.objects > 0));
  if (j.replica)
    warnings.push(
      `the joiner replicates from ${j.replica.sourceHost}:${j.replica.sourcePort}; that replication is replaced`,
    );

  const resolved = { ...ctx, options: { ...ctx.options, schemas } };
  problems.push(...(await method.preflight(resolved)));
  if (problems.length === 0 && method.advisories) warnings.push(...(await method.advisories(resolved)));
  if (problems.length > 0) {
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `preflight found ${problems.length} problem${problems.length > 1 ? 's' : ''}; nothing was changed`,
      {
        hints: problems,
      },
    );
  }
  return { schemas, conflicts, warnings };
}
