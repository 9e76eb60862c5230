import { readFileSync, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ReseedError } from '../errors.js';

/**
 * TLS for a connection, as the MySQL clients' --ssl-mode names it: `required` encrypts without
 * checking the server's certificate, `verify-ca` also checks it was issued by `ca`, and
 * `verify-identity` also checks it names the host connected to. Paths, never key material.
 */
export interface TlsSettings {
  mode: 'required' | 'verify-ca' | 'verify-identity';
  ca?: string;
  cert?: string;
  key?: string;
}

export const SSL_MODES = ['disabled', 'required', 'verify-ca', 'verify-identity'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** TLS options as given (URI, command line or option file), before defaults are applied. */
export interface TlsOptions {
  mode?: SslMode;
  ca?: string;
  cert?: string;
  key?: string;
}

/** Where and as whom to connect. `password` is held only in memory, never logged or journaled. */
export interface Endpoint {
  host: string;
  port: number;
  socketPath?: string;
  user: string;
  password?: string;
  /** absent: no TLS */
  tls?: TlsSettings;
}

/** What the journal and logs may keep of an endpoint: everything but the password. */
export interface PublicEndpoint {
  host: string;
  port: number;
  socketPath?: string;
  user: string;
  tls?: TlsSettings;
}

export function publicEndpoint(e: Endpoint): PublicEndpoint {
  const out: PublicEndpoint = { host: e.host, port: e.port, user: e.user };
  if (e.socketPath) out.socketPath = e.socketPath;
  if (e.tls) out.tls = e.tls;
  return out;
}

export function parseSslMode(text: string, where: string): SslMode {
  const mode = text.toLowerCase().replaceAll('_', '-') as SslMode;
  if (!SSL_MODES.includes(mode)) {
    throw new ReseedError('USAGE', `unknown ssl-mode "${text}" in ${where} (known: ${SSL_MODES.join(', ')})`);
  }
  return mode;
}

/**
 * The TLS settings from option sources, most specific first: each of mode, ca, cert and key comes
 * from the first source that sets it. With no mode, a CA means verify-ca (as in the MySQL
 * client) and a client certificate means required; with neither, no TLS.
 */
export function resolveTls(...sources: (TlsOptions | undefined)[]): TlsSettings | undefined {
  const pick = <K extends keyof TlsOptions>(k: K): TlsOptions[K] =>
    sources.find((s) => s?.[k] !== undefined)?.[k];
  const ca = pick('ca');
  const cert = pick('cert');
  const key = pick('key');
  const mode = pick('mode') ?? (ca ? 'verify-ca' : cert ? 'required' : 'disabled');
  if (mode === 'disabled') return undefined;
  if (mode !== 'required' && !ca) {
    throw new ReseedError(
      'USAGE',
      `ssl-mode ${mode} checks the server's certificate: give its CA with --ssl-ca`,
    );
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new ReseedError('USAGE', 'a client certificate needs both --ssl-cert and --ssl-key');
  }
  const tls: TlsSettings = { mode };
  if (ca) tls.ca = ca;
  if (cert) tls.cert = cert;
  if (key) tls.key = key;
  return tls;
}

export function describeEndpoint(e: PublicEndpoint): string {
  return e.socketPath
    ? `${e.user}@${e.host}:${e.port} (socket ${e.socketPath})`
    : `${e.user}@${e.host}:${e.port}${e.tls ? ` (TLS ${e.tls.mode})` : ''}`;
}

export interface ParsedUri {
  endpoint: { host: string; port: number; socketPath?: string; user?: string };
  password?: string;
  tls: TlsOptions;
}

const URI_OPTIONS = ['socket', 'ssl-mode', 'ssl-ca', 'ssl-cert', 'ssl-key'];

/**
 * mysql://[user[:password]@]host[:port][/][?socket=/path][&ssl-mode=...&ssl-ca=/path...]. A
 * password in the URI works but is visible in the process list until we scrub it; callers warn
 * about it.
 */
export function parseUri(uri: string): ParsedUri {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new ReseedError('USAGE', `not a server URI: ${maskUri(uri)} (expected mysql://user@host:port)`);
  }
  if (url.protocol !== 'mysql:' && url.protocol !== 'mariadb:') {
    throw new ReseedError('USAGE', `unsupported URI scheme ${url.protocol} in ${maskUri(uri)}: use mysql://`);
  }
  if (url.pathname && url.pathname !== '/' && url.pathname !== '') {
    throw new ReseedError('USAGE', `the URI ${maskUri(uri)} names a database; name schemas with --schemas`);
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost';
  const port = url.port ? Number(url.port) : 3306;
  const endpoint: ParsedUri['endpoint'] = { host, port };
  if (url.username) endpoint.user = decodeURIComponent(url.username);
  const socket = url.searchParams.get('socket');
  if (socket) endpoint.socketPath = socket;
  for (const key of url.searchParams.keys()) {
    if (!URI_OPTIONS.includes(key)) {
      throw new ReseedError('USAGE', `unknown URI option "${key}" (known: ${URI_OPTIONS.join(', ')})`);
    }
  }
  const tls: TlsOptions = {};
  const mode = url.searchParams.get('ssl-mode');
  if (mode) tls.mode = parseSslMode(mode, maskUri(uri));
  for (const k of ['ca', 'cert', 'key'] as const) {
    const v = url.searchParams.get(`ssl-${k}`);
    if (v) tls[k] = v;
  }
  const out: ParsedUri = { endpoint, tls };
  if (url.password) out.password = decodeURIComponent(url.password);
  return out;
}

/** The URI with any password replaced, for messages and the journal. */
export function maskUri(uri: string): string {
  return uri.replace(/^([a-z]+:\/\/[^:@/]*):[^@/]*@/i, '$1:***@');
}

/** [client]-style option file values reseed understands. */
export interface OptionFileValues {
  user?: string;
  password?: string;
  host?: string;
  port?: number;
  socket?: string;
  tls: TlsOptions;
}

const OPTION_GROUPS = new Set(['client', 'client-server', 'client-mariadb', 'mysql', 'mariadb-client']);

/** Reads the [client] groups of a MySQL option file (later groups win, as in the client). */
export function readOptionFile(path: string): OptionFileValues {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ReseedError('CONFIG', `cannot read option file ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const values: OptionFileValues = { tls: {} };
  let inGroup = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const group = /^\[(.+)\]$/.exec(line);
    if (group) {
      inGroup = OPTION_GROUPS.has(group[1]!.trim().toLowerCase());
      continue;
    }
    if (!inGroup) continue;
    const kv = /^([A-Za-z0-9_-]+)\s*(?:=\s*(.*))?$/.exec(line);
    if (!kv) continue;
    const key = kv[1]!.toLowerCase().replaceAll('-', '_');
    const value = unquote(kv[2] ?? '');
    if (key === 'user') values.user = value;
    else if (key === 'password') values.password = value;
    else if (key === 'host') values.host = value;
    else if (key === 'port') values.port = Number(value);
    else if (key === 'socket') values.socket = value;
    else if (key === 'ssl_ca') values.tls.ca = value;
    else if (key === 'ssl_cert') values.tls.cert = value;
    else if (key === 'ssl_key') values.tls.key = value;
    else if (key === 'ssl_mode') values.tls.mode = parseSslMode(value, path);
    // MariaDB's client spelling: ssl (on), ssl-verify-server-cert (check the certificate and host).
    else if (key === 'ssl' && !/^(0|off|false)$/i.test(value)) values.tls.mode ??= 'required';
    else if (key === 'ssl_verify_server_cert' && !/^(0|off|false)$/i.test(value))
      values.tls.mode = 'verify-identity';
  }
  return values;
}

function unquote(value: string): string {
  const m = /^(['"])(.*)\1$/.exec(value);
  return m ? m[2]! : value;
}

export interface CredentialSources {
  /** The side's name in environment variables: RESEED_DONOR_PASSWORD, RESEED_JOINER_PASSWORD. */
  side: 'donor' | 'joiner';
  /** --donor-defaults-file / --joiner-defaults-file */
  sideDefaultsFile?: string | undefined;
  /** --defaults-file, shared by both sides */
  defaultsFile?: string | undefined;
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** --ssl-mode, --ssl-ca, --ssl-cert, --ssl-key: both sides, below a URI's own */
  tls?: TlsOptions | undefined;
}

/**
 * Resolves an endpoint the way the MySQL clients do, most specific first:
 * URI password, RESEED_<SIDE>_PASSWORD, --<side>-defaults-file, MYSQL_PWD, --defaults-file,
 * ~/.my.cnf. The user likewise: URI, side option file, shared option file, then the login name.
 */
export function resolveEndpoint(
  uri: string,
  sources: CredentialSources,
): { endpoint: Endpoint; uriHadPassword: boolean } {
  const parsed = parseUri(uri);
  const env = sources.env ?? process.env;
  const files: OptionFileValues[] = [];
  if (sources.sideDefaultsFile) files.push(readOptionFile(sources.sideDefaultsFile));
  const shared = sources.defaultsFile ?? defaultOptionFile(sources.home ?? homedir());
  const sharedValues = shared ? readOptionFile(shared) : { tls: {} };
  const sideValues = files[0] ?? { tls: {} };
  const sideEnv = env[`RESEED_${sources.side.toUpperCase()}_PASSWORD`];
  const password =
    parsed.password ?? sideEnv ?? sideValues.password ?? env.MYSQL_PWD ?? sharedValues.password ?? undefined;
  const user = parsed.endpoint.user ?? sideValues.user ?? sharedValues.user ?? env.USER ?? 'root';
  const endpoint: Endpoint = { ...parsed.endpoint, user };
  if (!endpoint.socketPath && endpoint.host === 'localhost') {
    const socket = sideValues.socket ?? sharedValues.socket;
    if (socket) endpoint.socketPath = socket;
  }
  if (password !== undefined) endpoint.password = password;
  const tls = resolveTls(parsed.tls, sources.tls, sideValues.tls, sharedValues.tls);
  if (tls) endpoint.tls = tls;
  return { endpoint, uriHadPassword: parsed.password !== undefined };
}

function defaultOptionFile(home: string): string | undefined {
  const path = join(home, '.my.cnf');
  return existsSync(path) ? path : undefined;
}
