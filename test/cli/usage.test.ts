import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { reseed } from '../helpers/sandboxes.js';
import type { CliResult } from '../helpers/sandboxes.js';

// Command-line mistakes, through bin/reseed (npm run build first); no server is needed.

const SIDES = ['--from', 'mysql://admin@127.0.0.1:1', '--to', 'mysql://admin@127.0.0.1:2'];

/** The one line on stdout, as reportError prints it under --json. */
function jsonError(
  r: CliResult,
  hints: string[] = [],
): { type: string; code: string; exitCode: number; message: string } {
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stdout: ${r.stdout}`);
  const event = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(event), ['at', 'type', 'code', 'exitCode', 'message', 'hints']);
  assert.deepEqual(
    { type: event.type, code: event.code, exitCode: event.exitCode, hints: event.hints },
    { type: 'error', code: 'USAGE', exitCode: 2, hints },
  );
  return event as ReturnType<typeof jsonError>;
}

/** Sandbox directories given to `demo`: any sandbox in one after all (a regression) is removed. */
const sandboxDirs: string[] = [];

describe('usage errors', () => {
  after(async () => {
    for (const dir of sandboxDirs.filter((d) => existsSync(d))) {
      for (const name of readdirSync(dir))
        await reseed(['sandbox', 'rm', name], { env: { RESEED_SANDBOX_DIR: dir } });
    }
    for (const dir of sandboxDirs) rmSync(join(dir, '..'), { recursive: true, force: true });
  });

  it("are one JSON line under --json, commander's own included, and exit 2", async () => {
    const unknown = await reseed(['clone', ...SIDES, '--json', '--no-such-option']);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(
      jsonError(unknown, ['see: reseed clone --help']).message,
      /^unknown option '--no-such-option'/,
    );
    const missing = await reseed(['clone', '--json', '--to', SIDES[3]!]);
    assert.equal(missing.code, 2);
    assert.match(
      jsonError(missing, ['see: reseed clone --help']).message,
      /required option '--from <uri>' not specified/,
    );
    const choice = await reseed(['verify', ...SIDES, '--ssl-mode', 'sometimes', '--json']);
    assert.equal(choice.code, 2);
    assert.match(
      jsonError(choice, ['see: reseed verify --help']).message,
      /^option '--ssl-mode <mode>' argument 'sometimes' is invalid \(allowed choices are [^)]+\)$/,
    );
    const command = await reseed(['no-such-command', '--json']);
    assert.equal(command.code, 2);
    assert.match(jsonError(command, ['see: reseed --help']).message, /unknown command 'no-such-command'/);
  });

  it('are one "reseed: " line and a hint without --json, and --help and --version still exit 0', async () => {
    const unknown = await reseed(['clone', ...SIDES, '--no-such-option']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, '');
    assert.equal(unknown.stderr, "reseed: unknown option '--no-such-option'\n  see: reseed clone --help\n");
    for (const args of [
      ['--help'],
      ['clone', '--help', '--json'],
      ['sandbox', 'up', '--help'],
      ['--version'],
    ]) {
      const r = await reseed(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, args[0] === '--version' ? /^\d+\.\d+\.\d+\n$/ : /^Usage: reseed/);
      assert.equal(r.stderr, '');
    }
  });

  it('a URI password with an unencoded @ is refused without a fragment of it', async () => {
    const r = await reseed([
      'clone',
      '--from',
      'mysql://admin:p@ss/1@127.0.0.1:1',
      '--to',
      'mysql://admin@127.0.0.1:2',
      '--json',
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(jsonError(r).message, /percent-encode.*%40.*RESEED_DONOR_PASSWORD/);
    for (const fragment of ['p@ss', 'ss/1', '@ss']) {
      assert.ok(!r.stdout.includes(fragment) && !r.stderr.includes(fragment), `"${fragment}" shown`);
    }
  });

  for (const args of [
    ['--size', 'abc'],
    ['--parallel', '0'],
    ['--parallel', 'abc'],
  ]) {
    it(`demo ${args.join(' ')} exits 2 before any sandbox is made`, async () => {
      const dir = join(mkdtempSync(join(tmpdir(), 'reseed-usage-')), 'sandboxes');
      sandboxDirs.push(dir);
      const started = Date.now();
      const r = await reseed(['demo', ...args], { env: { RESEED_SANDBOX_DIR: dir } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^reseed: ${args[0]} takes .*"${args[1]}"`));
      assert.doesNotMatch(r.stderr, /Starting/);
      assert.ok(!existsSync(dir) || readdirSync(dir).length === 0, `nothing in ${dir}`);
      assert.ok(Date.now() - started < 10_000, 'refused at once');
    });
  }
});
