import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fastifySwagger from '@fastify/swagger';
import Fastify, { LogController } from 'fastify';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ReseedError, isReseedError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { serviceControl } from '../host/service-control.js';
import type { Logger } from '../log.js';
import { CODECS } from '../transport/codec.js';
import type { Codec } from '../transport/codec.js';
import { writeFrames } from '../transport/send.js';
import { AgentClient } from './client.js';
import type { AgentAddress } from './client.js';
import { registryEntries } from './registry.js';
import type { AgentConfig } from './config.js';
import { readTokenFile } from './config.js';
import { JOB_STATES, JobStore, isFinal } from './jobs.js';
import type { JobEvent } from './jobs.js';
import { JobRunner, NO_SERVER } from './runner.js';
import { runTransfer, transferRequestSchema } from './transfer-job.js';
import {
  cloneEndpoints,
  cloneRequestSchema,
  donorAddress,
  runCloneJob,
  storedCloneRequest,
} from './clone-job.js';
import { Transfers, within } from './transfers.js';
import { Backups } from './backups.js';
import { Snapshots } from './snapshots.js';
import { Copies } from './copies.js';
import { agentEndpoint } from './mysql.js';

export const AGENT_VERSION = '0.1.0';

const errorSchema = z.object({ code: z.string(), message: z.string(), hints: z.array(z.string()) });
const jobSchema = z.object({
  id: z.string(),
  kind: z.string(),
  state: z.enum(JOB_STATES),
  request: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  updatedAt: z.string(),
  pid: z.number(),
  pidStart: z.string().optional(),
  progress: z.record(z.string(), z.unknown()).optional(),
  result: z.record(z.string(), z.unknown()).optional(),
  error: errorSchema.optional(),
  journal: z.string().optional(),
});
const jobRequestSchema = z.discriminatedUnion('kind', [transferRequestSchema, cloneRequestSchema]);

const STATUS: Partial<Record<ErrorCode, number>> = {
  USAGE: 400,
  CONFIG: 400,
  NOT_FOUND: 404,
  AGENT: 409,
  TRANSPORT_AUTH_FAILED: 401,
  CONNECT_FAILED: 502,
};

export interface RunningAgent {
  app: FastifyInstance;
  url: string;
  runner: JobRunner;
  close(): Promise<void>;
}

const sha = (s: string) => createHash('sha256').update(s).digest();

/**
 * The agent: an HTTPS API (fastify; every route's zod schema is its validation, its types and its
 * OpenAPI entry, served at /v1/openapi.json), every request authenticated by the agent's bearer
 * token, but for the data channel's requests, which carry their transfer's one-time credential.
 */
