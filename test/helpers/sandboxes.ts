import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../../src/mysql/server.js';
import type { Server } from '../../src/mysql/server.js';
import { sandboxEndpoint, sandboxRemove, sandboxUp, sandboxUri } from '../../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../../src/sandbox/sandbox.js';

const base = process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test';
process.env.RESEED_SANDBOX_DIR = join(base, 'sandboxes');
// Per test file (each runs in its own process): `recover` must see only this file's journals.
process.env.RESEED_STATE_DIR = join(base, 'state', String(process.pid));
mkdirSync(process.env.RESEED_SANDBOX_DIR, { recursive: true });

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface TestServer {
  info: SandboxInfo;
  uri: string;
  sql(statement: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  session(): Promise<Server>;
}

const started: string[] = [];

export async function startServer(
  name: string,
  extraConfig: string[] = [],
  o: { fs?: 'btrfs' | 'zfs' } = {},
): Promise<TestServer> {
  const unique = `${name}-${process.pid}`;
  const info = await sandboxUp(unique, {
    extraConfig,
    bufferPool: '128M',
    ...(o.fs ? { fs: o.fs, fsSize: '2G' } : {}),
  });
  started.push(unique);
  const session = () => connect(sandboxEndpoint(info));
  return {
    info,
    uri: sandboxUri(info),
    session,
    async sql(statement, params = []) {
      const s = await session();
      try {
        return await s.query(statement, params);
      } finally {
        await s.close();
      }
    },
  };
}

export async function stopAll(): Promise<void> {
  // A sandbox that cannot be removed (a pool still busy, a mount in use) is said, not hidden.
  for (const name of started.splice(0))
    await sandboxRemove(name).catch((err: unknown) =>
      process.stderr.write(`stopAll: sandbox ${name} not removed: ${String(err)}\n`),
    );
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs bin/reseed as a user would; `onStderr` sees output as it arrives (to send a signal). When
 * `signal` aborts (AbortSignal.timeout(...) bounds a run), the child is killed with SIGKILL and
 * the promise rejects with an AbortError.
 */
export function reseed(
  args: string[],
  options: {
    env?: Record<string, string>;
    onStderr?: (text: string, pid: number) => void;
    signal?: AbortSignal;
  } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'reseed'), ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.signal ? { signal: options.signal, killSignal: 'SIGKILL' as const } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      options.onStderr?.(stderr, child.pid!);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Sessions on a server other than the caller's own, for "nothing of ours is left" checks. */
export async function otherSessions(server: TestServer): Promise<Record<string, unknown>[]> {
  return server.sql(
    `SELECT ID, USER, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST
      WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID')
        AND USER <> 'system user'`,
  );
}

export async function schemas(server: TestServer): Promise<string[]> {
  const rows = await server.sql(
    "SELECT SCHEMA_NAME AS s FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql','information_schema','performance_schema','sys') ORDER BY 1",
  );
  return rows.map((r) => String(r.s));
}

export async function createReplUser(server: TestServer): Promise<void> {
  await server.sql("CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-secret'");
  await server.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'");
}

export const REPL_ENV = { RESEED_REPLICATION_PASSWORD: 'repl-secret' };

/** `clone --from donor --to joiner --replication-user repl`, then `extra`. */
export function cloneArgs(donor: TestServer, joiner: TestServer, ...extra: string[]): string[] {
  return ['clone', '--from', donor.uri, '--to', joiner.uri, '--replication-user', 'repl', ...extra];
}

/** `clone --from donor --to joiner --no-replicate`, then `extra`: a copy without replication. */
export function copyArgs(donor: TestServer, joiner: TestServer, ...extra: string[]): string[] {
  return ['clone', '--from', donor.uri, '--to', joiner.uri, '--no-replicate', ...extra];
}

/** Loads test/fixtures/FILE: one statement per line-terminated ';' (none has a ';' inside). */
export async function loadFixture(server: TestServer, file: string): Promise<void> {
  const s = await server.session();
  try {
    const text = readFileSync(join(ROOT, 'test', 'fixtures', file), 'utf8').replace(/^--.*$/gm, '');
    for (const stmt of text.split(/;\s*\n/)) if (stmt.trim()) await s.query(stmt);
  } finally {
    await s.close();
  }
}

/** The tables of every-type.sql, schema `types`. */
export const EVERY_TYPE_TABLES = [
  'types.ints',
  'types.nums',
  'types.strs',
  'types.times',
  'types.geo',
  'types.sparse',
  'types.composite',
  'types.ci_keys',
  'types.bin_keys',
  'types.latin_keys',
  'types.enum_keys',
  'types.no_key',
  'types.auto',
  'types.parts',
  'types.child',
  'types.docs',
  'types.from_seq',
  'types.not_innodb',
];

/** Every row version of every-type.sql's system-versioned tables, the same on both sides. */
export async function assertSameHistory(a: TestServer, b: TestServer): Promise<void> {
  for (const q of [
    'SELECT id, v, row_start, row_end FROM types.hist FOR SYSTEM_TIME ALL ORDER BY id, row_start',
    'SELECT id, v, s, e FROM types.hist_explicit FOR SYSTEM_TIME ALL ORDER BY id, s',
  ]) {
    const [x, y] = [await a.sql(q), await b.sql(q)];
    assert.ok(x.length > x.filter((r) => String(r.row_end ?? r.e).startsWith('2038')).length, 'has history');
    assert.deepEqual(y, x, q);
  }
}

/** Exact values, checked independently of reseed's own verify: CHECKSUM TABLE on both sides. */
export async function assertSameTables(a: TestServer, b: TestServer, tables: string[]): Promise<void> {
  for (const t of tables) {
    const [x] = await a.sql(`CHECKSUM TABLE ${t} EXTENDED`);
    const [y] = await b.sql(`CHECKSUM TABLE ${t} EXTENDED`);
    assert.equal(String(y!.Checksum), String(x!.Checksum), `CHECKSUM TABLE ${t}`);
  }
}
