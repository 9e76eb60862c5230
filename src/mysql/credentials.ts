import { readFileSync, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ReseedError } from '../errors.js';

/** Where and as whom to connect. `password` is held only in memory, never logged or journaled. */
export interface Endpoint {
  host: string;
  port: number;
  socketPath?: string;
  user: string;
  password?: string;
}

/** What the journal and logs may keep of an endpoint: everything but the password. */
export interface PublicEndpoint {
  host: string;
  port: number;
  socketPath?: string;
  user: string;
}

export function publicEndpoint(e: Endpoint): PublicEndpoint {
  const out: PublicEndpoint = { host: e.host, port: e.port, user: e.user };
  if (e.socketPath) out.socketPath = e.socketPath;
  return out;
}

export function describeEndpoint(e: PublicEndpoint): string {
  return e.socketPath
    ? `${e.user}@${e.host}:${e.port} (socket ${e.socketPath})`
    : `${e.user}@${e.host}:${e.port}`;
}

export interface ParsedUri {
  endpoint: { host: string; port: number; socketPath?: string; user?: string };
  password?: string;
}

/**
 * mysql://[user[:password]@]host[:port][/][?socket=/path]. A password in the URI works but is
 * visible in the process list until we scrub it; callers warn about it.
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
    if (key !== 'socket') throw new ReseedError('USAGE', `unknown URI option "${key}" (known: socket)`);
  }
  const out: ParsedUri = { endpoint };
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
  const values: OptionFileValues = {};
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
  const sharedValues = shared ? readOptionFile(shared) : {};
  const sideValues = files[0] ?? {};
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
  return { endpoint, uriHadPassword: parsed.password !== undefined };
}

function defaultOptionFile(home: string): string | undefined {
  const path = join(home, '.my.cnf');
  return existsSync(path) ? path : undefined;
}
