import { ReseedError } from '../errors.js';
import { throttleProblems } from '../throttle/donor-throttle.js';
import { scanJournals } from '../journal/journal.js';
import type { PublicEndpoint } from '../mysql/credentials.js';
import { compareVersions } from '../mysql/flavor/index.js';
import { hasPrivilege, sameServer } from '../mysql/facts.js';
import { listSchemas, SYSTEM_SCHEMAS } from '../mysql/tables.js';
import type { CloneContext, TransferMethod } from '../methods/method.js';
import { capabilityPlanLines, capabilityProblems } from './capabilities.js';
import { checkAccountFromHere, probeSource, schemaPattern } from '../replication/replica.js';
import { joinerSchemas } from './joiner-prepare.js';
import type { JoinerSchemaState } from './joiner-prepare.js';

/**
 * What the clone will do, decided before anything changes and printed before it is done (all of
 * it with --dry-run): nothing the user did not name is replaced or dropped unless the plan says so.
 */
export interface ClonePlan {
  /** donor schemas to copy */
  schemas: string[];
  /** joiner schemas holding data under a copied name: moved aside, dropped once the clone stands */
  replace: JoinerSchemaState[];
  /** joiner schemas holding data the donor does not have (--force without --schemas): likewise */
  drop: JoinerSchemaState[];
  /** empty joiner schemas under a copied name: dropped and made again as the donor has them */
  emptied: string[];
  /** joiner user schemas left as they are */
  keep: string[];
  /** the joiner's binary log GTID position, when it must be deleted (RESET MASTER) to replicate */
  resetBinlog: string | undefined;
  /** the joiner's replication that the clone replaces (or removes, with --no-replicate) */
  oldReplication: string[];
  /** replicate_wild_do_table patterns, when the user named the schemas */
  filters: string[] | undefined;
  /** the joiner's connection that already points at the new source, parked while the new one is staged */
  park: string | undefined;
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
  // SET SESSION sql_log_bin (the copy writes no binlog), CHANGE MASTER/START SLAVE, read_only
  'BINLOG ADMIN',
  'REPLICATION SLAVE ADMIN',
  'READ_ONLY ADMIN',
];

/** A name for the staged replication connection and the probe of one clone. */
export function stagedConnectionName(journalId: string, what: 'probe' | 'staged'): string {
  return `reseed_${what}_${journalId.replace(/[^0-9a-z]/gi, '').slice(-10)}`;
}

/**
 * Everything that would make the clone fail or do harm, checked before anything changes; one
 * line each, all at once, so the operator fixes them in one go. The last check, only when all
 * others pass, proves the replication account from the joiner (journaled, and undone at once).
 */
