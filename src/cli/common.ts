import { z } from 'zod';
import { EXIT_CODES, ReseedError, errorMessage, isReseedError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';
import { maskUri, parseSslMode, readOptionFile, resolveEndpoint } from '../mysql/credentials.js';
import type { TlsOptions } from '../mysql/credentials.js';
import type { Endpoint } from '../mysql/credentials.js';

/** "10s", "500ms", "5m", "1h" or plain seconds, to milliseconds; `option` names the flag in messages. */
export function parseDuration(text: string, option?: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m)
    throw new ReseedError(
      'USAGE',
      `${option ? `${option}: ` : ''}not a duration: "${text}" (examples: 500ms, 10s, 5m, 1h)`,
    );
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!);
}

export function parsePositiveInt(name: string, text: string, max = 1_000_000_000): number {
  const r = z.coerce.number().int().min(1).max(max).safeParse(text);
  if (!r.success)
    throw new ReseedError('USAGE', `${name} takes a whole number from 1 to ${max}, not "${text}"`);
  return r.data;
}

/**
 * The names of --schemas. Given but naming nothing ("", ",") is refused: taken as "every
 * schema", a list emptied by a shell variable would widen the operation to the whole server.
 */
export function parseList(text: string | undefined): string[] {
  const names = (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (text !== undefined && names.length === 0)
    throw new ReseedError('USAGE', '--schemas names no schema: leave it out for every user schema');
  return names;
}

export function parseHostPort(text: string, option: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(text.trim());
  const port = m?.[2] ? Number(m[2]) : 3306;
  if (!m || port < 1 || port > 65535)
    throw new ReseedError('USAGE', `${option} takes host[:port] with a port from 1 to 65535, not "${text}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export interface SideOptions {
  defaultsFile?: string;
  donorDefaultsFile?: string;
  joinerDefaultsFile?: string;
  sslMode?: string;
  sslCa?: string;
  sslCert?: string;
  sslKey?: string;
}

/** --ssl-mode, --ssl-ca, --ssl-cert and --ssl-key as TLS options for both sides. */
function tlsFlags(o: SideOptions): TlsOptions {
  const tls: TlsOptions = {};
  if (o.sslMode) tls.mode = parseSslMode(o.sslMode, '--ssl-mode');
  if (o.sslCa !== undefined) tls.ca = fileName(o.sslCa, '--ssl-ca');
  if (o.sslCert !== undefined) tls.cert = fileName(o.sslCert, '--ssl-cert');
  if (o.sslKey !== undefined) tls.key = fileName(o.sslKey, '--ssl-key');
  return tls;
}

/** An empty file name (a shell variable left unset) is refused, not taken as "no such option". */
export function fileName(text: string, option: string): string {
  if (text.trim() === '') throw new ReseedError('USAGE', `${option} names no file`);
  return text;
}

/** Resolves both endpoints and warns about a password in a URI (visible in the process list). */
export function resolveSides(
  from: string,
  to: string,
  o: SideOptions,
  warn: (msg: string) => void,
): { donor: Endpoint; joiner: Endpoint } {
  let warned = false;
  const once = (msg: string) => {
    if (!warned) warn(msg);
    warned = true;
  };
  return { donor: resolveSide('donor', from, o, once), joiner: resolveSide('joiner', to, o, once) };
}

/** One side's endpoint, with the same sources and warning as resolveSides. */
export function resolveSide(
  side: 'donor' | 'joiner',
  uri: string,
  o: SideOptions,
  warn: (msg: string) => void,
): Endpoint {
  const r = resolveEndpoint(uri, {
    side,
    sideDefaultsFile: side === 'donor' ? o.donorDefaultsFile : o.joinerDefaultsFile,
    defaultsFile: o.defaultsFile,
    tls: tlsFlags(o),
  });
  if (r.uriHadPassword) {
    warn(
      'a password in a URI is visible in the process list: prefer MYSQL_PWD, RESEED_DONOR_PASSWORD/RESEED_JOINER_PASSWORD or an option file',
    );
    scrubProcessTitle();
  }
  return r.endpoint;
}

/** Rewrites our command line as `ps` shows it, with URI passwords masked. */
export function scrubProcessTitle(): void {
  try {
    process.title = ['reseed', ...process.argv.slice(2).map((a) => maskUri(a))].join(' ');
  } catch {
    // not every platform lets a process rename itself
  }
}

/**
 * RESEED_REPLICATION_PASSWORD wins over --replication-defaults-file, but a file that was named is
 * read all the same: a typo in its name is refused, never ignored.
 */
export function replicationPassword(defaultsFile: string | undefined): string | undefined {
  const fromFile = defaultsFile === undefined ? undefined : readOptionFile(defaultsFile).password;
  return process.env.RESEED_REPLICATION_PASSWORD ?? fromFile;
}

export function logger(verbose: boolean | undefined): Logger {
  // What the operator must see travels as progress events and errors; the log is for --verbose.
  return createLogger({ level: verbose ? 'info' : (process.env.RESEED_LOG_LEVEL ?? 'silent') });
}

/**
 * Ctrl-C and SIGTERM abort the operation, which then rolls back through its journal. A second
 * Ctrl-C exits at once, leaving the journal for `reseed recover`. `beforeMessage` runs before
 * anything is printed (it ends a live progress display, which would draw over the message).
 */
export function abortOnSignals(beforeMessage: () => void = () => {}): {
  signal: AbortSignal;
  dispose(): void;
} {
  const controller = new AbortController();
  let count = 0;
  const handler = (name: NodeJS.Signals) => {
    count++;
    beforeMessage();
    if (count === 1) {
      process.stderr.write(
        `\n${name}: stopping and undoing what was changed (press Ctrl-C again to exit at once)\n`,
      );
      controller.abort(new ReseedError('ABORTED', `interrupted by ${name}`));
    } else {
      process.stderr.write(`${name} again: exiting now; run \`reseed recover\` to finish the undo\n`);
      process.exit(EXIT_CODES.ABORTED);
    }
  };
  // SIGHUP: the terminal went away (ssh dropped, window closed); undo as for Ctrl-C. Writing to
  // a terminal that is gone fails: that must not end the process before its undo.
  process.stderr.on('error', () => undefined);
  process.stdout.on('error', () => undefined);
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  process.on('SIGHUP', handler);
  return {
    signal: controller.signal,
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
      process.off('SIGHUP', handler);
    },
  };
}

/** Prints an error for the operator and returns the exit code. */
export function reportError(err: unknown, json: boolean): number {
  const code: ErrorCode = isReseedError(err) ? err.code : ((err as { code?: ErrorCode }).code ?? 'INTERNAL');
  const exit = EXIT_CODES[code] ?? 1;
  const hints: string[] = isReseedError(err) ? err.hints : ((err as { hints?: string[] }).hints ?? []);
  const message = errorMessage(err);
  if (json) {
    process.stdout.write(
      JSON.stringify({ at: new Date().toISOString(), type: 'error', code, exitCode: exit, message, hints }) +
        '\n',
    );
  }
  process.stderr.write(`reseed: ${message}\n`);
  for (const h of hints) process.stderr.write(`  ${h}\n`);
  if (code === 'INTERNAL' && err instanceof Error && err.stack && process.env.RESEED_DEBUG)
    process.stderr.write(err.stack + '\n');
  return exit;
}
