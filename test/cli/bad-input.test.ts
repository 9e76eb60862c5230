import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT_CODES } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import { journalDir } from '../../src/journal/journal.js';
import {
  REPL_ENV,
  ROOT,
  cloneArgs,
  copyArgs,
  createReplUser,
  reseed,
  startServer,
  stopAll,
} from '../helpers/sandboxes.js';
import type { CliResult, TestServer } from '../helpers/sandboxes.js';
import { assertStateIs, serverState } from '../helpers/state.js';

/*
 * Bad input across every command (npm run build first). For each case: the exit code is one
 * docs/exit-codes.md lists and the one for that kind of input; stderr is one "reseed: " line
 * (after progress lines, if the command got that far), then only indented hints; nothing shows
 * internals (a stack, a TypeError, undefined); --json gives the same error as one JSON line; the
 * run ends within HANG_MS (else it is killed); and neither server, the journal directory nor
 * the sandbox directory changed.
 */

const HANG_MS = 30_000;

/** The codes in the table of docs/exit-codes.md. */
const DOCUMENTED = new Set(
  [...readFileSync(join(ROOT, 'docs', 'exit-codes.md'), 'utf8').matchAll(/^\| (\d+) +\|/gm)].map((m) =>
    Number(m[1]),
  ),
);

/** What a command prints to stderr before it fails: a phase ("- preflight") or a warning. */
const PROGRESS = /^(- [a-z]+(: .*)?| {2}warning: .*)$/;

interface Case {
  name: string;
  args: () => string[];
  exit: number;
  /** the error line after "reseed: " (for exit 0: stdout) */
  says: RegExp;
  /** the hint lines together, where the point is made there (preflight lists its problems) */
  hints?: RegExp;
  env?: Record<string, string>;
  /** text that must appear nowhere (a password) */
  hidden?: string[];
  /** a tighter bound than HANG_MS: refused "at once" */
  withinMs?: number;
  /** a known defect in files this suite does not change: the case runs and is reported, not failed */
  todo?: string;
  /** sets something up and returns its undo */
  arrange?: () => () => void;
}

let donor: TestServer;
let joiner: TestServer;
/** Both servers as they were before the first case. */
let initial: [Record<string, unknown>, Record<string, unknown>];
/** Files for recover and for --*-file options, and the sandbox directory every case runs with. */
const scratch = mkdtempSync(join(tmpdir(), 'reseed-bad-input-'));
const sandboxDir = join(scratch, 'sandboxes');
const files = {
  dir: join(scratch, 'a-directory'),
  empty: join(scratch, 'empty.jsonl'),
  text: join(scratch, 'notes.txt'),
  missing: join(scratch, 'no-such-file'),
};
const fileContents = { [files.empty]: '', [files.text]: 'not a journal\nsecond line' };

const D = () => donor.uri;
const J = () => joiner.uri;
const donorPort = () => donor.info.port;
const clone = (...extra: string[]) => cloneArgs(donor, joiner, ...extra);
const copyOnly = (...extra: string[]) => copyArgs(donor, joiner, ...extra);
const verify = (...extra: string[]) => ['verify', '--from', D(), '--to', J(), ...extra];
/** A port nothing listens on. */
const CLOSED = 'mysql://root@127.0.0.1:1';

function journals(): string[] {
  const dir = journalDir();
  return existsSync(dir) ? readdirSync(dir) : [];
}

async function run(c: Case): Promise<CliResult & { ms: number }> {
  const started = Date.now();
  const cleanup = c.arrange?.();
  try {
    const r = await reseed(c.args(), {
      env: { ...REPL_ENV, RESEED_SANDBOX_DIR: sandboxDir, ...c.env },
      signal: AbortSignal.timeout(HANG_MS),
    });
    return { ...r, ms: Date.now() - started };
  } catch (err) {
    if ((err as Error).name === 'AbortError') assert.fail(`hung: killed after ${HANG_MS / 1000} s`);
    throw err;
  } finally {
    cleanup?.();
  }
}