export async function preflight(ctx: CloneContext, method: TransferMethod): Promise<ClonePlan> {
  const { donor, joiner, options, signal } = ctx;
  const problems: string[] = [];
  const warnings: string[] = [];
  const d = donor.facts;
  const j = joiner.facts;

  const same = sameServer(d, j);
  if (same) {
    problems.push(
      `donor and joiner are the same server (${d.hostname}:${d.port}, server_id ${d.serverId}): --to must name another server`,
    );
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
  } else if (options.replicate && options.replicationPassword === undefined) {
    problems.push(
      `no password for the replication account ${options.replicationUser}: set RESEED_REPLICATION_PASSWORD or pass --replication-defaults-file`,
    );
  }
  problems.push(...unfinishedOperations(ctx));
  problems.push(...(await throttleProblems(options.throttle, donor.meta)));
  const missingDonor = DONOR_PRIVILEGES.filter((p) => !hasPrivilege(d, p));
  if (missingDonor.length) problems.push(`the donor account ${d.user} lacks ${missingDonor.join(', ')}`);
  const missingJoiner = JOINER_PRIVILEGES.filter((p) => !hasPrivilege(j, p));
  if (missingJoiner.length) problems.push(`the joiner account ${j.user} lacks ${missingJoiner.join(', ')}`);

  // Schemas: the named ones must exist; by default all but the system schemas.
  const donorSchemas = await listSchemas(donor.meta, signal);
  let schemas = donorSchemas;
  const named = options.schemas.length > 0;
  if (named) {
    const system = options.schemas.filter((s) => SYSTEM_SCHEMAS.includes(s));
    const missing = options.schemas.filter((s) => !donorSchemas.includes(s) && !system.includes(s));
    if (missing.length)
      problems.push(
        `--schemas names schemas the donor does not have: ${missing.join(', ')}${
          donorSchemas.some((x) => x.includes(','))
            ? ' (a schema whose name holds a comma cannot be named in --schemas: leave --schemas out to copy every schema)'
            : ''
        }`,
      );
    if (system.length)
      problems.push(`--schemas names system schemas, which are never copied: ${system.join(', ')}`);
    schemas = options.schemas.filter((s) => donorSchemas.includes(s));
  }
  if (schemas.length === 0 && problems.length === 0) problems.push('the donor has no user schema to copy');

  // The joiner: what is replaced, dropped and kept. Its data is replaced only with --force.
  const joinerAll = await joinerSchemas(joiner.meta, await listSchemas(joiner.meta, signal), signal);
  const replace = joinerAll.filter((s) => schemas.includes(s.schema) && s.objects > 0);
  const emptied = joinerAll.filter((s) => schemas.includes(s.schema) && s.objects === 0).map((s) => s.schema);
  const others = joinerAll.filter((s) => !schemas.includes(s.schema));
  const drop = named ? [] : others.filter((s) => s.objects > 0);
  const keep = others.filter((s) => !drop.includes(s)).map((s) => s.schema);
  if (!same && !options.force) {
    if (replace.length)
      problems.push(
        `the joiner already holds data in ${replace.map((s) => s.schema).join(', ')}: use --force to replace it (moved aside, restored if the clone fails, dropped once it succeeds)`,
      );
    if (drop.length)
      problems.push(
        `the joiner holds data the donor does not have, in ${drop.map((s) => s.schema).join(', ')}: use --force to replace the joiner's data (those schemas are dropped once the clone succeeds), or name the schemas to copy with --schemas (the others are then kept)`,
      );
  }

  // The joiner's replication: what it has now is replaced (or removed with --no-replicate).
  const connections = (await joiner.meta.query(j.flavor.allReplicaStatusSql, [], signal).catch(() => []))
    .map((r) => j.flavor.parseReplicaStatus(r))
    .filter((r) => r.sourceHost !== '');
  const oldReplication = connections.map(
    (r) => `${r.connection ? `connection '${r.connection}' ` : ''}from ${r.sourceHost}:${r.sourcePort}`,
  );
  const target = replicationAddress(ctx);
  const park = options.replicate
    ? connections.find(
        (r) => r.sourceHost.toLowerCase() === target.host.toLowerCase() && r.sourcePort === target.port,
      )?.connection
    : undefined;

  // A joiner whose binary log holds transactions of its own cannot take the donor's GTID position.
  let resetBinlog: string | undefined;
  if (options.replicate && options.gtid) {
    const [g] = await joiner.meta.query(j.flavor.currentGtidSql, [], signal);
    const own = String(g?.gtid ?? '');
    if (own !== '') {
      if (options.force) resetBinlog = own;
      else
        problems.push(
          `the joiner's binary log holds transactions (GTID ${own}: written there, or replicated from an earlier source) that conflict with taking the donor's position: if they are not needed, run RESET MASTER on the joiner, or pass --force to have reseed delete them as part of replacing the joiner`,
        );
    }
  }

  const filters = named && options.replicate ? schemas.map(schemaPattern) : undefined;
  if (filters && options.users)
    warnings.push(
      'replication is limited to the copied schemas: account changes on the donor (the mysql schema) will not reach the joiner',
    );

  const resolved = { ...ctx, options: { ...ctx.options, schemas } };
  // No agents yet: a method that needs them is refused here, before anything is asked of it.
  const forbidden = capabilityProblems(method, { ...ctx, agents: false });
  problems.push(...forbidden);
  if (forbidden.length === 0) problems.push(...(await method.preflight(resolved)));
  if (problems.length === 0 && options.replicate) {
    const checked = await checkReplication(ctx, park !== undefined);
    problems.push(...checked.problems);
    warnings.push(...checked.warnings);
  }
  if (problems.length === 0 && method.advisories) warnings.push(...(await method.advisories(resolved)));
  if (problems.length > 0) {
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `preflight found ${problems.length} problem${problems.length > 1 ? 's' : ''}; nothing was changed`,
      { hints: problems },
    );
  }
  return { schemas, replace, drop, emptied, keep, resetBinlog, oldReplication, filters, park, warnings };
}

