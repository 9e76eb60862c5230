import type { CloneContext, TransferMethod } from '../methods/method.js';

type Sides = Pick<CloneContext, 'donor' | 'joiner'>;

/**
 * What the method's capabilities forbid here, one line each. The clone operation asks these of
 * every method alike; it never branches on a method's name.
 */
export function capabilityProblems(method: TransferMethod, ctx: Sides & { agents: boolean }): string[] {
  const c = method.capabilities;
  const out: string[] = [];
  if (c.needsAgents && !ctx.agents)
    out.push(
      `--method ${method.name} reads and writes files on the database hosts: it needs a reseed agent on the donor's and on the joiner's host (see docs/agents.md)`,
    );
  const d = ctx.donor.facts;
  const j = ctx.joiner.facts;
  if (
    !c.crossVersion &&
    (d.flavor.name !== j.flavor.name ||
      d.version.major !== j.version.major ||
      d.version.minor !== j.version.minor)
  )
    out.push(
      `--method ${method.name} copies the donor's files, which only the same server can read: the donor runs ${d.flavor.name} ${d.version.text}, the joiner ${j.flavor.name} ${j.version.text} (use --method logical across versions)`,
    );
  return out;
}

/** The plan's lines that come from the method's capabilities: what it locks, stops and replaces. */
export function capabilityPlanLines(method: TransferMethod): string[] {
  const c = method.capabilities;
  const out: string[] = [];
  if (c.donorLock === 'for-copy')
    out.push("block the donor's writes for the whole copy (a read lock, bounded by --max-lock-time)");
  if (c.needsJoinerStopped)
    out.push("stop the joiner's mysqld for the copy; it is started again on the new data");
  if (c.replaces === 'datadir')
    out.push(
      "replace the joiner's whole datadir: its schemas, accounts and passwords, system tables and replication state become the donor's; the old datadir is kept aside, put back if the clone fails, removed once it is verified",
    );
  return out;
}
