import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * Which machine a host step ran on. A journal's host undo (move a directory back, restart mysqld)
 * must run on that machine and no other: the same path elsewhere is someone else's data.
 */
export interface HostId {
  hostname: string;
  /** systemd's /etc/machine-id (also on machines without systemd running); '' when absent */
  machineId: string;
}

export function thisHost(): HostId {
  let machineId = '';
  for (const path of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      machineId = readFileSync(path, 'utf8').trim();
      if (machineId) break;
    } catch {
      // try the next
    }
  }
  return { hostname: hostname(), machineId };
}

/** Same machine: the machine ids agree when both are known, else the host names do. */
export function isThisHost(id: HostId): boolean {
  const here = thisHost();
  if (id.machineId && here.machineId) return id.machineId === here.machineId;
  return id.hostname === here.hostname;
}
