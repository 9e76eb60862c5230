/**
 * The copy method's guard, a process of its own (node copy-guard.js RECORD), detached from the
 * agent that stopped its host's mysqld for a copy's second pass. While RECORD exists it checks,
 * twice a second, that the agent still lives; when the agent is gone (kill -9, OOM) or the record's
 * deadline has passed, it starts mysqld and removes RECORD. It exits as soon as RECORD is gone
 * (the agent started mysqld itself). It never stops anything.
 */
import { readFileSync, renameSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { serviceControl } from '../host/service-control.js';
import type { ServiceSpec } from '../host/service-control.js';

const record = process.argv[2];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function main(): Promise<void> {
  if (!record) return;
  for (;;) {
    let down: { service: ServiceSpec; agentPid: number; deadline: number };
    try {
      down = JSON.parse(readFileSync(record, 'utf8')) as typeof down;
    } catch {
      return; // gone: the agent started mysqld
    }
    if (!alive(down.agentPid) || Date.now() > down.deadline) {
      // Taken by renaming: the agent's next start, sweeping, acts on what it finds only if this did not.
      const taken = `${record}.taken`;
      try {
        renameSync(record, taken);
      } catch {
        return;
      }
      // The agent may have died while mysqld was shutting down: a running mysqld is watched for a while.
      const service = serviceControl(down.service);
      for (const until = Date.now() + 120_000; Date.now() < until; await sleep(1000))
        if (!(await service.status()).running) {
          await service.start();
          break;
        }
      rmSync(taken, { force: true });
      return;
    }
    await sleep(500);
  }
}

// Nothing else keeps this process alive: it ends when main() does.
main().catch(() => {
  process.exitCode = 1;
});
