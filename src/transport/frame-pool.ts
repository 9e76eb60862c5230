import { MAX_FRAME_RAW } from './frame.js';

interface Use {
  /** writes of views of the buffer not finished yet */
  writes: number;
  /** the producer still reads into it or makes frames of it */
  held: boolean;
}

/**
 * Read buffers for the sender, used again once every write of them has finished. A buffer
 * allocated per read is garbage a moment later, and V8 answers a few dozen megabytes of such
 * garbage with a full collection that marks the agent's whole heap: that was a quarter of the
 * sending agent's CPU. A pooled buffer goes back to the pool only when its producer let it go
 * and the socket finished every write of a view of it (writeFrames); one whose write never ends
 * (a connection destroyed) is simply collected.
 */
export class FramePool {
  #free: ArrayBuffer[] = [];
  #uses = new WeakMap<ArrayBuffer, Use>();

  constructor(readonly keep = 32) {}

  /** A buffer of MAX_FRAME_RAW bytes, held by the caller until drop(). */
  take(): Buffer {
    const ab = this.#free.pop() ?? new ArrayBuffer(MAX_FRAME_RAW);
    this.#uses.set(ab, { writes: 0, held: true });
    return Buffer.from(ab);
  }

  /** The producer is done with `buf` (its frames are all handed to the writer). */
  drop(buf: Buffer): void {
    const use = this.#uses.get(buf.buffer as ArrayBuffer);
    if (!use) return;
    use.held = false;
    this.#settle(buf.buffer as ArrayBuffer, use);
  }

  /** A write of `chunk` begins: for a view of a pooled buffer, the callback for its end. */
  writing(chunk: Buffer): (() => void) | undefined {
    const ab = chunk.buffer as ArrayBuffer;
    const use = this.#uses.get(ab);
    if (!use) return undefined;
    use.writes++;
    return () => {
      use.writes--;
      this.#settle(ab, use);
    };
  }

  get free(): number {
    return this.#free.length;
  }

  #settle(ab: ArrayBuffer, use: Use): void {
    if (use.held || use.writes > 0) return;
    this.#uses.delete(ab);
    if (this.#free.length < this.keep) this.#free.push(ab);
  }
}

/** The sending agent's pool, shared by its streams. */
export const framePool = new FramePool();