/** Where the joiner will connect for replication: the donor, its source, or --replication-host. */
export function replicationAddress(ctx: Pick<CloneContext, 'donor' | 'options'>): {
  host: string;
  port: number;
} {
  const { donor, options } = ctx;
  if (options.replicateFrom === 'source' && donor.facts.replica)
    return { host: donor.facts.replica.sourceHost, port: donor.facts.replica.sourcePort };
  return options.replicationHost ?? { host: donor.endpoint.host, port: donor.endpoint.port };
}

/**
 * The replication account, proven before any copy: from the joiner itself (the probe), unless the
 * joiner already has a connection to that source (MariaDB allows no second one); and from here,
 * which also tells whether the address is the expected server (its server_id).
 */
async function checkReplication(
  ctx: CloneContext,
  sameSource: boolean,
): Promise<{ problems: string[]; warnings: string[] }> {
  const { donor, joiner, options, journal, signal } = ctx;
  const problems: string[] = [];
  const warnings: string[] = [];
  if (options.replicateFrom === 'donor') {
    const rows = await donor.meta
      .query('SELECT Host AS h FROM mysql.user WHERE User = ?', [options.replicationUser], signal)
      .catch(() => undefined);
    if (rows && rows.length === 0)
      return {
        problems: [
          `the replication account ${options.replicationUser} does not exist on the donor: create it (CREATE USER ... ; GRANT REPLICATION SLAVE ON *.* TO ...)`,
        ],
        warnings,
      };
  }
  const { host, port } = replicationAddress(ctx);
  const target = {
    host,
    port,
    user: options.replicationUser!,
    password: options.replicationPassword ?? '',
    ssl: options.replicationSsl,
  };
  if (!sameSource) {
    const problem = await probeSource({
      joiner: joiner.meta,
      flavor: joiner.facts.flavor,
      target,
      connection: stagedConnectionName(journal.header.id, 'probe'),
      journal,
      signal,
    });
    if (problem) return { problems: [problem], warnings };
  }
  // TLS as reseed reaches the donor (encrypted, certificate unchecked: the replication CA is a
  // path on the joiner's host).
  const tls = donor.endpoint.tls || options.replicationSsl ? { mode: 'required' as const } : undefined;
  const here = await checkAccountFromHere(target, tls, signal);
  // Once the probe proved the account from the joiner, a failure from here is only a warning.
  if (here.problem && sameSource) problems.push(here.problem);
  else if (here.problem || (here.warning && sameSource)) warnings.push(here.problem ?? here.warning!);
  const expected = expectedSourceId(ctx);
  if (here.serverId !== undefined && expected !== undefined && here.serverId !== expected.id)
    problems.push(
      `the server at ${host}:${port} is not ${expected.name} (its server_id is ${here.serverId}, not ${expected.id}): give ${expected.name}'s address as the joiner reaches it with --replication-host`,
    );
  return { problems, warnings };
}

