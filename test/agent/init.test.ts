import assert from 'node:assert/strict';

import type { ChildProcess } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freePort } from '../../src/sandbox/sandbox.js';
import { finishInitConfig, startAgentProcess } from '../helpers/agents.js';
import { reseed } from '../helpers/sandboxes.js';
import { compareTrees, readTree } from '../helpers/tree.js';

/** From `reseed agent init` to a transfer between the two agents it configured, as a new user goes. */
const work = join(process.env.RESEED_TEST_DIR ?? '/tmp/reseed-test', `agent-init-${process.pid}`);
const running: ChildProcess[] = [];
after(() => {
  for (const c of running) if (c.exitCode === null) c.kill('SIGKILL');
});

test('agent init makes what two hosts need; the agents it configures move a tree; SIGTERM stops them', async () => {
  mkdirSync(work, { recursive: true });
  const out = join(work, 'pki');
  const [pa, pb] = [await freePort(), await freePort()];
  const init = await reseed([
    'agent',
    'init',
    '--hosts',
    `alpha=127.0.0.1:${pa},beta=127.0.0.1:${pb}`,
    '--out',
    out,
  ]);
  assert.equal(init.code, 0, init.stderr);
  for (const f of [
    'alpha/key.pem',
    'alpha/token',
    'beta/peers/alpha.token',
    'ca/ca-key.pem',
    'cli/key.pem',
    'agents.json',
  ])
    assert.equal(statSync(join(out, f)).mode & 0o077, 0, `${f} is readable by others`);
  const again = await reseed(['agent', 'init', '--hosts', 'alpha=127.0.0.1', '--out', out]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /exists: agent init makes a new directory and never overwrites one/);

  // The DBA finishes each config.json: here no mysqld, and test directories to serve and receive.
  const src = join(work, 'src');
  const dst = join(work, 'dst');
  mkdirSync(join(src, 'd'), { recursive: true });
  mkdirSync(dst, { recursive: true });
  writeFileSync(join(src, 'd', 'f'), 'some bytes\n'.repeat(1000));
  for (const host of ['alpha', 'beta'])
    finishInitConfig(join(out, host, 'config.json'), {
      serve: [src],
      receive: [dst],
      listen: { host: '127.0.0.1', port: host === 'alpha' ? pa : pb },
    });
  const agents = [
    await startAgentProcess(join(out, 'alpha', 'config.json')),
    await startAgentProcess(join(out, 'beta', 'config.json')),
  ];
  running.push(...agents);
  const r = await reseed(
    ['transfer', '--from', `agent://alpha${src}`, '--to', `agent://beta${join(dst, 'copy')}`],
    {
      env: { RESEED_AGENTS: join(out, 'agents.json') },
    },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /transfer done/);
  assert.deepEqual(compareTrees(readTree(src), readTree(join(dst, 'copy'))), []);
  for (const a of agents) {
    const exited = new Promise<number | null>((resolve) => a.once('exit', resolve));
    a.kill('SIGTERM');
    assert.equal(await exited, 0);
  }
});
