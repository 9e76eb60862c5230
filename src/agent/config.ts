import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ReseedError, errorMessage } from '../errors.js';

const listenAddress = z
  .object({ socketPath: z.string().min(1) })
  .or(z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }));

const serviceSpec = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sandbox'), name: z.string().min(1) }).strict(),
  z.object({ kind: z.literal('systemd'), unit: z.string().min(1), listen: listenAddress }).strict(),
  z
    .object({
      kind: z.literal('commands'),
      start: z.string().min(1),
      stop: z.string().min(1),
      status: z.string().min(1).optional(),
      listen: listenAddress,
    })
    .strict(),
]);

const peer = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    /** the peer's API token, in a file of mode 0600 */
    tokenFile: z.string().min(1),
  })
  .strict();

/** The agent's configuration file (JSON). Paths are relative to the file's directory. */
export const agentConfigSchema = z
  .object({
    /** the host's name in messages and in peers' configurations */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/),
    listen: z.object({ host: z.string().min(1), port: z.number().int().min(0).max(65535) }).strict(),
    /** jobs, journals and logs of this agent */
    stateDir: z.string().min(1),
    /** the bearer token every API request must carry, in a file of mode 0600 */
    tokenFile: z.string().min(1),
    tls: z
      .object({
        cert: z.string().min(1),
        key: z.string().min(1),
        /** the CA that signed the agents' certificates: peers are checked against it */
        ca: z.string().min(1),
        /** mutual TLS: refuse clients without a certificate signed by `ca` */
        requireClientCert: z.boolean().default(false),
      })
      .strict()
      .optional(),
    /** plain HTTP, without TLS: only with this flag, and only on a loopback address */
    insecurePlainHttp: z.boolean().default(false),
    /** the host's mysqld, for the jobs that need it */
    mysql: z
      .object({ uri: z.string().min(1), defaultsFile: z.string().min(1).optional() })
      .strict()
      .optional(),
    datadir: z.string().min(1).optional(),
    service: serviceSpec.optional(),
    /** directories this agent may send to a peer (transfers) */
    serve: z.array(z.string().min(1)).default([]),
    /** directories under which this agent may receive (a transfer's destination is made inside one) */
    receive: z.array(z.string().min(1)).default([]),
    /** other agents this one may ask to serve a transfer, by name */
    peers: z.record(z.string(), peer).default({}),
    /** an agents.json registry (as `reseed agent init` writes) for peers not named in `peers`, read at each job */
    registry: z.string().min(1).optional(),
  })
  .strict();

export type AgentConfig = z.infer<typeof agentConfigSchema>;

/** A token file must be a regular file only its owner can read: a token is a password. */
export function readTokenFile(path: string, key: string): string {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new ReseedError('CONFIG', `${key}: cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (!st.isFile()) throw new ReseedError('CONFIG', `${key}: ${path} is not a file`);
  if ((st.mode & 0o077) !== 0)
    throw new ReseedError(
      'CONFIG',
      `${key}: ${path} is readable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${path}`,
    );
  const token = readFileSync(path, 'utf8').trim();
  if (token.length < 16)
    throw new ReseedError('CONFIG', `${key}: the token in ${path} is shorter than 16 characters`);
  return token;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * Reads and checks a configuration file. Every error names the key (`tls.cert: Required`), and
 * the combinations that would be unsafe are refused: no TLS without `insecurePlainHttp`, plain
 * HTTP off loopback, token files others can read.
 */
export function loadAgentConfig(file: string): AgentConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ReseedError('CONFIG', `${file}: ${errorMessage(err)}`, { cause: err });
  }
  const parsed = agentConfigSchema.safeParse(raw);
  if (!parsed.success)
    throw new ReseedError('CONFIG', `${file}: ${parsed.error.issues.length} problem(s)`, {
      hints: parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`),
    });
  const c = parsed.data;
  const base = dirname(resolve(file));
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const config: AgentConfig = {
    ...c,
    stateDir: abs(c.stateDir),
    tokenFile: abs(c.tokenFile),
    tls: c.tls && { ...c.tls, cert: abs(c.tls.cert), key: abs(c.tls.key), ca: abs(c.tls.ca) },
    mysql: c.mysql && { ...c.mysql, defaultsFile: c.mysql.defaultsFile && abs(c.mysql.defaultsFile) },
    datadir: c.datadir && abs(c.datadir),
    registry: c.registry && abs(c.registry),
    serve: c.serve.map(abs),
    receive: c.receive.map(abs),
    peers: Object.fromEntries(
      Object.entries(c.peers).map(([k, p]) => [k, { ...p, tokenFile: abs(p.tokenFile) }]),
    ),
  };
  const problems: string[] = [];
  if (!config.tls && !config.insecurePlainHttp)
    problems.push('tls: required (or insecurePlainHttp: true, for a loopback address only)');
  if (config.tls && config.insecurePlainHttp)
    problems.push('insecurePlainHttp: cannot be set together with tls');
  if (config.insecurePlainHttp && !isLoopback(config.listen.host))
    problems.push(
      `insecurePlainHttp: plain HTTP is only allowed on a loopback address, not ${config.listen.host}`,
    );
  for (const check of [
    () => readTokenFile(config.tokenFile, 'tokenFile'),
    ...Object.entries(config.peers).map(
      ([n, p]) =>
        () =>
          readTokenFile(p.tokenFile, `peers.${n}.tokenFile`),
    ),
  ])
    try {
      check();
    } catch (err) {
      problems.push(errorMessage(err));
    }
  if (problems.length)
    throw new ReseedError('CONFIG', `${file}: ${problems.length} problem(s)`, { hints: problems });
  return config;
}
