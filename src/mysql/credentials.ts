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
  // Before the mode: a key alone would otherwise mean "no TLS", and be silently ignored.
  if ((cert === undefined) !== (key === undefined)) {
    throw new ReseedError('USAGE', 'a client certificate needs both --ssl-cert and --ssl-key');
  }
  const mode = pick('mode') ?? (ca ? 'verify-ca' : cert ? 'required' : 'disabled');
  if (mode === 'disabled') return undefined;
  if (mode !== 'required' && !ca) {
    throw new ReseedError(
      'USAGE',
      `ssl-mode ${mode} checks the server's certificate: give its CA with --ssl-ca`,
    );
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

const URI_SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

const usage = (message: string) => new ReseedError('USAGE', message);

/** How to write what a URI cannot hold as is; passing the password elsewhere is the better advice. */
const ENCODING_ADVICE =
  "percent-encode the user, password and socket path ('@' as %40, '/' as %2F, '?' as %3F, '#' as %23, '%' as %25), or better pass the password by RESEED_DONOR_PASSWORD / RESEED_JOINER_PASSWORD, MYSQL_PWD or an option file";

/**
 * mysql://[user[:password]@]host[:port][/][?socket=/path][&ssl-mode=...&ssl-ca=/path...]. A
 * password in the URI works but is visible in the process list until we scrub it; callers warn
 * about it.
 *
 * The user and password must be percent-encoded. An unencoded '@', '/', '?' or '#' in them
 * leaves no sure way to tell where the password ends, so any '@' other than the one before the
 * host is refused rather than guessed at (a guess would send part of the password as a host
 * name, and print it). Messages show the URI only through maskUri.
 */
export function parseUri(uri: string): ParsedUri {
  const masked = maskUri(uri);
  const scheme = URI_SCHEME.exec(uri);
  if (!scheme) throw usage(`not a server URI: ${masked} (expected mysql://user@host:port)`);
  if (!['mysql', 'mariadb'].includes(scheme[1]!.toLowerCase())) {
    throw usage(`unsupported URI scheme ${scheme[1]}: in ${masked}: use mysql://`);
  }
  const port = authorityPort(uri.slice(scheme[0].length), masked);
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw usage(`not a server URI: ${masked} (expected mysql://user@host:port)`);
  }
  if (url.pathname && url.pathname !== '/' && url.pathname !== '') {
    throw usage(`the URI ${masked} names a database; name schemas with --schemas`);
  }
  const endpoint: ParsedUri['endpoint'] = { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port };
  let user: string;
  let password: string;
  try {
    user = decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
  } catch {
    throw usage(`a '%' in the user or password of ${masked} starts no valid escape: ${ENCODING_ADVICE}`);
  }
  if (user) endpoint.user = user;
  const socket = url.searchParams.get('socket');
  if (socket) endpoint.socketPath = socket;
  for (const key of url.searchParams.keys()) {
    if (!URI_OPTIONS.includes(key)) {
      throw usage(`unknown URI option "${key}" (known: ${URI_OPTIONS.join(', ')})`);
    }
  }
  const tls: TlsOptions = {};
  const mode = url.searchParams.get('ssl-mode');
  if (mode) tls.mode = parseSslMode(mode, masked);
  for (const k of ['ca', 'cert', 'key'] as const) {
    const v = url.searchParams.get(`ssl-${k}`);
    if (v) tls[k] = v;
  }
  const out: ParsedUri = { endpoint, tls };
  if (password) out.password = password;
  return out;
}

/**
 * Checks the text after "scheme://" as written, before the URL parser can misread it, and
 * returns the port. The authority ends at the first '/', '?' or '#', as for the URL parser.
 */
function authorityPort(rest: string, masked: string): number {
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const at = rest.lastIndexOf('@');
  if (at !== rest.indexOf('@') || at >= authority.length) {
    throw usage(`an '@' in ${masked} is not percent-encoded: ${ENCODING_ADVICE}`);
  }
  const hostPort = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(authority.slice(at + 1))!;
  if (hostPort[1] === '') throw usage(`no host in ${masked} (expected mysql://user@host:port)`);
  if (!hostPort[2]) return 3306;
  if (!/^\d+$/.test(hostPort[2])) throw usage(`the port of ${masked} is not a number`);
  const port = Number(hostPort[2]);
  if (port < 1 || port > 65535) throw usage(`the port of ${masked} is not between 1 and 65535`);
  return port;
}

/**
 * The URI with any password replaced, for messages, the journal and the process title; it takes
 * any text (also `--from=mysql://...` or a URI without its scheme). The password runs from the
 * first ':' to the last '@', since a password may hold both: when unsure, more is hidden, never
 * less. With no '@' at all, "user:password" with the host forgotten reads as a host with a port
 * that is no number, and is hidden too.
 */
export function maskUri(uri: string): string {
  const scheme = /^[^:@]*?[a-z][a-z0-9+.-]*:\/\//i.exec(uri);
  const prefix = scheme ? scheme[0] : '';
  const rest = uri.slice(prefix.length);
  const at = rest.lastIndexOf('@');
  if (at !== -1) {
    const colon = rest.indexOf(':');
    return colon !== -1 && colon < at ? `${prefix}${rest.slice(0, colon + 1)}***${rest.slice(at)}` : uri;
  }
  const userOnly = scheme && /^([^:[\]/?#]*):(?!\d*(?:[/?#]|$))/.exec(rest);
  return userOnly ? `${prefix}${userOnly[1]}:***` : uri;
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
  // A file that was named is read even when its name is empty: a typo is refused, never ignored.
  if (sources.sideDefaultsFile !== undefined) files.push(readOptionFile(sources.sideDefaultsFile));
  const shared = sources.defaultsFile ?? defaultOptionFile(sources.home ?? homedir());
  const sharedValues = shared !== undefined ? readOptionFile(shared) : { tls: {} };
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
