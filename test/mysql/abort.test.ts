import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { connect } from '../../src/mysql/server.js';
import type { Server } from '../../src/mysql/server.js';
import { sandboxEndpoint } from '../../src/sandbox/sandbox.js';
import { ROOT, otherSessions, startServer, stopAll } from '../helpers/sandboxes.js';
import type { TestServer } from '../helpers/sandboxes.js';

let server: TestServer;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `rows` until it returns none, for up to `ms`; returns what is left. */
async function untilEmpty(rows: () => Promise<Record<string, unknown>[]>, ms = 5000) {
  const deadline = Date.now() + ms;
  let left = await rows();
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    left = await rows();
  }
  return left;
}

/** What session `id` is running on the server (nothing when it is idle or gone). */
function statementOf(id: number) {
  return () =>
    server.sql(
      "SELECT ID, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST WHERE ID = ? AND COMMAND <> 'Sleep'",
      [id],
    );
}

/** Sessions other than the checker's and `keep`'s: the kill's side connection must be gone. */
async function strayOf(keep: Server | undefined) {
  return (await otherSessions(server)).filter((s) => Number(s.ID) !== keep?.connectionId);
}

/** Waits until session `id` runs a statement matching `pattern`. */
async function untilRunning(id: number, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const [row] = await statementOf(id)();
    if (row && pattern.test(String(row.INFO))) return;
    assert.ok(Date.now() < deadline, `session ${id} never ran ${pattern}`);
    await sleep(50);
  }
}

/** Aborts `controller` and checks that `call` rejects at once with the abort error. */
async function abortAndTime(controller: AbortController, call: Promise<unknown>): Promise<void> {
  const t = Date.now();
  controller.abort();
  await assert.rejects(call, { code: 'ABORTED' });
  assert.ok(Date.now() - t < 1000, `rejected after ${Date.now() - t} ms`);
}

/** The session ran its statement to no end: nothing runs on it, no side connection is left. */
async function assertStopped(s: Server): Promise<void> {
  assert.deepEqual(await untilEmpty(statementOf(s.connectionId)), [], 'the statement still runs');
  assert.deepEqual(await untilEmpty(() => strayOf(s)), [], 'a session of ours is left');
}

before(async () => {
  server = await startServer('abort');
  await server.sql('CREATE TABLE test.loaded (n INT PRIMARY KEY) ENGINE=InnoDB');
  // may connect and read, but not set sql_log_bin (no SUPER, no BINLOG ADMIN)
  await server.sql("CREATE USER 'plain'@'127.0.0.1' IDENTIFIED BY 'plain-secret'");
  await server.sql("GRANT SELECT ON *.* TO 'plain'@'127.0.0.1'");
});
after(stopAll);

