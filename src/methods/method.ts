import type { Journal } from '../journal/journal.js';
import type { Logger } from '../log.js';
import type { Endpoint } from '../mysql/credentials.js';
import type { ServerFacts } from '../mysql/facts.js';
import type { ReadLockPolicy } from '../mysql/read-lock.js';
import type { Server } from '../mysql/server.js';
import type { SnapshotLockMode } from '../mysql/snapshot.js';
import type { ProgressSink } from '../progress.js';
import type { ThrottleOptions, ThrottleReport } from '../throttle/donor-throttle.js';
import type { Coordinates } from '../replication/coordinates.js';

export interface CloneSide {
  endpoint: Endpoint;
  /** a session for metadata and control; on the joiner it writes no binlog */
  meta: Server;
  facts: ServerFacts;
}

export interface CloneOptions {
  method: string;
  /** schemas to copy; resolved by preflight when the user named none */
  schemas: string[];
  parallel: number;
  chunkRows: number;
  /** build plain secondary indexes after each table's rows instead of during the load */
  deferIndexes: boolean;
  /**
   * How rows enter the joiner: 'auto' sends prepared-INSERT bulk packets where the joiner has
   * them (MariaDB), else LOAD DATA LOCAL; 'load-data' always uses LOAD DATA LOCAL.
   */
  loadMode: 'auto' | 'load-data';
  lockMode: SnapshotLockMode;
  readLock: ReadLockPolicy;
  users: boolean;
  force: boolean;
  replicate: boolean;
  gtid: boolean;
  replicateFrom: 'donor' | 'source';
  replicationUser: string | undefined;
  replicationPassword: string | undefined;
  /** where the joiner reaches its source, when not the donor URI's host and port */
  replicationHost: { host: string; port: number } | undefined;
  /** TLS for the joiner's replication link; `ca` is a path on the joiner's host */
  replicationSsl: { ca?: string | undefined } | undefined;
  catchupTimeoutMs: number;
  writable: boolean;
  verify: boolean;
  /** make and print the plan only; change nothing */
  dryRun: boolean;
  /** how reads from the donor are paced: a cap, and backing off when the donor suffers */
  throttle: ThrottleOptions;
}

/** One object handed to every step of a clone. */
export interface CloneContext {
  donor: CloneSide;
  joiner: CloneSide;
  options: CloneOptions;
  journal: Journal;
  log: Logger;
  progress: ProgressSink;
  signal: AbortSignal;
  /** where the CloneManifest goes; undefined: the state directory's manifests/ */
  manifestDir?: string | undefined;
}

export interface TransferResult {
  coordinates: Coordinates;
  lockMode: string;
  lockHeldMs: number;
  tables: { table: string; rows: number; bytes: number; chunks: number }[];
  objects: number;
  users: number;
  phases: Record<string, number>;
  /** how rows entered the joiner, for methods that load rows */
  loadedWith?: string | undefined;
  /** what the donor throttle did */
  throttle?: ThrottleReport | undefined;
}

/**
 * What the clone operation needs to know about a method, read by preflight (refusals), the plan
 * (what the user is told before anything changes) and the joiner's preparation.
 */
export interface MethodCapabilities {
  /** how the donor is locked: not at all / for milliseconds / for the whole copy */
  donorLock: 'none-or-brief' | 'for-copy';
  /**
   * What the copy replaces on the joiner: the schemas it copies (moved aside, put back on
   * failure), or the whole datadir (set aside by src/clone/joiner-datadir.ts), which makes the
   * joiner's accounts, system tables and replication state the donor's.
   */
  replaces: 'schemas' | 'datadir';
  needsJoinerStopped: boolean;
  /** needs a reseed agent on each host (file access, mariadb-backup, snapshots) */
  needsAgents: boolean;
  /** whether the joiner may run another server version (or flavor) than the donor */
  crossVersion: boolean;
}

/**
 * How data moves from donor to joiner. The clone operation branches on capabilities, never on a
 * method's name.
 */
export interface TransferMethod {
  readonly name: string;
  readonly summary: string;
  readonly capabilities: MethodCapabilities;
  /** the phases run() announces as progress events, in order */
  readonly phases: readonly string[];
  /** problems that forbid this method here, one line each; empty when all is well */
  preflight(ctx: Omit<CloneContext, 'journal'>): Promise<string[]>;
  /** what the user should know before the copy but that does not forbid it, one line each */
  advisories?(ctx: Omit<CloneContext, 'journal'>): Promise<string[]>;
  run(ctx: CloneContext): Promise<TransferResult>;
}