export async function startAgent(config: AgentConfig, log: Logger): Promise<RunningAgent> {
  const tokenHash = sha(readTokenFile(config.tokenFile, 'tokenFile'));
  const store = new JobStore(join(config.stateDir, 'jobs'), config.name);
  // Only a clone's journal holds SQL steps; the others never dial a server.
  const runner = new JobRunner(store, join(config.stateDir, 'journal'), log, (job) =>
    job.kind === 'clone' ? cloneEndpoints(config, job) : { donor: NO_SERVER, joiner: NO_SERVER },
  );
  const interrupted = await runner.recoverOrphans();
  for (const j of interrupted)
    log.warn({ job: j.id, hints: j.error?.hints }, 'job interrupted by an earlier stop of the agent; undone');
  const transfers = new Transfers(config.serve, 10 * 60_000);
  const backups = new Backups(config, log);
  const copies = new Copies(config, log, transfers);
  const snapshots = new Snapshots(config, log);
  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    ...(config.tls
      ? {
          https: {
            cert: readFileSync(config.tls.cert),
            key: readFileSync(config.tls.key),
            ca: readFileSync(config.tls.ca),
            requestCert: config.tls.requireClientCert,
            rejectUnauthorized: config.tls.requireClientCert,
          },
        }
      : {}),
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'reseed agent',
        version: AGENT_VERSION,
        description: 'Jobs and the data channel of a reseed agent',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  app.addHook('onRequest', async (req) => {
    if ((req.routeOptions.config as { auth?: string } | undefined)?.auth === 'transfer') return;
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!given || !timingSafeEqual(sha(given), tokenHash))
      throw new ReseedError('TRANSPORT_AUTH_FAILED', 'missing or wrong bearer token');
  });
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (hasZodFastifySchemaValidationErrors(err))
      return reply.code(400).send({
        code: 'USAGE',
        message: 'the request does not match its schema',
        hints: err.validation.map((v) => `${v.instancePath || '(body)'}: ${v.message ?? ''}`),
      });
    if (isReseedError(err))
      return reply
        .code(STATUS[err.code] ?? 500)
        .send({ code: err.code, message: err.message, hints: err.hints });
    if (err.statusCode && err.statusCode < 500)
      return reply.code(err.statusCode).send({ code: 'USAGE', message: err.message, hints: [] });
    log.error({ err }, 'request failed');
    return reply.code(500).send({ code: 'INTERNAL', message: err.message, hints: [] });
  });

  app.get(
    '/v1/health',
    {
      schema: {
        response: {
          200: z.object({
            name: z.string(),
            version: z.string(),
            pid: z.number(),
            mysqld: z.string().nullable(),
            activeJob: z.string().nullable(),
            /** transfers this agent serves now */
            transfers: z.number(),
            /** where this host's mysqld listens, as the agent's configuration says (no credentials) */
            mysqlAddress: z.object({ host: z.string(), port: z.number() }).nullable(),
            /** it knows its datadir and how to stop and start its mysqld: it can serve --method copy */
            servesCopy: z.boolean(),
            /** the filesystem of its datadir's volume (btrfs, zfs) when it can serve --method snapshot, or why not */
            snapshot: z.object({ fs: z.enum(['btrfs', 'zfs']).nullable(), refusal: z.string().nullable() }),
          }),
        },
      },
    },
    async () => {
      const active = store.list().find((j) => !isFinal(j.state));
      let mysqld: string | null = null;
      if (config.service) {
        const s = await serviceControl(config.service)
          .status()
          .catch((e: Error) => ({ detail: `unknown: ${e.message}` }));
        mysqld = s.detail;
      }
      return {
        name: config.name,
        version: AGENT_VERSION,
        pid: process.pid,
        mysqld,
        activeJob: active?.id ?? null,
        transfers: transfers.count + backups.count + copies.count + snapshots.count,
        mysqlAddress: config.mysql ? (({ host, port }) => ({ host, port }))(agentEndpoint(config)) : null,
        servesCopy: Boolean(config.datadir && config.service && config.mysql),
        snapshot: await snapshots
          .volume()
          .then((v) => (typeof v === 'string' ? { fs: null, refusal: v } : { fs: v.fs, refusal: null })),
      };
    },
  );
  app.get('/v1/openapi.json', { schema: { hide: true } }, () => app.swagger());

  // The data channel, donor side.
  app.post(
    '/v1/transfers',
    {
      schema: {
        body: z
          .object({
            path: z.string().min(1),
            maxRate: z.number().positive().optional(),
            /** the receiver's resume timeout: the transfer is closed after that long without a request */
            idleTimeoutMs: z.number().int().min(1000).max(86_400_000).optional(),
          })
          .strict(),
        response: {
          201: z.object({ id: z.string(), secret: z.string(), files: z.number(), bytes: z.number() }),
        },
      },
    },
    async (req, reply) => {
      reply.code(201);
      await refuseLiveDatadir(config, req.body.path);
      const idle = req.body.idleTimeoutMs === undefined ? undefined : req.body.idleTimeoutMs + 2000;
      return transfers.open(req.body.path, req.body.maxRate, idle);
    },
  );
  const transferParams = z.object({ id: z.string().regex(/^[a-f0-9]{24}$/) });
  app.get(
    '/v1/transfers/:id/manifest',
    { config: { auth: 'transfer' }, schema: { params: transferParams } },
    (req) => transfers.manifest(transfers.authorize(req.params.id, req.headers.authorization)),
  );
  app.get(
    '/v1/transfers/:id/segment',
    {
      config: { auth: 'transfer' },
      schema: {
        params: transferParams,
        querystring: z.object({
          entry: z.coerce.number().int().min(0),
          offset: z.coerce.number().int().min(0),
          length: z.coerce.number().int().min(0),
          from: z.coerce.number().int().min(0),
          codec: z.enum(CODECS as [Codec, ...Codec[]]),
          /** a part of a segment (delta mode's differing blocks): not recorded as the segment */
          part: z
            .enum(['0', '1'])
            .default('0')
            .transform((v) => v === '1'),
          /** fail a segment whose file changed since the transfer listed it (all but a best-effort pass) */
          unchanged: z
            .enum(['0', '1'])
            .default('0')
            .transform((v) => v === '1'),
        }),
      },
    },
    (req, reply) => {
      const t = transfers.authorize(req.params.id, req.headers.authorization);
      return sendFrames(reply, transfers.segment(t, req.query));
    },
  );
  app.get(
    '/v1/transfers/:id/sums',
    {
      config: { auth: 'transfer' },
      schema: {
        params: transferParams,
        querystring: z.object({
          entry: z.coerce.number().int().min(0),
          offset: z.coerce.number().int().min(0),
          length: z.coerce.number().int().min(0),
          block: z.coerce
            .number()
            .int()
            .min(4096)
            .max(16 << 20),
        }),
      },
    },
    (req) => transfers.sums(transfers.authorize(req.params.id, req.headers.authorization), req.query),
  );
  app.get(
    '/v1/transfers/:id/hash',
    { config: { auth: 'transfer' }, schema: { params: transferParams } },
    (req) => ({
      treeHash: transfers.treeHash(transfers.authorize(req.params.id, req.headers.authorization)),
    }),
  );
  app.delete('/v1/transfers/:id', { schema: { params: transferParams } }, (req, reply) => {
    transfers.close(req.params.id);
    return reply.code(204).send();
  });

  // The donor half of the mariabackup method: a backup streamed once to the joiner's agent.
  app.post(
    '/v1/backups',
    {
      schema: {
        body: z
          .object({
            parallel: z.number().int().min(1).max(64).default(1),
            idleTimeoutMs: z.number().int().min(1000).max(86_400_000).default(60_000),
          })
          .strict(),
        response: { 201: z.object({ id: z.string(), secret: z.string() }) },
      },
    },
    (req, reply) => {
      reply.code(201);
      return backups.open(req.body);
    },
  );
  app.get(
    '/v1/backups/:id/stream',
    {
      config: { auth: 'transfer' },
      schema: {
        params: transferParams,
        querystring: z.object({ codec: z.enum(CODECS as [Codec, ...Codec[]]).default('none') }),
      },
    },
    (req, reply) => {
      const b = backups.authorize(req.params.id, req.headers.authorization);
      return sendFrames(reply, backups.stream(b, req.query.codec));
    },
  );
  app.get('/v1/backups/:id', { schema: { params: transferParams } }, (req) => backups.report(req.params.id));
  app.delete('/v1/backups/:id', { schema: { params: transferParams } }, (req, reply) => {
    backups.close(req.params.id);
    return reply.code(204).send();
  });

  // The donor half of the copy method: a live first pass, then mysqld stopped for a delta pass.
  const copyReport = z.object({
    state: z.enum(['hot', 'down', 'up', 'failed', 'closed']),
    lockWaitMs: z.number(),
    writesBlockedMs: z.number(),
    downMs: z.number(),
    coordinates: z
      .object({ gtid: z.string(), file: z.string(), position: z.number(), source: z.string() })
      .optional(),
    error: z.string().optional(),
  });
  const opened = z.object({
    id: z.string(),
    secret: z.string(),
    files: z.number(),
    bytes: z.number(),
    /** files unchanged since the first pass (the second pass's transfer) */
    same: z.number().optional(),
  });
  app.post(
    '/v1/copies',
    {
      schema: {
        body: z
          .object({
            maxRate: z.number().positive().optional(),
            idleTimeoutMs: z.number().int().min(1000).max(86_400_000).default(120_000),
            maxDowntimeMs: z.number().int().min(1000).max(86_400_000).default(600_000),
          })
          .strict(),
        response: { 201: z.object({ id: z.string(), hot: opened }) },
      },
    },
    async (req, reply) => {
      reply.code(201);
      return copies.open(req.body);
    },
  );
  app.post(
    '/v1/copies/:id/freeze',
    {
      schema: {
        params: transferParams,
        body: z
          .object({ lockWaitTimeoutMs: z.number().int().min(100).max(3_600_000).default(10_000) })
          .strict(),
        response: { 200: z.object({ cold: opened, report: copyReport }) },
      },
    },
    (req) => copies.freeze(req.params.id, req.body),
  );
  app.post(
    '/v1/copies/:id/thaw',
    { schema: { params: transferParams, response: { 200: copyReport } } },
    (req) => copies.thaw(req.params.id),
  );
  app.get('/v1/copies/:id', { schema: { params: transferParams, response: { 200: copyReport } } }, (req) =>
    copies.report(req.params.id),
  );
  app.delete('/v1/copies/:id', { schema: { params: transferParams } }, async (req, reply) => {
    await copies.close(req.params.id);
    return reply.code(204).send();
  });

  // The donor half of the snapshot method: a snapshot taken under a read lock of milliseconds,
  // then sent once (btrfs send / zfs send) to the joiner's agent; kept as the replica's base.
  const snapshotReport = z.object({
    state: z.enum(['taken', 'streaming', 'interrupted', 'sent', 'failed', 'kept', 'closed']),
    fs: z.enum(['btrfs', 'zfs']),
    name: z.string(),
    lockHeldMs: z.number(),
    lockWaitMs: z.number(),
    coordinates: z.object({
      server: z.string(),
      serverId: z.number(),
      version: z.string(),
      lockMode: z.string(),
      lockedAt: z.string(),
      gtid: z.string(),
      binlog: z.object({ file: z.string(), position: z.number() }).optional(),
      source: z
        .object({
          host: z.string(),
          port: z.number(),
          gtid: z.string(),
          binlog: z.object({ file: z.string(), position: z.number() }).optional(),
        })
        .optional(),
      applierPaused: z.boolean().optional(),
    }),
    donorOnly: z.array(z.string()),
    base: z.string().optional(),
    fullBytes: z.number().optional(),
    bytes: z.number(),
    keptAs: z.string().optional(),
    error: z.string().optional(),
  });
  app.post(
    '/v1/snapshots',
    {
      schema: {
        body: z
          .object({
            /** the joiner's agent: the snapshot is kept as its base once its clone stands */
            replica: z.string().min(1).max(200),
            incremental: z.boolean().default(false),
            idleTimeoutMs: z.number().int().min(1000).max(86_400_000).default(120_000),
            /** a stream cut and not asked for again within this long: the snapshot goes */
            resumeTimeoutMs: z.number().int().min(1000).max(86_400_000).default(30_000),
            lockWaitTimeoutMs: z.number().int().min(100).max(3_600_000).default(10_000),
            maxLockTimeMs: z.number().int().min(100).max(3_600_000).default(5_000),
          })
          .strict(),
        response: { 201: z.object({ id: z.string(), secret: z.string(), report: snapshotReport }) },
      },
    },
    async (req, reply) => {
      // The joiner going away (Ctrl-C, its agent died) while the lock is waited for ends the wait
      // (and the pause of a replica's applier) at once, not when the lock comes.
      const gone = new AbortController();
      const onClose = () =>
        gone.abort(new ReseedError('ABORTED', 'the joiner went away while the snapshot was being taken'));
      req.raw.socket.once('close', onClose);
      let opened;
      try {
        opened = await snapshots.open({ ...req.body, signal: gone.signal });
      } finally {
        req.raw.socket.off('close', onClose);
      }
      // The joiner gave up while the snapshot was taken: nobody will stream or close it, so it
      // goes now rather than at its idle timeout.
      if (req.raw.socket.destroyed) {
        await snapshots.close(opened.id, false);
        throw new ReseedError('ABORTED', 'the joiner went away while the snapshot was taken; it was removed');
      }
      reply.code(201);
      return opened;
    },
  );
  app.get(
    '/v1/snapshots/:id/stream',
    {
      config: { auth: 'transfer' },
      schema: {
        params: transferParams,
        querystring: z
          .object({
            codec: z.enum(CODECS as [Codec, ...Codec[]]).default('none'),
            // A resume: the bytes the joiner holds, and their digest (checked before more are sent).
            offset: z.coerce.number().int().min(1).optional(),
            digest: z
              .string()
              .regex(/^[0-9a-f]{32}$/)
              .optional(),
          })
          .refine((q) => (q.offset === undefined) === (q.digest === undefined), {
            message: 'offset and digest go together',
          }),
      },
    },
    (req, reply) => {
      const t = snapshots.authorize(req.params.id, req.headers.authorization);
      const { codec, offset, digest } = req.query;
      return sendFrames(
        reply,
        snapshots.stream(t, codec, offset === undefined ? undefined : { offset, digest: digest! }),
      );
    },
  );
  app.get(
    '/v1/snapshots/:id',
    { schema: { params: transferParams, response: { 200: snapshotReport } } },
    (req) => snapshots.report(req.params.id),
  );
  app.delete(
    '/v1/snapshots/:id',
    {
      schema: {
        params: transferParams,
        querystring: z.object({ keep: z.enum(['0', '1']).default('0') }),
      },
    },
    async (req) => (await snapshots.close(req.params.id, req.query.keep === '1')) ?? { state: 'closed' },
  );
  app.get('/v1/snapshot-bases', () => snapshots.bases().then((bases) => ({ bases })));
  app.delete(
    '/v1/snapshot-bases/:replica',
    { schema: { params: z.object({ replica: z.string().min(1).max(200) }) } },
    async (req) => {
      if (!(await snapshots.dropBase(req.params.replica)))
        throw new ReseedError('NOT_FOUND', `no base snapshot kept for ${req.params.replica}`);
      return { removed: req.params.replica };
    },
  );

  // Jobs.
  app.post(
    '/v1/jobs',
    { schema: { body: jobRequestSchema, response: { 202: jobSchema } } },
    async (req, reply) => {
      reply.code(202);
      const r = req.body;
      const peer = new AgentClient(peerAddress(config, r.from));
      if (r.kind === 'clone') {
        if (!config.mysql) {
          await peer.close();
          throw new ReseedError(
            'USAGE',
            `agent ${config.name} has no mysql key: it does not know its host's mysqld to clone into`,
          );
        }
        const donor = await donorAddress(peer).catch(async (err: unknown) => {
          await peer.close();
          throw err;
        });
        return runner.start(
          'clone',
          storedCloneRequest(r, donor),
          { donor: r.from, joiner: config.name },
          async (ctx) => {
            try {
              return await runCloneJob(ctx, r, config, peer, log);
            } finally {
              await peer.close();
            }
          },
        );
      }
      const job = runner.start('transfer', r, { donor: r.from, joiner: config.name }, async (ctx) => {
        try {
          return { ...(await runTransfer(ctx, r, peer, config.receive, config.datadir)) };
        } finally {
          await peer.close();
        }
      });
      return job;
    },
  );
  app.get('/v1/jobs', { schema: { response: { 200: z.object({ jobs: z.array(jobSchema) }) } } }, () => ({
    jobs: store.list(),
  }));
  const jobParams = z.object({ id: z.string().min(1) });
  app.get('/v1/jobs/:id', { schema: { params: jobParams, response: { 200: jobSchema } } }, (req) =>
    store.get(req.params.id),
  );
  app.post(
    '/v1/jobs/:id/cancel',
    { schema: { params: jobParams, response: { 202: jobSchema } } },
    (req, reply) => {
      reply.code(202);
      return runner.cancel(req.params.id);
    },
  );
  app.get(
    '/v1/jobs/:id/events',
    {
      schema: {
        params: jobParams,
        querystring: z.object({ after: z.coerce.number().int().min(0).default(0) }),
      },
    },
    (req, reply) => {
      const { id } = req.params;
      store.get(id);
      reply.hijack();
      const out = reply.raw;
      out.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      const send = (e: JobEvent) =>
        out.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      let last = req.query.after;
      const finish = (e: JobEvent) => e.type === 'state' && isFinal(e.state as never);
      // Subscribed before the backlog is read: an event in between is sent once, not lost.
      const unsubscribe = store.subscribe(id, (e) => {
        if (e.seq <= last) return;
        last = e.seq;
        send(e);
        if (finish(e)) end();
      });
      const end = () => {
        unsubscribe();
        out.end();
      };
      out.on('close', unsubscribe);
      for (const e of store.events(id, last)) {
        last = e.seq;
        send(e);
        if (finish(e)) return end();
      }
      if (isFinal(store.get(id).state)) end();
    },
  );

  const address = await app.listen({ host: config.listen.host, port: config.listen.port });
  log.info({ address, tls: Boolean(config.tls) }, 'agent listening');
  return {
    app: app as unknown as FastifyInstance,
    url: address.replace('http://', config.tls ? 'https://' : 'http://'),
    runner,
    close: async () => {
      await runner.stop();
      await copies.stop();
      await snapshots.stop();
      transfers.stop();
      backups.stop();
      await app.close();
    },
  };
}

