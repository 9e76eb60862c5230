import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { reseed } from '../helpers/sandboxes.js';

describe('reseed sandbox', () => {
  const name = `cli-${process.pid}`;

  it('up, list, down, up again, rm', async () => {
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
    const down = await reseed(['sandbox', 'down', name]);
    assert.match(down.stdout, new RegExp(`${name}\\s+stopped`));
    const again = await reseed(['sandbox', 'up', name]);
    assert.match(
      again.stdout,
      new RegExp(`running\\s+port ${port}`),
      'a restarted sandbox keeps its port and data',
    );
    const rm = await reseed(['sandbox', 'rm', name]);
    assert.equal(rm.code, 0);
    assert.doesNotMatch((await reseed(['sandbox', 'list'])).stdout, new RegExp(name));
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
});
