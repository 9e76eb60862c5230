import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PacketSink } from '../../src/mysql/server.js';
import { RateGate, pacedSink } from '../../src/throttle/rate-gate.js';
import { parseRate } from '../../src/throttle/donor-throttle.js';

// The gate's arithmetic and the paced sink's pause/resume rules, without a server: the clone
// tests (test/clone/throttle.test.ts) run them against real ones.

describe('RateGate', () => {
  it('lets everything through without a rate, and paces bytes at a rate after a small burst', () => {
    const open = new RateGate();
    assert.equal(open.charge(1e9, 1000), 0);
    const gate = new RateGate(1 << 20);
    // 50 ms of burst at 1 MiB/s is free; a whole MiB more costs a second.
    assert.equal(gate.charge(52_428, 1000), 0);
    assert.ok(Math.abs(gate.charge(1 << 20, 1000) - 1000) < 1);
    assert.equal(gate.takeCharged(), 52_428 + (1 << 20));
    assert.equal(gate.takeCharged(), 0);
  });

  it('re-prices what is owed when the rate changes, and opening the gate clears it', () => {
    const gate = new RateGate(1 << 20);
    // 20 MiB owed at 1 MiB/s: 20 s of waiting...
    assert.ok(Math.abs(gate.charge(20 << 20, 1000) - 20_000) < 60);
    // ...which is 2 s at 10 MiB/s, from the moment the rate was raised
    gate.setRate(10 << 20, 1000);
    assert.ok(Math.abs(gate.owedMs(1000) - 2000) < 10);
    gate.setRate(Infinity, 1500);
    assert.equal(gate.owedMs(1500), 0);
  });

  it('settle() ends soon after the rate is raised, not when the old rate said', async () => {
    const gate = new RateGate(1 << 20);
    gate.charge(30 << 20);
    const started = Date.now();
    setTimeout(() => (gate.rate = 1 << 30), 100);
    await gate.settle();
    assert.ok(Date.now() - started < 2000, `settled after ${Date.now() - started} ms`);
  });

  it('hands out at most `slots` reading slots, in order, and more when slots grow', () => {
    const gate = new RateGate();
    gate.slots = 2;
    const got: number[] = [];
    for (const n of [1, 2, 3, 4]) gate.acquire(() => got.push(n));
    assert.deepEqual(got, [1, 2]);
    gate.release();
    assert.deepEqual(got, [1, 2, 3]);
    gate.slots = 3;
    assert.deepEqual(got, [1, 2, 3, 4]);
  });
});

describe('pacedSink', () => {
  function fakeSink(accept: () => boolean): PacketSink & { resume?: () => void } {
    const sink: PacketSink & { resume?: () => void } = {
      onRow: () => accept(),
      setResume(fn) {
        sink.resume = fn;
      },
    };
    return sink;
  }

  it('gives its slot up while its consumer holds it, and needs one to resume', async () => {
    const gate = new RateGate();
    gate.slots = 1;
    let accept = true;
    const inner = fakeSink(() => accept);
    const a = pacedSink(inner, gate);
    let resumed = 0;
    a.sink.setResume(() => resumed++);
    await a.start();
    const row = Buffer.alloc(100);
    assert.equal(a.sink.onRow(row, 0, 100, 1), true);
    accept = false;
    assert.equal(a.sink.onRow(row, 0, 100, 1), false, 'paused for its consumer');
    // The slot is free for another reader now.
    const b = pacedSink(
      fakeSink(() => true),
      gate,
    );
    let bStarted = false;
    void b.start().then(() => (bStarted = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(bStarted, true);
    // a's consumer catches up, but a resumes only once b gives the slot back.
    accept = true;
    inner.resume!();
    assert.equal(resumed, 0);
    b.finish();
    assert.equal(resumed, 1);
    a.finish();
  });

  it('pauses for as long as the gate says, then resumes', async () => {
    const gate = new RateGate(10 << 20);
    const p = pacedSink(
      fakeSink(() => true),
      gate,
    );
    let resumed = 0;
    p.sink.setResume(() => resumed++);
    await p.start();
    const big = Buffer.alloc(1 << 20);
    assert.equal(p.sink.onRow(big, 0, big.length, 1), false, '1 MiB at 10 MiB/s must wait');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(resumed, 1);
    p.finish();
  });
});

describe('parseRate', () => {
  it('reads binary units and refuses the rest', () => {
    assert.equal(parseRate('50M'), 50 * 2 ** 20);
    assert.equal(parseRate('1.5G'), 1.5 * 2 ** 30);
    assert.equal(parseRate('200k'), 200 * 1024);
    assert.equal(parseRate('1000'), 1000);
    assert.equal(parseRate('10MiB/s'), 10 * 2 ** 20);
    assert.equal(parseRate('1T'), 2 ** 40);
    for (const bad of ['', 'fast', '0', '-5M', '5P']) assert.equal(parseRate(bad), undefined, bad);
  });
});
