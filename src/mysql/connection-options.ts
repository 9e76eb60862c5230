import type { ConnectionOptions } from 'mysql2';
import { readFileSync } from 'node:fs';
import { ReseedError, errorMessage } from '../errors.js';
import type { Endpoint, TlsSettings } from './credentials.js';

/** mysql2's (Node's) TLS options for `tls`: the files are read here, at each connection. */
function sslOptions(tls: TlsSettings): NonNullable<ConnectionOptions['ssl']> {
  const read = (what: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new ReseedError('CONFIG', `cannot read the TLS ${what} ${path}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
  };
  // required: encrypted, certificate unchecked; verify-ca: its chain checked; verify-identity:
  // its chain and the host name (or IP address) it names.
  const ssl: NonNullable<ConnectionOptions['ssl']> & { verifyIdentity?: boolean } = {
    rejectUnauthorized: tls.mode !== 'required',
    verifyIdentity: tls.mode === 'verify-identity',
  };
  const ca = read('CA', tls.ca);
  const cert = read('certificate', tls.cert);
  const key = read('key', tls.key);
  if (ca) ssl.ca = ca;
  if (cert) ssl.cert = cert;
  if (key) ssl.key = key;
  return ssl;
}

/** What to tell the operator when connecting to `endpoint` failed with `err`. */
export function connectHints(err: unknown, endpoint: Endpoint): string[] {
  const message = errorMessage(err);
  const addTls =
    'add --ssl-mode required, or --ssl-ca <CA file> to check its certificate too (docs/credentials.md)';
  if (/insecure transport|ssl|tls|certificate|self.signed|secure connection/i.test(message)) {
    return endpoint.tls
      ? [
          "check the TLS settings: --ssl-ca must be the CA that signed the server's certificate, and verify-identity needs the host named in it (docs/credentials.md)",
        ]
      : [`the server wants TLS: ${addTls}`];
  }
  const hints = ['check the host, port, user and password (see docs/credentials.md)'];
  // MariaDB answers a plain connection it refuses for want of TLS with "Access denied" too.
  if (!endpoint.tls && (err as { errno?: number }).errno === 1045) {
    hints.push(`if the server requires TLS (require_secure_transport=ON): ${addTls}`);
  }
  return hints;
}

/** mysql2's options for `endpoint`; the TLS files are read here, at each call. */
export function connectionOptions(endpoint: Endpoint, connectTimeoutMs: number): ConnectionOptions {
  const config: ConnectionOptions = {
    user: endpoint.user,
    password: endpoint.password ?? '',
    connectTimeout: connectTimeoutMs,
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: true,
    decimalNumbers: false,
    multipleStatements: false,
    charset: 'utf8mb4_general_ci',
    infileStreamFactory: () => {
      throw new ReseedError('INTERNAL', 'LOAD DATA LOCAL without a stream');
    },
  };
  if (endpoint.tls) config.ssl = sslOptions(endpoint.tls);
  if (endpoint.socketPath) config.socketPath = endpoint.socketPath;
  else {
    config.host = endpoint.host;
    config.port = endpoint.port;
  }
  return config;
}