/** The server_id the joiner's replication must reach: the donor's, or its source's. */
function expectedSourceId(ctx: CloneContext): { id: number; name: string } | undefined {
  const { donor, options } = ctx;
  if (options.replicateFrom === 'source') {
    const id = donor.facts.replica?.sourceServerId;
    return id ? { id, name: "the donor's source" } : undefined;
  }
  return { id: donor.facts.serverId, name: 'the donor' };
}

/** The plan in the operator's words, one line each. */
export function describePlan(
  plan: ClonePlan,
  ctx: Pick<CloneContext, 'donor' | 'options'>,
  method: TransferMethod,
): string[] {
  const { options } = ctx;
  const lines = [`copy from the donor: ${plan.schemas.join(', ')}`, ...capabilityPlanLines(method)];
  const list = (xs: JoinerSchemaState[]) => xs.map((s) => `${s.schema} (${s.objects} objects)`).join(', ');
  if (plan.replace.length)
    lines.push(
      `replace on the joiner: ${list(plan.replace)}: moved aside now, put back if the clone fails, dropped once it succeeds`,
    );
  if (plan.drop.length)
    lines.push(
      `DROP from the joiner (the donor has no such schema): ${list(plan.drop)}: moved aside now, put back if the clone fails, dropped once it succeeds`,
    );
  if (plan.emptied.length) lines.push(`replace empty joiner schemas: ${plan.emptied.join(', ')}`);
  if (plan.keep.length) lines.push(`keep on the joiner, untouched: ${plan.keep.join(', ')}`);
  if (plan.resetBinlog !== undefined)
    lines.push(
      `delete the joiner's binary logs (RESET MASTER; they hold GTID ${plan.resetBinlog}): this cannot be undone`,
    );
  if (options.replicate) {
    const { host, port } = replicationAddress(ctx);
    lines.push(
      `replicate from ${host}:${port} as ${options.replicationUser} (${options.gtid ? 'GTID' : 'binlog file/position'})${
        plan.filters
          ? `, limited to ${plan.schemas.join(', ')} (replicate_wild_do_table ${plan.filters.join(',')})`
          : ''
      }`,
    );
    if (plan.filters)
      lines.push(
        `the filter is set at run time: put replicate_wild_do_table = ${plan.filters.join(',')} in the joiner's configuration to keep it across a restart`,
      );
    for (const r of plan.oldReplication)
      lines.push(
        r.startsWith('connection ')
          ? `remove the joiner's replication ${r} once the clone is verified (kept until then; the schemas it fed get no more changes)`
          : `replace the joiner's replication ${r} once the clone is verified (kept until then)`,
      );
  } else {
    for (const r of plan.oldReplication)
      lines.push(`remove the joiner's replication ${r} once the copy is done (--no-replicate)`);
  }
  if (options.users) lines.push("copy the donor's accounts and roles the joiner does not have");
  if (!options.writable) lines.push('leave the joiner read-only');
  return lines;
}

/**
 * An earlier operation on this joiner (or with it as donor) that never finished owes undo steps:
 * cloning over it would let a later `reseed recover` undo this clone. Its journal is named.
 */
function unfinishedOperations(ctx: CloneContext): string[] {
  const same = (a: PublicEndpoint, b: PublicEndpoint) =>
    a.host.toLowerCase() === b.host.toLowerCase() && a.port === b.port && a.socketPath === b.socketPath;
  const joiner = ctx.joiner.endpoint;
  const out: string[] = [];
  for (const j of scanJournals(undefined, { readOnly: true }).unfinished) {
    if (j.path === ctx.journal.path) continue;
    if (!same(j.header.joiner, joiner) && !same(j.header.donor, joiner)) continue;
    out.push(
      j.ownerAlive()
        ? `another reseed ${j.header.operation} (process ${j.header.pid}) is working on the joiner: wait for it to finish (journal ${j.path})`
        : `an earlier reseed ${j.header.operation} on the joiner did not finish: run \`reseed recover\` first (journal ${j.path})`,
    );
  }
  return out;
}
