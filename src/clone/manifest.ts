import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ReseedError, errorMessage } from '../errors.js';
import type { ServerFacts } from '../mysql/facts.js';
import type { PublicEndpoint } from '../mysql/credentials.js';
import type { Coordinates } from '../replication/coordinates.js';
import { writeFileDurably } from '../journal/durable-file.js';
import { hostUndo } from '../host/host-undo.js';
import type { Journal } from '../journal/journal.js';

/** Who a server is, as it says itself (not as the command line named it). */
export interface ServerIdentity {
  endpoint: PublicEndpoint;
  hostname: string;
  port: number;
  serverId: number;
  serverUuid?: string | undefined;
  datadir: string;
  version: string;
}

/**
 * The record of a completed clone, written last, after the journal is committed: its presence
 * means the clone completed (Vitess's MANIFEST). It holds no secret.
 */
export interface CloneManifest {
  format: 1;
  /** the clone's journal id */
  id: string;
  method: string;
  startedAt: string;
  completedAt: string;
  donor: ServerIdentity;
  joiner: ServerIdentity;
  coordinates: Coordinates | undefined;
  schemas: string[];
  tables: number;
  rows: number;
  bytes: number;
  lockMode: string;
  lockHeldMs: number;
  replication: {
    state: string;
    from?: string | undefined;
    mode?: string | undefined;
    catchUpMs?: number | undefined;
    /** --replicate-from source: the GTID position it started from (the donor's in its source's stream) */
    startedAt?: string | undefined;
  };
  /** the comparison made before the clone was committed, when one was */
  verify: { identical: boolean; position: string; tables: number; chunks: number; rows: number } | undefined;
  phases: Record<string, number>;
  durationMs: number;
}

export function identity(endpoint: PublicEndpoint, facts: ServerFacts): ServerIdentity {
  return {
    endpoint,
    hostname: facts.hostname,
    port: facts.port,
    serverId: facts.serverId,
    serverUuid: facts.serverUuid,
    datadir: facts.datadir,
    version: facts.version.text,
  };
}

export function manifestDir(): string {
  return resolve(process.env.RESEED_STATE_DIR ?? join(homedir(), '.reseed', 'state'), 'manifests');
}

/** One file per joiner, named as the joiner names itself (@@hostname and @@port). */
export function manifestPath(joiner: Pick<ServerIdentity, 'hostname' | 'port'>, dir = manifestDir()): string {
  const safe = joiner.hostname.replace(/[^A-Za-z0-9_.-]/g, '_');
  return join(dir, `${safe}-${joiner.port}.json`);
}

/** Written whole or not at all: a temporary file, fsynced, renamed over the last one. */
export function writeManifest(manifest: CloneManifest, dir = manifestDir()): string {
  const path = manifestPath(manifest.joiner, dir);
  mkdirSync(dir, { recursive: true });
  writeFileDurably(path, JSON.stringify(manifest, null, 2) + '\n');
  return path;
}

/**
 * The manifest of the last clone onto this joiner, or undefined when there is none. One whose
 * joiner had another datadir is not this server's (the same host and port reused).
 */
export function readManifest(joiner: ServerIdentity, dir = manifestDir()): CloneManifest | undefined {
  const path = manifestPath(joiner, dir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  let m: CloneManifest;
  try {
    m = JSON.parse(text) as CloneManifest;
  } catch (err) {
    throw new ReseedError('JOURNAL', `the clone manifest ${path} is damaged: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  if (m.format !== 1)
    throw new ReseedError('JOURNAL', `the clone manifest ${path} has an unknown format ${String(m.format)}`);
  return m.joiner.datadir === joiner.datadir ? m : undefined;
}

/**
 * A new clone sets the last one's manifest aside before it changes the joiner (a half-done clone
 * must not look completed), as a journaled host step: a rollback or `reseed recover` puts it back,
 * and the new manifest's write removes it.
 */
export async function setAsideManifest(
  joiner: Pick<ServerIdentity, 'hostname' | 'port'>,
  journal: Journal,
  dir = manifestDir(),
): Promise<string | undefined> {
  const path = manifestPath(joiner, dir);
  if (!existsSync(path)) return undefined;
  const aside = `${path}.replaced-${journal.header.id}`;
  await journal.apply(
    `set the last clone's manifest aside (${path})`,
    hostUndo('joiner', { kind: 'move-back', from: aside, to: path }),
    () => {
      renameSync(path, aside);
      return Promise.resolve();
    },
  );
  return aside;
}
