import { Command } from 'commander';
import { ReseedError } from '../errors.js';
import { identity, manifestDir, manifestPath, readManifest } from '../clone/manifest.js';
import type { CloneManifest } from '../clone/manifest.js';
import { describeEndpoint, publicEndpoint } from '../mysql/credentials.js';
import { inspect } from '../mysql/facts.js';
import type { ServerFacts } from '../mysql/facts.js';
import { connect } from '../mysql/server.js';
import { formatCoordinates } from '../replication/coordinates.js';
import { reportError, resolveSide } from './common.js';
import { formatBytes, formatMs } from './output.js';

interface StatusFlags {
  to: string;
  json?: boolean;
  defaultsFile?: string;
  joinerDefaultsFile?: string;
  sslMode?: string;
  sslCa?: string;
}

export function statusCommand(): Command {
  return new Command('status')
    .summary("the last clone onto a joiner (its manifest) and the joiner's replication now")
    .description(
      'Reads the CloneManifest of the last clone that completed onto the joiner (written last, ' +
        `after everything else: in ${manifestDir()}, on the machine that ran the clone) and the ` +
        "joiner's replication as it is now. Exits 12 when no clone onto this joiner completed.",
    )
    .requiredOption('--to <uri>', 'the joiner: mysql://user@host:port')
    .option('--json', 'print {manifest, now} as JSON')
    .option('--defaults-file <file>', 'option file with [client] user/password (default ~/.my.cnf)')
    .option('--joiner-defaults-file <file>', 'option file for the joiner')
    .option('--ssl-mode <mode>', 'TLS to the joiner: disabled, required, verify-ca, verify-identity')
    .option('--ssl-ca <file>', "CA that signed the joiner's certificate")
    .action(async (flags: StatusFlags) => {
      try {
        process.exitCode = await status(flags);
      } catch (err) {
        process.exitCode = reportError(err, flags.json === true);
      }
    });
}

interface Now {
  server: string;
  version: string;
  serverId: number;
  readOnly: boolean;
  replication:
    | {
        source: string;
        io: string;
        sql: string;
        secondsBehind: number | null;
        gtid: boolean;
        lastError: string | undefined;
      }
    | undefined;
  /** MariaDB's gtid_slave_pos: the last transactions applied from each replication domain */
  gtidSlavePos: string | undefined;
}

async function status(flags: StatusFlags): Promise<number> {
  const endpoint = resolveSide('joiner', flags.to, flags, (m) =>
    process.stderr.write(`reseed: warning: ${m}\n`),
  );
  const s = await connect(endpoint);
  let facts: ServerFacts;
  let gtidSlavePos: string | undefined;
  try {
    facts = await inspect(s);
    if (facts.flavor.name === 'mariadb') {
      const [row] = await s.query('SELECT @@GLOBAL.gtid_slave_pos AS p');
      gtidSlavePos = String(row?.p ?? '');
    }
  } finally {
    await s.close();
  }
  const me = identity(publicEndpoint(endpoint), facts);
  const manifest = readManifest(me);
  const r = facts.replica;
  const now: Now = {
    server: describeEndpoint(endpoint),
    version: facts.version.text,
    serverId: facts.serverId,
    readOnly: facts.readOnly,
    replication: r && {
      source: `${r.sourceHost}:${r.sourcePort}`,
      io: r.ioRunning ? 'running' : r.ioConnecting ? 'connecting' : 'stopped',
      sql: r.sqlRunning ? 'running' : 'stopped',
      secondsBehind: r.secondsBehind,
      gtid: r.usingGtid,
      lastError: r.lastSqlError || r.lastIoError || undefined,
    },
    gtidSlavePos,
  };
  if (flags.json) process.stdout.write(JSON.stringify({ manifest: manifest ?? null, now }) + '\n');
  else process.stdout.write(render(manifest, now));
  if (!manifest)
    return reportError(
      new ReseedError(
        'NO_MANIFEST',
        `no completed clone onto ${now.server} is recorded here (${manifestPath(me)} does not exist)`,
        {
          hints: [
            'a clone writes its manifest last, once it completed; a clone that failed or was interrupted leaves none',
            'the manifest is kept on the machine that ran the clone (RESEED_STATE_DIR)',
          ],
        },
      ),
      flags.json === true,
    );
  return 0;
}

function render(m: CloneManifest | undefined, now: Now): string {
  const lines = [
    `joiner ${now.server}: ${now.version}, server_id ${now.serverId}${now.readOnly ? ', read-only' : ''}`,
  ];
  if (m) {
    lines.push(
      `last clone    ${m.method} from ${describeEndpoint(m.donor.endpoint)} (server_id ${m.donor.serverId}, ${m.donor.version})`,
      `  completed   ${m.completedAt} in ${formatMs(m.durationMs)} (journal ${m.id})`,
      `  copied      ${m.schemas.join(', ')}: ${m.tables} tables, ${m.rows} rows, ${formatBytes(m.bytes)}`,
      `  coordinates ${m.coordinates ? formatCoordinates(m.coordinates) : '-'}`,
      `  replication ${m.replication.state}${m.replication.from ? ` from ${m.replication.from} (${m.replication.mode})` : ''}`,
      `  verify      ${m.verify ? `${m.verify.identical ? 'identical' : 'DIFFERENT'}: ${m.verify.tables} tables, ${m.verify.chunks} chunks at ${m.verify.position}` : 'not run'}`,
    );
  } else lines.push('last clone    none recorded');
  const r = now.replication;
  lines.push(
    r
      ? `now           replicating from ${r.source}: IO ${r.io}, SQL ${r.sql}, ${r.secondsBehind === null ? 'lag unknown' : `${r.secondsBehind} s behind`}${r.lastError ? `, error: ${r.lastError}` : ''}`
      : 'now           not replicating (no default replication connection)',
  );
  if (now.gtidSlavePos !== undefined) lines.push(`  gtid_slave_pos ${now.gtidSlavePos || '(empty)'}`);
  return lines.join('\n') + '\n';
}