describe('an aborted statement stops on the server', () => {
  it('query(): SELECT SLEEP(30) is killed, and the session goes on', async () => {
    const s = await server.session();
    const controller = new AbortController();
    const call = s.query('SELECT SLEEP(30)', [], controller.signal);
    await untilRunning(s.connectionId, /SLEEP\(30\)/);
    await abortAndTime(controller, call);
    await assertStopped(s);
    assert.deepEqual(await s.query('SELECT 1 AS one'), [{ one: 1 }]);
    await s.close();
  });

  it('query(): a statement aborted while it waits its turn is never sent', async () => {
    const s = await server.session();
    const first = s.query('SELECT SLEEP(30)');
    const controller = new AbortController();
    const second = s.query('SET @ran = 1', [], controller.signal);
    await untilRunning(s.connectionId, /SLEEP\(30\)/);
    await abortAndTime(controller, second);
    await s.killQuery();
    await first.catch(() => undefined); // killed: 1317, or 1 for SLEEP's value
    assert.deepEqual(await s.query('SELECT @ran AS ran'), [{ ran: null }]);
    await assertStopped(s);
    await s.close();
  });

  it('streamRaw(): an endless result is killed when aborted, and when the reader stops', async () => {
    const s = await server.session();
    const controller = new AbortController();
    let rows = 0;
    const read = (async () => {
      for await (const row of s.streamRaw('SELECT seq FROM test.seq_1_to_100000000000', controller.signal)) {
        assert.ok(row[0] instanceof Buffer);
        rows++;
        await sleep(1); // a slow reader: the connection is paused by backpressure
      }
    })();
    await untilRunning(s.connectionId, /seq_1_to/);
    while (rows < 10) await sleep(10);
    await abortAndTime(controller, read);
    await assertStopped(s);
    // No signal: the reader breaks out, and the rest is not left running either.
    for await (const row of s.streamRaw('SELECT seq FROM test.seq_1_to_100000000000')) if (row) break;
    await assertStopped(s);
    assert.deepEqual(await s.query('SELECT 2 AS two'), [{ two: 2 }]);
    await s.close();
  });

  it('streamPackets(): an endless, paused result is killed', async () => {
    const s = await server.session();
    const controller = new AbortController();
    let rows = 0;
    const call = s.streamPackets(
      'SELECT seq FROM test.seq_1_to_100000000000',
      { onRow: () => ++rows < 1000, setResume: () => undefined },
      controller.signal,
    );
    await untilRunning(s.connectionId, /seq_1_to/);
    while (rows < 1000) await sleep(10);
    await abortAndTime(controller, call);
    await assertStopped(s);
    assert.deepEqual(await s.query('SELECT 3 AS three'), [{ three: 3 }]);
    await s.close();
  });

  it('loadData(): an aborted LOAD DATA LOCAL commits none of the rows it was sent', async () => {
    const s = await server.session();
    const controller = new AbortController();
    const source = new PassThrough();
    const call = s.loadData(
      "LOAD DATA LOCAL INFILE 'rows' INTO TABLE test.loaded",
      source,
      controller.signal,
    );
    source.write(Array.from({ length: 5000 }, (_, i) => `${i}\n`).join(''));
    await untilRunning(s.connectionId, /LOAD DATA/);
    await sleep(200); // the server has read those rows
    await abortAndTime(controller, call);
    // Ending the file would have committed the rows: the session goes with its statement.
    assert.deepEqual(await untilEmpty(() => strayOf(undefined)), [], 'a session of ours is left');
    assert.deepEqual(await server.sql('SELECT COUNT(*) AS n FROM test.loaded'), [{ n: '0' }]);
    await s.close();
  });

  it('loadData(): a source that fails is not taken for the end of the file', async () => {
    const s = await server.session();
    const source = new PassThrough();
    const call = s.loadData("LOAD DATA LOCAL INFILE 'rows' INTO TABLE test.loaded", source);
    source.write(Array.from({ length: 5000 }, (_, i) => `${i}\n`).join(''));
    await untilRunning(s.connectionId, /LOAD DATA/);
    await sleep(200);
    source.destroy(new Error('the donor went away'));
    await assert.rejects(call, /the donor went away/);
    assert.deepEqual(await untilEmpty(() => strayOf(undefined)), [], 'a session of ours is left');
    assert.deepEqual(await server.sql('SELECT COUNT(*) AS n FROM test.loaded'), [{ n: '0' }]);
    await s.close();
  });

  it('killQuery() kills what the session runs, and leaves an idle session alone', async () => {
    const s = await server.session();
    await s.killQuery();
    assert.deepEqual(await s.query('SELECT 4 AS four'), [{ four: 4 }]);
    const call = s.query('SELECT SLEEP(30) AS slept');
    await untilRunning(s.connectionId, /SLEEP\(30\)/);
    const t = Date.now();
    await s.killQuery();
    // A killed statement fails with 1317 (a SLEEP may return 1 instead): either way it is over.
    await call.catch((err: unknown) => err);
    assert.ok(Date.now() - t < 2000, `ended after ${Date.now() - t} ms`);
    await assertStopped(s);
    assert.deepEqual(await s.query('SELECT 5 AS five'), [{ five: 5 }]);
    await s.close();
  });

  it('destroy() kills the statement in flight, and its caller hears of it at once', async () => {
    const s = await server.session();
    const call = s.query('SELECT SLEEP(30)');
    await untilRunning(s.connectionId, /SLEEP\(30\)/);
    s.destroy();
    await assert.rejects(call, /closed before its statement ended/);
    assert.deepEqual(await untilEmpty(() => strayOf(undefined)), [], 'a session of ours is left');
  });
});

describe('a session setup statement that fails', () => {
  const plain = () => ({ ...sandboxEndpoint(server.info), user: 'plain', password: 'plain-secret' });
  const ofPlain = async () => (await otherSessions(server)).filter((s) => s.USER === 'plain');

  it('names the statement, and closes the session', async () => {
    await assert.rejects(
      connect(plain(), { init: ["SET SESSION time_zone = '+00:00'", 'SET SESSION sql_log_bin = 0'] }),
      (err: Error & { code?: string; hints?: string[] }) => {
        assert.equal(err.code, 'CONNECT_FAILED');
        assert.match(
          err.message,
          /session setup statement `SET SESSION sql_log_bin = 0` failed: Access denied/,
        );
        assert.match(err.message, /plain@127\.0\.0\.1/);
        assert.match(err.hints?.join('\n') ?? '', /grant/);
        return true;
      },
    );
    assert.deepEqual(await untilEmpty(ofPlain), []);
  });

  it('holds no handle: a process that fails so exits by itself', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reseed-abort-'));
    const script = join(dir, 'init-fails.ts');
    writeFileSync(
      script,
      `import { connect } from ${JSON.stringify(join(ROOT, 'src/mysql/server.ts'))};
       connect(${JSON.stringify(plain())}, { init: ['SET SESSION sql_log_bin = 0'] }).then(
         () => console.log('connected?'),
         (err) => console.log('refused:', err.message),
       );`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let refusedAt = 0;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('refused:')) refusedAt ||= Date.now();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    // tsx takes a moment to start; the exit must follow the refusal within a few seconds.
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve(-1);
      }, 20_000);
      const watch = setInterval(() => {
        if (refusedAt && Date.now() - refusedAt > 3000) {
          clearInterval(watch);
          child.kill('SIGKILL');
        }
      }, 100);
      child.on('exit', (c) => {
        clearTimeout(timer);
        clearInterval(watch);
        resolve(c);
      });
    });
    assert.match(out, /refused: .*sql_log_bin/);
    assert.equal(code, 0, `the process did not exit by itself after the refusal: ${out}`);
    assert.deepEqual(await untilEmpty(ofPlain), []);
  });
});
