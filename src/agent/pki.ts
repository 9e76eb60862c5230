import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ReseedError } from '../errors.js';
import { run } from '../exec/run.js';
import type { RegistryEntry } from './registry.js';

export interface AgentHost {
  name: string;
  /** the address peers and clients reach it at: a DNS name or an IP address */
  address: string;
  port: number;
}

/** A CA for a set of agents: made once, its key kept (0600) to add hosts later. */
export async function makeCa(dir: string, signal?: AbortSignal): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (existsSync(join(dir, 'ca.pem'))) return;
  await run(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '3650',
      '-keyout',
      join(dir, 'ca-key.pem'),
      '-out',
      join(dir, 'ca.pem'),
      '-subj',
      '/CN=reseed agents CA',
    ],
    signal ? { signal } : {},
  );
  chmodSync(join(dir, 'ca-key.pem'), 0o600);
}

/**
 * A host's certificate, signed by the CA in `caDir`, valid for its address (as a DNS name or an
 * IP address) and usable both as a server (its API) and as a client (mutual TLS to its peers).
 */
export async function makeHostCert(
  caDir: string,
  host: AgentHost,
  out: string,
  signal?: AbortSignal,
): Promise<void> {
  mkdirSync(out, { recursive: true, mode: 0o700 });
  const csr = join(out, 'req.csr');
  const ext = join(out, 'ext.cnf');
  const san = [`DNS:${host.name}`, isIP(host.address) ? `IP:${host.address}` : `DNS:${host.address}`];
  if (host.address !== '127.0.0.1') san.push('IP:127.0.0.1');
  writeFileSync(
    ext,
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${[...new Set(san)].join(',')}\n`,
  );
  const opts = signal ? { signal } : {};
  try {
    await run(
      'openssl',
      [
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        join(out, 'key.pem'),
        '-out',
        csr,
        '-subj',
        `/CN=${host.name}`,
      ],
      opts,
    );
    chmodSync(join(out, 'key.pem'), 0o600);
    await run(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        join(caDir, 'ca.pem'),
        '-CAkey',
        join(caDir, 'ca-key.pem'),
        '-CAcreateserial',
        '-days',
        '825',
        '-out',
        join(out, 'cert.pem'),
        '-extfile',
        ext,
      ],
      opts,
    );
  } finally {
    rmSync(csr, { force: true });
    rmSync(ext, { force: true });
  }
}

/** A new API token, written to a file of mode 0600. */
export function makeToken(path: string): void {
  writeFileSync(path, randomBytes(32).toString('base64url') + '\n', { mode: 0o600 });
  chmodSync(path, 0o600);
}

export function agentUrl(host: AgentHost): string {
  return `https://${isIP(host.address) === 6 ? `[${host.address}]` : host.address}:${host.port}`;
}

/**
 * `reseed agent init`: for each host a directory to copy to it (its certificate and key, the CA,
 * its token, the tokens of its peers, and a config.json to finish: mysql, datadir, service,
 * serve and receive), and a client registry (agents.json) for the machine that runs the CLI.
 */
export async function initAgents(hosts: AgentHost[], out: string, signal?: AbortSignal): Promise<string[]> {
  if (hosts.length === 0) throw new ReseedError('USAGE', '--hosts names no host');
  const names = new Set<string>();
  for (const h of hosts) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(h.name))
      throw new ReseedError('USAGE', `bad host name "${h.name}"`);
    if (names.has(h.name)) throw new ReseedError('USAGE', `host ${h.name} is named twice`);
    names.add(h.name);
  }
  if (existsSync(out))
    throw new ReseedError(
      'USAGE',
      `${out} exists: agent init makes a new directory and never overwrites one`,
    );
  mkdirSync(out, { recursive: true, mode: 0o700 });
  const made: string[] = [];
  try {
    await makeCa(join(out, 'ca'), signal);
    for (const h of hosts) {
      const dir = join(out, h.name);
      await makeHostCert(join(out, 'ca'), h, dir, signal);
      copyFileSync(join(out, 'ca', 'ca.pem'), join(dir, 'ca.pem'));
      makeToken(join(dir, 'token'));
    }
    // The CLI's own certificate: the agents require one (mutual TLS).
    await makeHostCert(
      join(out, 'ca'),
      { name: 'reseed-cli', address: '127.0.0.1', port: 0 },
      join(out, 'cli'),
      signal,
    );
    const registry: Record<string, RegistryEntry> = {};
    for (const h of hosts) {
      const dir = join(out, h.name);
      mkdirSync(join(dir, 'peers'), { mode: 0o700 });
      const peers: Record<string, { url: string; tokenFile: string }> = {};
      for (const p of hosts.filter((x) => x.name !== h.name)) {
        copyFileSync(join(out, p.name, 'token'), join(dir, 'peers', `${p.name}.token`));
        chmodSync(join(dir, 'peers', `${p.name}.token`), 0o600);
        peers[p.name] = { url: agentUrl(p), tokenFile: `peers/${p.name}.token` };
      }
      const config = {
        name: h.name,
        listen: { host: '0.0.0.0', port: h.port },
        stateDir: '/var/lib/reseed',
        tokenFile: 'token',
        tls: { cert: 'cert.pem', key: 'key.pem', ca: 'ca.pem', requireClientCert: true },
        mysql: { uri: 'mysql://root@localhost', defaultsFile: '/etc/reseed/my.cnf' },
        datadir: '/var/lib/mysql',
        service: {
          kind: 'systemd',
          unit: 'mariadb.service',
          listen: { socketPath: '/run/mysqld/mysqld.sock' },
        },
        serve: ['/var/lib/mysql'],
        receive: ['/var/lib/reseed'],
        peers,
      };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
      registry[h.name] = {
        url: agentUrl(h),
        tokenFile: `${h.name}/token`,
        ca: 'ca/ca.pem',
        cert: 'cli/cert.pem',
        key: 'cli/key.pem',
      };
      made.push(dir);
    }
    writeFileSync(join(out, 'agents.json'), JSON.stringify({ agents: registry }, null, 2) + '\n', {
      mode: 0o600,
    });
    return made;
  } catch (err) {
    rmSync(out, { recursive: true, force: true });
    throw err;
  }
}