/** stderr of a refusal: progress lines, then "reseed: MESSAGE", then only indented hints. */
function errorOf(stderr: string): { message: string; hints: string[] } {
  const lines = stderr.replace(/\n$/, '').split('\n');
  let i = 0;
  while (i < lines.length - 1 && PROGRESS.test(lines[i]!)) i++;
  assert.match(lines[i] ?? '', /^reseed: \S/, `one "reseed: " line:\n${stderr}`);
  const hints = lines.slice(i + 1);
  for (const h of hints) assert.match(h, /^ {2}\S/, `only indented hints follow it:\n${stderr}`);
  return { message: lines[i]!.slice('reseed: '.length), hints: hints.map((h) => h.trim()) };
}

/** Under --json: the same error as the last line on stdout, after progress events only. */
function checkJson(r: CliResult, message: string, hints: string[]): void {
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const last = events.at(-1);
  assert.ok(last, 'an error line on stdout');
  assert.deepEqual(Object.keys(last), ['at', 'type', 'code', 'exitCode', 'message', 'hints']);
  assert.deepEqual(last, { at: last.at, type: 'error', code: last.code, exitCode: r.code, message, hints });
  assert.equal(EXIT_CODES[last.code as ErrorCode], r.code, `${String(last.code)} maps to exit ${r.code}`);
  for (const e of events.slice(0, -1)) assert.equal(e.type, 'phase', `only progress before it: ${r.stdout}`);
}

function checkOutput(c: Case, r: CliResult & { ms: number }): void {
  const shown = r.stdout + r.stderr;
  assert.ok(DOCUMENTED.has(r.code!), `exit ${r.code} is not in docs/exit-codes.md`);
  assert.equal(r.code, c.exit, `exit code; stderr:\n${r.stderr}`);
  for (const internal of [
    /^\s+at .+:\d+/m,
    /\b(TypeError|ReferenceError|RangeError|SyntaxError)\b/,
    /\[object Object\]/,
    /\bundefined\b/,
    /\bNaN\b/,
  ])
    assert.doesNotMatch(shown, internal, 'no internals shown');
  for (const secret of c.hidden ?? []) assert.ok(!shown.includes(secret), `"${secret}" is shown`);
  if (c.withinMs) assert.ok(r.ms < c.withinMs, `took ${r.ms} ms, more than ${c.withinMs}`);
  if (c.exit === 0) {
    assert.equal(r.stderr, '');
    assert.match(r.stdout, c.says);
    return;
  }
  const { message, hints } = errorOf(r.stderr);
  assert.match(message, c.says);
  assert.doesNotMatch(message, /[.?!] +[A-Z]/, 'one sentence: more belongs in a hint');
  if (c.hints) assert.match(hints.join('\n'), c.hints);
  if (c.args().includes('--json')) checkJson(r, message, hints);
  else assert.equal(r.stdout, '', 'nothing on stdout');
}

/** Nothing changed: both servers, the journal directory, the sandbox directory, the files given. */
async function assertNothingChanged(servers: typeof initial): Promise<void> {
  await assertStateIs(donor, servers[0]);
  await assertStateIs(joiner, servers[1]);
  assert.deepEqual(journals(), [], `no journal left in ${journalDir()}`);
  assert.ok(!existsSync(sandboxDir) || readdirSync(sandboxDir).length === 0, `nothing made in ${sandboxDir}`);
  for (const [path, text] of Object.entries(fileContents)) assert.equal(readFileSync(path, 'utf8'), text);
}

/** The value in double quotes, as a pattern. */
const quoted = (value: string) => `"${value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"`;

