import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';

/**
 * A TCP relay between a client and a server, for the network faults this kernel cannot make with
 * netem: `cut()` drops every connection and refuses new ones until `restore()` (a link that went
 * down), and `delayMs` holds every chunk that long in each direction (latency). Bytes pass
 * unchanged: TLS runs end to end through it.
 */
export class Relay {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #down = false;
  #silent = false;
  #frozen = false;
  port = 0;
  delayMs = 0;
  /** bytes per second in each direction of each connection; 0: as fast as they come */
  rate = 0;
  connections = 0;

  constructor(readonly target: { host: string; port: number }) {
    this.#server = createServer((client) => {
      if (this.#down) return client.destroy();
      if (this.#frozen) client.pause();
      this.connections++;
      const upstream = connect(target);
      for (const [from, to] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        this.#sockets.add(from);
        let next = 0;
        from.on('data', (d: Buffer) => {
          if (this.#frozen) from.pause();
          if (this.#silent || this.#frozen) return;
          if (this.rate > 0) {
            // Each direction paced to `rate`: the chunk leaves when the ones before it have.
            const now = Date.now();
            const at = Math.max(now, next);
            next = at + (d.length * 1000) / this.rate;
            if (at > now) {
              from.pause();
              setTimeout(() => {
                if (this.#frozen) return;
                if (!this.#silent && to.writable) to.write(d);
                from.resume();
              }, at - now);
              return;
            }
          }
          if (this.delayMs === 0) {
            if (!to.write(d)) from.pause();
          } else setTimeout(() => to.writable && to.write(d), this.delayMs);
        });
        to.on('drain', () => {
          if (!this.#frozen) from.resume();
        });
        from.on('error', () => to.destroy());
        from.on('close', () => {
          this.#sockets.delete(from);
          to.destroy();
        });
      }
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  /** Every connection through the relay is dropped, and new ones are refused, until restore(). */
  cut(): void {
    this.#down = true;
    for (const s of this.#sockets) s.destroy();
  }

  /**
   * Nothing passes any more and nothing says so (a link whose packets are dropped): connections
   * stay open and silent until restore(), which drops them (their streams lost bytes).
   */
  blackhole(): void {
    this.#silent = true;
  }

  /**
   * Nothing is read any more, in either direction, and nothing is dropped: each sender's socket
   * fills and then blocks, as behind a link whose packets are dropped (no ACKs come back), until
   * restore(), which drops the connections.
   */
  freeze(): void {
    this.#frozen = true;
    for (const s of this.#sockets) s.pause();
  }

  restore(): void {
    if (this.#silent || this.#frozen) for (const s of this.#sockets) s.destroy();
    this.#silent = false;
    this.#frozen = false;
    this.#down = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
