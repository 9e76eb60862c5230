import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { clone } from '../clone/clone.js';
import { defaultCloneOptions } from '../clone/defaults.js';
import { DEFAULT_THROTTLE } from '../throttle/donor-throttle.js';
import { physicalClone } from '../clone/physical.js';
import { ReseedError } from '../errors.js';
import { serviceControl } from '../host/service-control.js';
import type { Logger } from '../log.js';
import type { Endpoint } from '../mysql/credentials.js';
import type { ProgressEvent } from '../progress.js';
import type { AgentClient } from './client.js';
import type { AgentConfig } from './config.js';
import type { JobRecord } from './jobs.js';
import { agentEndpoint } from './mysql.js';
import type { JobContext } from './runner.js';

const hostPort = z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }).strict();

export const cloneRequestSchema = z
  .object({
    kind: z.literal('clone'),
    /** the donor's agent, by its name in this agent's `peers` or registry */
    from: z.string().min(1),
    method: z.enum(['logical', 'mariabackup', 'copy', 'snapshot']).default('logical'),
    parallel: z.number().int().min(1).max(64).default(4),
    /** the data channel's codec (mariabackup) */
    compress: z.enum(['none', 'lz4', 'zstd']).default('none'),
    /** logical: the schemas to copy (default: every user schema) */
    schemas: z.array(z.string().min(1)).default([]),
    /** logical: replace same-name schemas on the joiner */
    force: z.boolean().default(false),
    users: z.boolean().default(false),
    replicate: z.boolean().default(true),
    replicationUser: z.string().min(1).optional(),
    /** held in memory for the job; never in its record, its events or a response */
    replicationPassword: z.string().optional(),
    replicationHost: hostPort.optional(),
    /** when the donor is a replica: follow the donor, or the donor's source */
    replicateFrom: z.enum(['donor', 'source']).default('donor'),
    catchupTimeoutMs: z.number().int().min(1000).default(600_000),
    verify: z.boolean().default(true),
    writable: z.boolean().default(false),
    /** the adaptive donor throttle (verification, and the logical copy) */
    throttle: z.boolean().default(true),
    dryRun: z.boolean().default(false),
    /** copy: the donor's mysqld is started again after this long down (the clone then fails) */
    maxDowntimeMs: z.number().int().min(1000).max(86_400_000).default(600_000),
    /** copy, snapshot: the bounded wait for the donor's lock (a quiet window, then the lock statement) */
    lockWaitTimeoutMs: z.number().int().min(100).max(3_600_000).default(10_000),
    /** snapshot, reseed refresh: the cheapest way that works (auto), or a full send */
    refresh: z.enum(['auto', 'full']).optional(),
    /** snapshot: the watchdog ends the donor's read lock after this (the snapshot then fails) */
    maxLockTimeMs: z.number().int().min(100).max(3_600_000).default(5_000),
    /** copy: a cap on the donor agent's reads of its datadir, bytes/s (both passes) */
    maxRate: z.number().positive().optional(),
    /** copy: the joiner's datadir is an older copy of the donor's; the first pass sends only what differs */
    delta: z.boolean().default(false),
    /** how long the data channel may stall before the clone fails */
    resumeTimeoutMs: z.number().int().min(1000).max(86_400_000).default(60_000),
  })
  .strict();
export type CloneJobRequest = z.infer<typeof cloneRequestSchema>;

/** What a clone job's record keeps of its request: everything but the password. */
export function storedCloneRequest(
  r: CloneJobRequest,
  donor: { host: string; port: number },
): Record<string, unknown> {
  const { replicationPassword, ...rest } = r;
  return {
    ...rest,
    ...(replicationPassword !== undefined ? { replicationPassword: '(given)' } : {}),
    donorAddress: donor,
  };
}

const loopback = (h: string) => h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));

/**
 * Where this host reaches the donor's mysqld: the address its agent reports, or, when that is a
 * loopback address and the agent is elsewhere, the agent's own host.
 */
export async function donorAddress(peer: AgentClient): Promise<{ host: string; port: number }> {
  const health = await peer.call<{ name: string; mysqlAddress: { host: string; port: number } | null }>(
    'GET',
    '/v1/health',
  );
  if (!health.mysqlAddress)
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `the donor's agent ${health.name} does not know its host's mysqld (no mysql key in its configuration)`,
    );
  const agentHost = new URL(peer.address.url).hostname.replace(/^\[|\]$/g, '');
  const { host, port } = health.mysqlAddress;
  return { host: loopback(host) && !loopback(agentHost) ? agentHost : host, port };
}