/** How this agent reaches a peer: its `peers`, then its registry; TLS with its own certificate. */
function peerAddress(config: AgentConfig, name: string): AgentAddress {
  const inline = config.peers[name];
  const entry = inline ?? (config.registry ? registryEntries([config.registry]).get(name) : undefined);
  if (!entry)
    throw new ReseedError('USAGE', `no peer named ${name} in this agent's configuration`, {
      hints: [
        `peers: ${Object.keys(config.peers).join(', ') || 'none'}${config.registry ? `; registry: ${config.registry}` : ''}`,
      ],
    });
  const tls = config.tls;
  return {
    url: entry.url,
    token: readTokenFile(entry.tokenFile, `peers.${name}.tokenFile`),
    ca: tls ? readFileSync(tls.ca, 'utf8') : undefined,
    cert: tls ? readFileSync(tls.cert, 'utf8') : undefined,
    key: tls ? readFileSync(tls.key, 'utf8') : undefined,
  };
}

/**
 * A running mysqld's datadir changes while it is read: a copy of it is not a consistent datadir.
 * Refused, unless mysqld is stopped (the physical methods will copy it safely while it runs).
 */
async function refuseLiveDatadir(config: AgentConfig, path: string): Promise<void> {
  if (!config.datadir || !config.service) return;
  const inside = within(path, [config.datadir]) || within(config.datadir, [path]);
  if (!inside) return;
  const status = await serviceControl(config.service).status();
  if (status.running)
    throw new ReseedError(
      'USAGE',
      `${path} holds the datadir of this host's mysqld, which is running${status.detail && status.detail !== 'running' ? ` (${status.detail})` : ''}: a copy of it would not be consistent`,
      {
        hints: [
          'stop mysqld first (for a sandbox: reseed sandbox down NAME; its agent keeps running), or use a clone method',
        ],
      },
    );
}

/**
 * A stream of frames as the reply's body, written by writeFrames (buffers of the frame pool used
 * again once written) rather than through fastify's stream piping. What fails while the frames
 * are made is in them already (an ERROR frame); a failure of the writing itself ends the connection.
 */
async function sendFrames(reply: FastifyReply, frames: AsyncGenerator<Buffer>): Promise<void> {
  reply.hijack();
  try {
    await writeFrames(reply.raw, frames);
  } catch (err) {
    reply.log.error({ err }, 'a stream of frames failed');
    reply.raw.destroy(err as Error);
  }
}