/** Refused before either server is reached (most of them before anything is read). */
// One case a line: a table reads better than what the formatter would make of it.
// prettier-ignore
const offline: Case[] = [
  // commander's own: one line, the same shape as ours
  { name: 'clone: unknown option', args: () => clone('--no-such-option'), exit: 2, says: /^unknown option '--no-such-option'$/ },
  { name: 'clone: misspelt option', args: () => clone('--paralel', '2'), exit: 2, says: /^unknown option '--paralel' \(did you mean --parallel\?\)$/ },
  { name: 'clone: no --from', args: () => ['clone', '--to', J()], exit: 2, says: /required option '--from <uri>' not specified/ },
  { name: 'clone: no --to', args: () => ['clone', '--from', D()], exit: 2, says: /required option '--to <uri>' not specified/ },
  // URIs
  { name: 'clone: --from with another scheme', args: () => ['clone', '--from', `http://127.0.0.1:${donorPort()}`, '--to', J()], exit: 2, says: /unsupported URI scheme http/ },
  { name: 'clone: --to without a host', args: () => ['clone', '--from', D(), '--to', 'mysql://root@:3306'], exit: 2, says: /no host in mysql:\/\/root@:3306/ },
  { name: 'clone: port 0', args: () => ['clone', '--from', 'mysql://root@127.0.0.1:0', '--to', J()], exit: 2, says: /port of .* is not between 1 and 65535/ },
  { name: 'clone: port 99999', args: () => ['clone', '--from', D(), '--to', 'mysql://root@127.0.0.1:99999'], exit: 2, says: /port of .* is not between 1 and 65535/ },
  { name: "clone: an unencoded '@' in the password", args: () => ['clone', '--from', `mysql://root:p@ss/1@127.0.0.1:${donorPort()}`, '--to', J()], exit: 2, says: /an '@' in mysql:\/\/root:\*\*\*@.* is not percent-encoded: .*%40/, hidden: ['p@ss', 'ss/1'] },
  { name: 'clone: a malformed %-escape in the password', args: () => ['clone', '--from', `mysql://root:se%zzcret@127.0.0.1:${donorPort()}`, '--to', J()], exit: 2, says: /a '%' in the user or password of .* starts no valid escape/, hidden: ['se%zzcret', 'zzcret'] },
  { name: 'clone: a URI naming a database', args: () => ['clone', '--from', `${D()}/app`, '--to', J()], exit: 2, says: /names a database; name schemas with --schemas/ },
  // numbers
  ...['0', '-1', 'abc', '65', '1.5'].map((v) => ({ name: `clone: --parallel ${v}`, args: () => clone('--parallel', v), exit: 2, says: new RegExp(`^--parallel takes a whole number from 1 to 64, not ${quoted(v)}$`) })),
  ...['0', 'abc'].map((v) => ({ name: `clone: --chunk-rows ${v}`, args: () => clone('--chunk-rows', v), exit: 2, says: new RegExp(`^--chunk-rows takes a whole number from 1 to \\d+, not ${quoted(v)}$`) })),
  // durations
  ...([
    ['--lock-wait-timeout', ['soon', '-1s']],
    ['--max-lock-time', ['soon', '']],
    ['--long-query', ['-1s', '']],
    ['--catchup-timeout', ['soon', '-1s', '']],
  ] as [string, string[]][]).flatMap(([option, values]) =>
    values.map((v) => ({ name: `clone: ${option} '${v}'`, args: () => clone(option, v), exit: 2, says: new RegExp(`^${option}: not a duration: ${quoted(v)}`) })),
  ),
  // choices
  ...[
    ['--method', 'rsync'],
    ['--lock-mode', 'sometimes'],
    ['--load-mode', 'fast'],
    ['--replicate-from', 'nobody'],
    ['--ssl-mode', 'bogus'],
  ].map(([option, v]) => ({ name: `clone: ${option} ${v}`, args: () => clone(option!, v!), exit: 2, says: new RegExp(`^option '${option} <\\w+>' argument '${v}' is invalid \\(allowed choices are [a-z, -]+\\)$`) })),
  // schemas
  { name: "clone: --schemas ''", args: () => clone('--schemas', ''), exit: 2, says: /^--schemas names no schema/ },
  { name: "clone: --schemas ','", args: () => clone('--schemas', ','), exit: 2, says: /^--schemas names no schema/ },
  // flags that mean nothing without replication
  ...[
    ['--replication-user', 'repl'],
    ['--replication-host', '127.0.0.1:3306'],
    ['--no-gtid'],
    ['--replicate-from', 'source'],
    ['--catchup-timeout', '1m'],
  ].map((flag) => ({ name: `clone: --no-replicate with ${flag.join(' ')}`, args: () => copyOnly(...flag), exit: 2, says: new RegExp(`^--no-replicate contradicts ${flag[0]}: drop it, or drop --no-replicate$`) })),
  ...['127.0.0.1:abc', '127.0.0.1:0', ''].map((v) => ({ name: `clone: --replication-host '${v}'`, args: () => clone('--replication-host', v), exit: 2, says: new RegExp(`^--replication-host takes host\\[:port\\] with a port from 1 to 65535, not ${quoted(v)}$`) })),
  // TLS and option files
  { name: 'clone: --ssl-mode verify-ca without --ssl-ca', args: () => clone('--ssl-mode', 'verify-ca'), exit: 2, says: /ssl-mode verify-ca checks the server's certificate: give its CA with --ssl-ca/ },
  { name: 'clone: --ssl-cert without --ssl-key', args: () => clone('--ssl-cert', files.text), exit: 2, says: /a client certificate needs both --ssl-cert and --ssl-key/ },
  { name: 'clone: --ssl-key without --ssl-cert', args: () => clone('--ssl-key', files.text), exit: 2, says: /a client certificate needs both --ssl-cert and --ssl-key/ },
  { name: 'clone: --ssl-ca names a missing file', args: () => clone('--ssl-ca', files.missing), exit: 2, says: /cannot read the TLS CA .*no-such-file/ },
  { name: 'clone: --defaults-file names a missing file', args: () => clone('--defaults-file', files.missing), exit: 2, says: /cannot read option file .*no-such-file/ },
  { name: 'clone: --replication-defaults-file names a missing file', args: () => clone('--replication-defaults-file', files.missing), exit: 2, says: /cannot read option file .*no-such-file/ },
  // --json: the same error as one JSON line
  { name: 'clone --json: unknown option', args: () => clone('--json', '--no-such-option'), exit: 2, says: /^unknown option '--no-such-option'$/ },
  { name: 'clone --json: --parallel 0', args: () => clone('--json', '--parallel', '0'), exit: 2, says: /^--parallel takes a whole number/ },
  { name: "clone --json: an unencoded '@'", args: () => ['clone', '--json', '--from', `mysql://root:p@ss@127.0.0.1:${donorPort()}`, '--to', J()], exit: 2, says: /is not percent-encoded/, hidden: ['p@ss'] },
  // verify
  { name: 'verify: unknown option', args: () => verify('--no-such-option'), exit: 2, says: /^unknown option '--no-such-option'$/ },
  { name: 'verify: --from with another scheme', args: () => ['verify', '--from', 'ftp://127.0.0.1', '--to', J()], exit: 2, says: /unsupported URI scheme ftp/ },
  { name: "verify: an unencoded '@'", args: () => ['verify', '--from', `mysql://root:p@ss@127.0.0.1:${donorPort()}`, '--to', J()], exit: 2, says: /is not percent-encoded/, hidden: ['p@ss'] },
  { name: 'verify: --parallel 0', args: () => verify('--parallel', '0'), exit: 2, says: /^--parallel takes a whole number from 1 to 64, not "0"$/ },
  { name: 'verify: --catchup-timeout soon', args: () => verify('--catchup-timeout', 'soon'), exit: 2, says: /not a duration: "soon"/ },
  { name: "verify: --schemas ''", args: () => verify('--schemas', ''), exit: 2, says: /^--schemas names no schema/ },
  { name: 'verify: --ssl-mode verify-identity without --ssl-ca', args: () => verify('--ssl-mode', 'verify-identity'), exit: 2, says: /give its CA with --ssl-ca/ },
  { name: 'verify --json: --chunk-rows 0', args: () => verify('--json', '--chunk-rows', '0'), exit: 2, says: /^--chunk-rows takes a whole number/ },
  // recover
  { name: 'recover --journal names a missing file', args: () => ['recover', '--journal', files.missing], exit: 2, says: /^--journal .*no-such-file does not exist$/ },
  { name: 'recover --journal names a directory', args: () => ['recover', '--journal', files.dir], exit: 2, says: /is a directory, not a journal file/ },
  { name: 'recover --journal names a file that is no journal', args: () => ['recover', '--journal', files.text], exit: 2, says: /is not a reseed journal/ },
  { name: 'recover --journal names an empty file', args: () => ['recover', '--journal', files.empty], exit: 2, says: /is not a reseed journal/ },
  { name: "recover --journal ''", args: () => ['recover', '--journal', ''], exit: 2, says: /^--journal "" does not exist$/ },
  { name: 'recover with no journals', args: () => ['recover'], exit: 0, says: /^nothing to recover\n$/ },
  // sandbox
  ...['../x', '', 'a b', 'x'.repeat(65)].map((name) => ({ name: `sandbox up '${name.length > 10 ? `${name.length} characters` : name}'`, args: () => ['sandbox', 'up', name], exit: 2, says: /^bad sandbox name ".*": use 1 to 64 letters, digits/ })),
  { name: 'sandbox down of a missing sandbox', args: () => ['sandbox', 'down', 'nosuch'], exit: 2, says: /^no sandbox named nosuch/ },
  { name: 'sandbox rm of a missing sandbox', args: () => ['sandbox', 'rm', 'nosuch'], exit: 2, says: /^no sandbox named nosuch/ },
  ...['abc', '0', '70000'].map((v) => ({ name: `sandbox up --port '${v}'`, args: () => ['sandbox', 'up', 'fresh', '--port', v], exit: 2, says: new RegExp(`^--port takes a whole number from 1 to 65535, not ${quoted(v)}$`) })),
  { name: 'sandbox up --buffer-pool abc', args: () => ['sandbox', 'up', 'fresh', '--buffer-pool', 'abc'], exit: 2, says: /^--buffer-pool takes a size such as 128M/ },
  { name: 'sandbox up --port in use', args: () => ['sandbox', 'up', 'fresh', '--port', String(donorPort())], exit: 10, says: /^port \d+ is in use; pick another with --port or leave it out$/ },
  // demo: refused before any sandbox is made
  ...[
    ['--size', 'abc'],
    ['--size', '0'],
    ['--parallel', '0'],
  ].map(([option, v]) => ({ name: `demo ${option} ${v}`, args: () => ['demo', option!, v!], exit: 2, says: new RegExp(`^${option} takes .*"${v}"`) })),
  { name: 'demo --method nosuch', args: () => ['demo', '--method', 'nosuch'], exit: 2, says: /argument 'nosuch' is invalid \(allowed choices are logical/ },
  // agents and transfers: refused before any agent is asked
  { name: 'transfer --from without a path', args: () => ['transfer', '--from', 'agent://db1', '--to', 'agent://db2/x'], exit: 2, says: /^--from takes agent:\/\/NAME\/ABSOLUTE\/PATH, not "agent:\/\/db1"/ },
  { name: 'transfer --resume-timeout 0', args: () => ['transfer', '--from', 'agent://db1/a', '--to', 'agent://db2/b', '--resume-timeout', '0'], exit: 2, says: /^--resume-timeout must be between 1s and 24h, not "0"/ },
  { name: 'transfer --compress gzip', args: () => ['transfer', '--from', 'agent://db1/a', '--to', 'agent://db2/b', '--compress', 'gzip'], exit: 2, says: /allowed choices are none, lz4, zstd, auto/ },
  { name: 'transfer to an agent no registry names', args: () => ['transfer', '--from', 'agent://db1/a', '--to', 'agent://nosuch/b'], exit: 2, says: /^no agent named nosuch \(looked in / },
  { name: 'transfer with RESEED_AGENTS naming a missing file', args: () => ['transfer', '--from', 'agent://db1/a', '--to', 'agent://db2/b'], env: { RESEED_AGENTS: '/nonexistent/agents.json' }, exit: 2, says: /^RESEED_AGENTS names \/nonexistent\/agents\.json, which does not exist/ },
  ...['0', '1ms', '25h'].map((v) => ({ name: `clone through agents --max-downtime ${v}`, args: () => ['clone', '--from', 'agent://db1', '--to', 'agent://db2', '--method', 'copy', '--no-replicate', '--max-downtime', v], exit: 2, says: new RegExp(`^--max-downtime takes 1s to 24h, not "${v}"`) })),
  { name: 'sandbox up --fs-size without --fs', args: () => ['sandbox', 'up', 'fresh', '--fs-size', '1G'], exit: 2, says: /^--fs-size is the size of --fs's image file/ },
  { name: 'sandbox up --fs btrfs --fs-size 10M', args: () => ['sandbox', 'up', 'fresh', '--fs', 'btrfs', '--fs-size', '10M'], exit: 2, says: /^--fs-size must be at least 512M/ },
  { name: 'sandbox up --fs xfs', args: () => ['sandbox', 'up', 'fresh', '--fs', 'xfs'], exit: 2, says: /allowed choices are btrfs, zfs/ },
  { name: 'demo --fs without --method snapshot', args: () => ['demo', '--fs', 'btrfs'], exit: 2, says: /^--fs is for --method snapshot/ },
  { name: 'refresh --max-lock-time 1ms', args: () => ['refresh', '--from', 'agent://db1', '--to', 'agent://db2', '--plan', '--max-lock-time', '1ms'], exit: 2, says: /^--max-lock-time takes 100ms to 1h, not "1ms"/ },
  { name: 'refresh between the same agent', args: () => ['refresh', '--from', 'agent://db1', '--to', 'agent://db1', '--plan'], exit: 2, says: /same agent/ },
  { name: 'refresh without a replication account', args: () => ['refresh', '--from', 'agent://db1', '--to', 'agent://db2'], exit: 2, says: /^replication needs --replication-user/ },
  { name: 'clone through agents --method mariabackup --max-rate', args: () => ['clone', '--from', 'agent://db1', '--to', 'agent://db2', '--method', 'mariabackup', '--no-replicate', '--max-rate', '50M'], exit: 2, says: /^--max-rate applies through agents to --method copy only$/ },
  { name: 'clone through agents --method copy --max-rate abc', args: () => ['clone', '--from', 'agent://db1', '--to', 'agent://db2', '--method', 'copy', '--no-replicate', '--max-rate', 'abc'], exit: 2, says: /^--max-rate takes bytes per second such as 50M/ },
  { name: 'clone through agents --method mariabackup --delta', args: () => ['clone', '--from', 'agent://db1', '--to', 'agent://db2', '--method', 'mariabackup', '--no-replicate', '--delta'], exit: 2, says: /^--delta applies through agents to --method copy only$/, hints: /only a file copy has blocks to compare/ },
  { name: 'agent without --config', args: () => ['agent'], exit: 2, says: /^reseed agent needs --config FILE/ },
  { name: 'agent init with a bad --hosts', args: () => ['agent', 'init', '--hosts', 'db1', '--out', '/tmp/never-made'], exit: 2, says: /^--hosts: "db1" is not NAME=ADDRESS\[:PORT\]/ },
];

/** Refused after looking at the servers: run one at a time, each server's state read around each. */
// prettier-ignore
const online: Case[] = [
  { name: 'clone: a wrong donor password', args: () => clone(), env: { RESEED_DONOR_PASSWORD: 'wrong-pw' }, exit: 3, says: /^cannot connect to root@127\.0\.0\.1:\d+: Access denied/, hidden: ['wrong-pw'] },
  { name: 'clone: a wrong joiner password (in the URI)', args: () => ['clone', '--from', D(), '--to', J().replace('root@', 'root:wrong-pw@'), '--replication-user', 'repl'], exit: 3, says: /^cannot connect to root@127\.0\.0\.1:\d+: Access denied/, hidden: ['wrong-pw'] },
  { name: 'clone: a donor port nothing listens on', args: () => ['clone', '--from', CLOSED, '--to', J(), '--replication-user', 'repl'], exit: 3, says: /^cannot connect to root@127\.0\.0\.1:1: .*ECONNREFUSED/, withinMs: 5000 },
  { name: 'clone: a joiner port nothing listens on', args: () => ['clone', '--from', D(), '--to', CLOSED, '--replication-user', 'repl'], exit: 3, says: /^cannot connect to root@127\.0\.0\.1:1: .*ECONNREFUSED/, withinMs: 5000 },
  { name: 'clone --json: a wrong donor password', args: () => clone('--json'), env: { RESEED_DONOR_PASSWORD: 'wrong-pw' }, exit: 3, says: /Access denied/ },
  { name: 'verify: a joiner port nothing listens on', args: () => ['verify', '--from', D(), '--to', CLOSED], exit: 3, says: /^joiner: cannot connect to .*ECONNREFUSED/, withinMs: 5000 },
  { name: 'verify --json: a wrong joiner password', args: () => verify('--json'), env: { RESEED_JOINER_PASSWORD: 'wrong-pw' }, exit: 3, says: /^joiner: cannot connect to .*Access denied/ },
  { name: 'clone: --schemas nosuch', args: () => clone('--schemas', 'nosuch'), exit: 4, says: /^preflight found 1 problem; nothing was changed$/, hints: /--schemas names schemas the donor does not have: nosuch/ },
  { name: 'clone: --schemas mysql', args: () => clone('--schemas', 'mysql'), exit: 4, says: /^preflight found 1 problem/, hints: /system schemas, which are never copied: mysql/ },
  { name: 'clone: --schemas a,,b', args: () => clone('--schemas', 'a,,b'), exit: 4, says: /^preflight found 1 problem/, hints: /does not have: a, b( \(a schema whose name holds a comma|$)/ },
  { name: "clone: --schemas naming a schema with a comma (it splits)", args: () => clone('--schemas', 'we,ird'), exit: 4, says: /^preflight found 1 problem/, hints: /does not have: we, ird \(a schema whose name holds a comma cannot be named in --schemas/ },
  { name: 'clone: --replicate-from source, the donor being no replica', args: () => clone('--replicate-from', 'source'), exit: 4, says: /^preflight found 1 problem/, hints: /the donor is not a replica, so it has no source to follow/ },
  { name: 'clone: --replication-host without a port (3306: nothing there)', args: () => clone('--replication-host', '127.0.0.1'), exit: 4, says: /^preflight found 1 problem/, hints: /the joiner cannot replicate from 127\.0\.0\.1:3306 as repl/ },
  { name: 'clone: --replication-ssl-ca names a missing file', args: () => clone('--replication-ssl-ca', files.missing), exit: 4, says: /^preflight found 1 problem/, hints: /the joiner cannot replicate from .* as repl: .*SSL/ },
  { name: 'clone: the same server as donor and joiner', args: () => cloneArgs(donor, donor), exit: 4, says: /^preflight found \d problems?; nothing was changed$/, hints: /donor and joiner are the same server/ },
  { name: 'verify: --schemas nosuch', args: () => verify('--schemas', 'nosuch'), exit: 4, says: /^--schemas names schemas the donor does not have: nosuch; nothing was compared or changed$/ },
  { name: 'verify: the same server as donor and joiner', args: () => ['verify', '--from', D(), '--to', D()], exit: 4, says: /same server/ },
  {
    name: 'recover: a journal in the journal directory whose header names no server',
    args: () => ['recover'],
    arrange: () => {
      const path = join(journalDir(), 'headless.jsonl');
      mkdirSync(journalDir(), { recursive: true });
      writeFileSync(path, JSON.stringify({ t: 'begin', id: 'x', pid: 1 }) + '\n');
      return () => rmSync(path, { force: true });
    },
    exit: 9,
    says: /headless\.jsonl names no donor or joiner in its header; nothing in it was run$/,
  },
];

describe('bad input', () => {
  before(async () => {
    [donor, joiner] = await Promise.all([startServer('bad-donor'), startServer('bad-joiner')]);
    await donor.sql('CREATE DATABASE app');
    await donor.sql('CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))');
    await donor.sql("INSERT INTO app.t VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    await donor.sql('CREATE DATABASE `we,ird`');
    await donor.sql('CREATE TABLE `we,ird`.t (id INT PRIMARY KEY)');
    await createReplUser(donor);
    initial = [await serverState(donor), await serverState(joiner)];
    mkdirSync(files.dir);
    for (const [path, text] of Object.entries(fileContents)) writeFileSync(path, text);
  });
  after(async () => {
    await stopAll();
    rmSync(scratch, { recursive: true, force: true });
  });

  it(`has at least 60 cases (${offline.length + online.length})`, () => {
    assert.ok(offline.length + online.length >= 60);
    const names = [...offline, ...online].map((c) => c.name);
    assert.equal(new Set(names).size, names.length, 'case names are unique');
  });

  // Nothing reaches a server here, so they run side by side against one snapshot of both.
  describe('refused before either server is reached', { concurrency: 3 }, () => {
    for (const c of offline) {
      it(c.name, { todo: c.todo }, async () => {
        checkOutput(c, await run(c));
        await assertNothingChanged(initial);
      });
    }
  });

  describe('refused after looking at the servers', () => {
    for (const c of online) {
      it(c.name, { todo: c.todo }, async () => {
        const before: typeof initial = [await serverState(donor), await serverState(joiner)];
        checkOutput(c, await run(c));
        await assertNothingChanged(before);
      });
    }
  });
});