/** The servers a clone job acts on: this agent's mysqld, and the donor's as this agent's account. */
export function cloneEndpoints(config: AgentConfig, job: JobRecord): { donor: Endpoint; joiner: Endpoint } {
  const joiner = agentEndpoint(config);
  const d = job.request.donorAddress as { host: string; port: number } | undefined;
  // The donor is reached over TCP, never by this host's socket.
  const rest = { ...joiner };
  delete rest.socketPath;
  return { joiner, donor: d ? { ...rest, host: d.host, port: d.port } : joiner };
}

/**
 * A clone run by the joiner's agent: the joiner chooses the method, the donor's agent serves it.
 * The data never passes through the machine that asked. Logical: the clone operation runs here,
 * reading the donor's mysqld over SQL. mariabackup: the donor's agent streams its backup here.
 */
export async function runCloneJob(
  ctx: JobContext,
  r: CloneJobRequest,
  config: AgentConfig,
  peer: AgentClient,
  log: Logger,
): Promise<Record<string, unknown>> {
  const { donor, joiner } = cloneEndpoints(config, ctx.job);
  const emit = (e: ProgressEvent | { type: string; [k: string]: unknown }) => ctx.emit(e as { type: string });
  if (r.method === 'logical') {
    const options = defaultCloneOptions({
      method: 'logical',
      schemas: r.schemas,
      parallel: r.parallel,
      force: r.force,
      users: r.users,
      replicate: r.replicate,
      replicationUser: r.replicationUser,
      replicationPassword: r.replicationPassword,
      replicationHost: r.replicationHost ?? { host: donor.host, port: donor.port },
      replicateFrom: r.replicateFrom,
      catchupTimeoutMs: r.catchupTimeoutMs,
      verify: r.verify,
      writable: r.writable,
      dryRun: r.dryRun,
      throttle: { ...DEFAULT_THROTTLE, adaptive: r.throttle },
    });
    ctx.setState('preflight');
    // The operation's phases are the job's states.
    const states: Record<string, 'copying' | 'replicating' | 'verifying'> = {
      snapshot: 'copying',
      copy: 'copying',
      replicate: 'replicating',
      verify: 'verifying',
    };
    const summary = await clone({
      donor,
      joiner,
      options,
      log,
      progress: {
        emit: (e) => {
          if (e.type === 'phase' && states[e.phase]) ctx.setState(states[e.phase]!);
          emit(e);
        },
      },
      signal: ctx.signal,
      journalDir: join(config.stateDir, 'journal'),
      manifestDir: join(config.stateDir, 'manifests'),
      onJournal: (j) => ctx.adoptJournal(j),
    });
    return { ...summary } as unknown as Record<string, unknown>;
  }
  if (r.refresh && r.method !== 'snapshot')
    throw new ReseedError('USAGE', `a refresh is a snapshot clone (given --method ${r.method})`);
  if (!config.datadir || !config.service)
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `--method ${r.method} replaces the joiner's datadir: agent ${config.name} needs datadir and service in its configuration`,
    );
  const summary = await physicalClone({
    method: r.method,
    donorAgent: peer,
    donor,
    joiner,
    datadir: config.datadir,
    service: serviceControl(config.service),
    options: {
      parallel: r.parallel,
      force: r.force,
      writable: r.writable,
      throttle: r.throttle,
      compress: r.compress,
      replicate: r.replicate,
      replicationUser: r.replicationUser,
      replicationPassword: r.replicationPassword,
      replicationHost: r.replicationHost,
      replicateFrom: r.replicateFrom,
      catchupTimeoutMs: r.catchupTimeoutMs,
      verify: r.verify,
      dryRun: r.dryRun,
      stallTimeoutMs: Math.min(30_000, Math.max(1000, r.resumeTimeoutMs)),
      resumeTimeoutMs: r.resumeTimeoutMs,
      maxDowntimeMs: r.maxDowntimeMs,
      lockWaitTimeoutMs: r.lockWaitTimeoutMs,
      maxLockTimeMs: r.maxLockTimeMs,
      maxRate: r.maxRate,
      delta: r.delta,
      replicaName: config.name,
      refresh: r.refresh,
    },
    journal: ctx.journal,
    log,
    signal: ctx.signal,
    manifestDir: join(config.stateDir, 'manifests'),
    emit,
    setState: (s) => ctx.setState(s),
  });
  return { ...summary } as unknown as Record<string, unknown>;
}
