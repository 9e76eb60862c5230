// A TCP relay that delays each direction (bench/channel-netns.ts runs it inside a namespace): the
// latency of a WAN link, since this kernel has no netem.
import { createServer, connect } from 'node:net';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Holds every chunk `ms` before passing it on, in order. At most `limit` bytes are held: then the
 * writer waits, so a slow reader slows the sender instead of filling this process's memory.
 */
class Delay extends Transform {
  #held = 0;
  #waiting: TransformCallback | undefined;
  #flushed: TransformCallback | undefined;

  constructor(
    readonly ms: number,
    readonly limit: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#held += chunk.length;
    setTimeout(() => {
      this.#held -= chunk.length;
      this.push(chunk);
      if (this.#held < this.limit) this.#release('waiting');
      if (this.#held === 0) this.#release('flushed');
    }, this.ms);
    if (this.#held < this.limit) done();
    else this.#waiting = done;
  }

  override _flush(done: TransformCallback): void {
    if (this.#held === 0) done();
    else this.#flushed = done;
  }

  #release(which: 'waiting' | 'flushed'): void {
    const done = which === 'waiting' ? this.#waiting : this.#flushed;
    if (which === 'waiting') this.#waiting = undefined;
    else this.#flushed = undefined;
    done?.();
  }
}

/**
 * A TCP relay that delays each direction by `oneWayMs`; run inside the receiving namespace (see
 * startHosts). Bytes pass unchanged, so TLS runs end to end through it. Both of its TCP
 * connections end where it sits: the latency is seen by every request and response of the
 * protocol, not by TCP's congestion window on the limited link.
 */
export async function serveDelayRelay(o: {
  listen: { host: string; port: number };
  target: { host: string; port: number };
  oneWayMs: number;
}): Promise<void> {
  // 4 MB per direction: well above one stream's 25 ms at 200 Mbit/s (625 kB).
  const limit = 4 << 20;
  // Nagle's algorithm off, as the agents have it: it would hold small writes for an ACK.
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    const upstream = connect({ ...o.target, allowHalfOpen: true, noDelay: true });
    // One direction failing ends both: a cut on one side is a cut on the other.
    const both = () => (client.destroy(), upstream.destroy());
    pipeline(client, new Delay(o.oneWayMs, limit), upstream).catch(both);
    pipeline(upstream, new Delay(o.oneWayMs, limit), client).catch(both);
  });
  await new Promise<void>((resolve) => server.listen(o.listen.port, o.listen.host, resolve));
  process.stdout.write('relaying\n');
}
