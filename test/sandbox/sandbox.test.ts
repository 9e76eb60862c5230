import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { reseed } from '../helpers/sandboxes.js';
import { isReseedError } from '../../src/errors.js';
import { getSandbox, sandboxHome, sandboxRemove, sandboxUp } from '../../src/sandbox/sandbox.js';

/** Removes the sandboxes (stopping their servers) whatever state a failed test left them in. */
async function removeAll(names: string[]): Promise<void> {
  for (const name of names) if (getSandbox(name)) await sandboxRemove(name).catch(() => undefined);
}

/** Alive, and not a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** PIDs of every mariadbd started with this sandbox directory's my.cnf, ours or not. */
function serversOf(dir: string): number[] {
  const arg = `--defaults-file=${join(dir, 'my.cnf')}`;
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(arg);
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function deadPid(): Promise<number> {
  const child = spawn('true');
  await once(child, 'exit');
  return child.pid!;
}

describe('reseed sandbox', () => {
  const name = `cli-${process.pid}`;

  it('up, list, down, up again, rm', async () => {
    try {
      const up = await reseed(['sandbox', 'up', name]);
      assert.equal(up.code, 0, up.stderr);
      const port = Number(/port (\d+)/.exec(up.stdout)?.[1]);
      assert.ok(port > 0);
      const list = await reseed(['sandbox', 'list']);
      assert.match(
        list.stdout,
        new RegExp(
          `${name}\\s+running\\s+port ${port}\\s+server_id \\d+\\s+mysql://root@127\\.0\\.0\\.1:${port}`,
        ),
      );
      const json = JSON.parse((await reseed(['sandbox', 'list', '--json'])).stdout) as Record<
        string,
        unknown
      >[];
      const mine = json.find((s) => s.name === name)!;
      assert.equal(mine.state, 'running');
      assert.equal(mine.port, port);
      assert.equal(mine.uri, `mysql://root@127.0.0.1:${port}`);
      assert.ok(existsSync(String(mine.socket)), 'its socket');
      assert.ok(existsSync(join(String(mine.datadir), 'mysql')), 'its datadir');
      const down = await reseed(['sandbox', 'down', name]);
      assert.match(down.stdout, new RegExp(`${name}\\s+stopped\\s+port`));
      const stopped = JSON.parse((await reseed(['sandbox', 'list', '--json'])).stdout) as Record<
        string,
        unknown
      >[];
      assert.equal(stopped.find((s) => s.name === name)!.state, 'stopped');
      const again = await reseed(['sandbox', 'up', name]);
      assert.match(
        again.stdout,
        new RegExp(`running\\s+port ${port}`),
        'a restarted sandbox keeps its port and data',
      );
      const rm = await reseed(['sandbox', 'rm', name]);
      assert.equal(rm.code, 0);
      assert.doesNotMatch((await reseed(['sandbox', 'list'])).stdout, new RegExp(name));
    } finally {
      await removeAll([name]);
    }
  });

  it('says clearly what is wrong', async () => {
    const bad = await reseed(['sandbox', 'up', 'no/slash']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /bad sandbox name "no\/slash"/);
    const missing = await reseed(['sandbox', 'down', 'never-made']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no sandbox named never-made/);
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    try {
      const r = await reseed(['sandbox', 'up', `busy-${process.pid}`, '--port', String(port)]);
      assert.equal(r.code, 10);
      assert.match(r.stderr, new RegExp(`port ${port} is in use`));
    } finally {
      busy.close();
    }
  });

  it('never signals a PID its pid file names once that PID is another process', async () => {
    const stale = `stale-${process.pid}`;
    const other = `other-${process.pid}`;
    const pidFile = join(sandboxHome(), stale, 'mariadbd.pid');
    // An unrelated process holding the number, as after a crash and PID reuse.
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      for (const n of [stale, other]) {
        const up = await reseed(['sandbox', 'up', n, '--buffer-pool', '128M']);
        assert.equal(up.code, 0, up.stderr);
      }
      assert.equal((await reseed(['sandbox', 'down', stale])).code, 0);
      const otherPid = getSandbox(other)!.pid!;
      // Another sandbox's mariadbd is a mariadbd, but not started with this sandbox's my.cnf.
      for (const [what, pid] of [
        ['sleep', sleeper.pid!],
        [`sandbox ${other}'s mariadbd`, otherPid],
      ] as const) {
        writeFileSync(pidFile, `${pid}\n`);
        const list = await reseed(['sandbox', 'list']);
        assert.match(list.stdout, new RegExp(`${stale}\\s+stopped \\(stale pid file\\)\\s+port`), what);
        assert.match(list.stdout, new RegExp(`${other}\\s+running\\s+port`));
        const down = await reseed(['sandbox', 'down', stale]);
        assert.equal(down.code, 0, down.stderr);
        assert.match(down.stdout, new RegExp(`${stale}\\s+stopped\\s+port`));
        assert.ok(alive(pid), `down left ${what} alone`);
        assert.ok(!existsSync(pidFile), 'down removed the stale pid file');
      }
      assert.ok(getSandbox(other)!.running);

      writeFileSync(pidFile, `${sleeper.pid}\n`);
      const up = await reseed(['sandbox', 'up', stale]);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, new RegExp(`${stale}\\s+running\\s+port`));
      const started = getSandbox(stale)!;
      assert.ok(started.running && started.pid !== sleeper.pid);
      assert.deepEqual(serversOf(started.dir), [started.pid]);
      assert.ok(alive(sleeper.pid!), 'up left sleep alone');

      assert.equal((await reseed(['sandbox', 'down', stale])).code, 0);
      assert.deepEqual(serversOf(started.dir), [], 'down stopped the real server');
      writeFileSync(pidFile, `${sleeper.pid}\n`);
      const rm = await reseed(['sandbox', 'rm', stale]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.ok(!existsSync(started.dir));
      assert.ok(alive(sleeper.pid!), 'rm left sleep alone');
      assert.ok(alive(otherPid), `sandbox ${other} survived it all`);
    } finally {
      process.kill(sleeper.pid!, 'SIGKILL');
      await removeAll([stale, other]);
    }
  });

  it('calls a sandbox whose pid file names a dead PID stopped, and starts it', async () => {
    const n = `dead-${process.pid}`;
    try {
      assert.equal((await reseed(['sandbox', 'up', n, '--buffer-pool', '128M'])).code, 0);
      assert.equal((await reseed(['sandbox', 'down', n])).code, 0);
      const pid = await deadPid();
      writeFileSync(join(sandboxHome(), n, 'mariadbd.pid'), `${pid}\n`);
      const s = getSandbox(n)!;
      assert.equal(s.running, false);
      assert.equal(s.stalePidFile, true);
      assert.equal(s.pid, undefined);
      assert.match(
        (await reseed(['sandbox', 'list'])).stdout,
        new RegExp(`${n}\\s+stopped \\(stale pid file\\)`),
      );
      const up = await reseed(['sandbox', 'up', n]);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, new RegExp(`${n}\\s+running\\s+port`));
    } finally {
      await removeAll([n]);
    }
  });

  it('refuses a malformed --buffer-pool before making anything', async () => {
    const n = `badpool-${process.pid}`;
    for (const size of ['abc', '1.5G', '128MB', '0']) {
      const r = await reseed(['sandbox', 'up', n, '--buffer-pool', size]);
      assert.equal(r.code, 2, size);
      assert.match(r.stderr, new RegExp(`--buffer-pool takes a size such as 128M.*not "${size}"`));
      assert.ok(!existsSync(join(sandboxHome(), n)), `nothing made for ${size}`);
    }
  });

  it('removes a new sandbox whose mariadbd does not start', async () => {
    const n = `nostart-${process.pid}`;
    const dir = join(sandboxHome(), n);
    try {
      await assert.rejects(
        sandboxUp(n, { bufferPool: '128M', extraConfig: ['no_such_variable = 1'] }),
        (err) => {
          assert.ok(isReseedError(err));
          assert.equal(err.code, 'SANDBOX');
          assert.match(
            err.message,
            new RegExp(
              `sandbox ${n} did not start .*mariadbd exited with code \\d+; the new sandbox was removed`,
            ),
          );
          assert.ok(
            err.hints.some((h) => /unknown variable 'no_such_variable/.test(h)),
            err.hints.join('\n'),
          );
          return true;
        },
      );
      assert.ok(!existsSync(dir), 'no half-made sandbox left behind');
      assert.deepEqual(serversOf(dir), []);
      assert.doesNotMatch((await reseed(['sandbox', 'list'])).stdout, new RegExp(n));
    } finally {
      await removeAll([n]);
    }
  });

  it('refuses to start an existing sandbox with other options than it was made with', async () => {
    const n = `fixed-${process.pid}`;
    try {
      const up = await reseed(['sandbox', 'up', n, '--buffer-pool', '128M']);
      assert.equal(up.code, 0, up.stderr);
      const port = getSandbox(n)!.port;
      const refusal = new RegExp(
        `^reseed: sandbox ${n} was created with --port ${port} --buffer-pool 128M, not --buffer-pool 256M; .*reseed sandbox rm ${n}`,
      );
      const running = await reseed(['sandbox', 'up', n, '--buffer-pool', '256M']);
      assert.equal(running.code, 2);
      assert.match(running.stderr, refusal);
      assert.equal(running.stderr.trim().split('\n').length, 1, 'one line');

      assert.equal((await reseed(['sandbox', 'down', n])).code, 0);
      const stopped = await reseed(['sandbox', 'up', n, '--buffer-pool', '256M']);
      assert.equal(stopped.code, 2);
      assert.match(stopped.stderr, refusal);
      const otherPort = await reseed([
        'sandbox',
        'up',
        n,
        '--port',
        String(port === 65535 ? 1024 : port + 1),
      ]);
      assert.equal(otherPort.code, 2);
      assert.match(otherPort.stderr, /, not --port \d+;/);
      await assert.rejects(sandboxUp(n, { extraConfig: ['max_connections = 10'] }), /not extra config/);
      assert.equal(getSandbox(n)!.running, false, 'a refusal starts nothing');

      // The same size written another way, or no option at all, is no change.
      const same = await reseed(['sandbox', 'up', n, '--buffer-pool', '134217728']);
      assert.equal(same.code, 0, same.stderr);
      assert.equal((await reseed(['sandbox', 'up', n])).code, 0);
      assert.equal(getSandbox(n)!.running, true);
    } finally {
      await removeAll([n]);
    }
  });
});
