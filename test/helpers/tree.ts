import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';

export interface TreeFacts {
  kind: 'dir' | 'file' | 'symlink';
  mode: number;
  size: number;
  sha256?: string;
  target?: string;
  /** bytes the file takes on disk: less than its size when it has holes */
  allocated?: number;
}

/**
 * Every entry under `root`, read independently of reseed (raw byte names, hex-keyed), with each
 * file's SHA-256: what "arrived equal" is checked against.
 */
export function readTree(root: string): Map<string, TreeFacts> {
  const out = new Map<string, TreeFacts>();
  const walk = (rel: Buffer) => {
    const dir = rel.length ? Buffer.concat([Buffer.from(root + '/'), rel]) : Buffer.from(root);
    for (const name of readdirSync(dir, { encoding: 'buffer' })) {
      if (name.toString().startsWith('.reseed-made-')) continue;
      const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const abs = Buffer.concat([Buffer.from(root + '/'), r]);
      const st = lstatSync(abs);
      const key = r.toString('hex');
      if (st.isDirectory()) {
        out.set(key, { kind: 'dir', mode: st.mode & 0o7777, size: 0 });
        walk(r);
      } else if (st.isSymbolicLink())
        out.set(key, {
          kind: 'symlink',
          mode: 0,
          size: 0,
          target: readlinkSync(abs, { encoding: 'buffer' }).toString('hex'),
        });
      else
        out.set(key, {
          kind: 'file',
          mode: st.mode & 0o7777,
          size: st.size,
          sha256: createHash('sha256').update(readFileSync(abs)).digest('hex'),
          allocated: st.blocks * 512,
        });
    }
  };
  walk(Buffer.alloc(0));
  return out;
}

/** Differences, one line each: empty when both trees hold the same entries, bytes and modes. */
export function compareTrees(a: Map<string, TreeFacts>, b: Map<string, TreeFacts>): string[] {
  const out: string[] = [];
  const name = (k: string) => JSON.stringify(Buffer.from(k, 'hex').toString());
  for (const [k, x] of a) {
    const y = b.get(k);
    if (!y) out.push(`${name(k)} missing`);
    else if (
      x.kind !== y.kind ||
      x.mode !== y.mode ||
      x.size !== y.size ||
      x.sha256 !== y.sha256 ||
      x.target !== y.target
    )
      out.push(`${name(k)} differs: ${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`${name(k)} extra`);
  return out;
}
