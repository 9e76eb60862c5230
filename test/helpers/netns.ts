import { execFileSync } from 'node:child_process';

/** Two "hosts": network namespaces a and b joined by a veth pair, each side limited with tc tbf. */
export interface Hosts {
  ns: { a: string; b: string };
  addr: { a: string; b: string };
  dev: { a: string; b: string };
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

export const inNs = (n: string, ...args: string[]) =>
  execFileSync('ip', ['netns', 'exec', n, ...args], { stdio: 'pipe', env: process.env });

/**
 * Makes the two namespaces (named from `tag` and this process's PID), addresses 10.`net`.1 and
 * 10.`net`.2 on the veth pair, loopback up, `rate` each way (netem does not exist on this kernel).
 */
export function makeHosts(tag: string, net: string, rate: string, burst: string): Hosts {
  const h: Hosts = {
    ns: { a: `${tag}-a-${process.pid}`, b: `${tag}-b-${process.pid}` },
    addr: { a: `10.${net}.1`, b: `10.${net}.2` },
    dev: { a: `${tag}a${process.pid}`, b: `${tag}b${process.pid}` },
  };
  ip('netns', 'add', h.ns.a);
  ip('netns', 'add', h.ns.b);
  ip('link', 'add', h.dev.a, 'type', 'veth', 'peer', 'name', h.dev.b);
  ip('link', 'set', h.dev.a, 'netns', h.ns.a);
  ip('link', 'set', h.dev.b, 'netns', h.ns.b);
  for (const s of ['a', 'b'] as const) {
    inNs(h.ns[s], 'ip', 'link', 'set', 'lo', 'up');
    inNs(h.ns[s], 'ip', 'addr', 'add', `${h.addr[s]}/24`, 'dev', h.dev[s]);
    inNs(h.ns[s], 'ip', 'link', 'set', h.dev[s], 'up');
    inNs(
      h.ns[s],
      'tc',
      'qdisc',
      'add',
      'dev',
      h.dev[s],
      'root',
      'tbf',
      'rate',
      rate,
      'burst',
      burst,
      'latency',
      '100ms',
    );
  }
  return h;
}

/** Deletes the namespaces (and with them the veth pair); those never made are skipped. */
export function removeHosts(h: Hosts | undefined): void {
  if (!h) return;
  for (const n of Object.values(h.ns)) {
    try {
      ip('netns', 'del', n);
    } catch {
      // never made
    }
  }
}
