import { sandboxAgentDown, sandboxAgentUp } from '../../src/agent/sandbox-agent.js';
import { getSandbox } from '../../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../../src/sandbox/sandbox.js';
import { createReplUser } from './sandboxes.js';
import type { TestServer } from './sandboxes.js';

/** Helpers of the clone-through-agents tests (clone.test.ts, copy.test.ts). */
export const sandboxInfo = (s: TestServer): SandboxInfo => getSandbox(s.info.name)!;

export async function checksum(s: TestServer, table: string): Promise<string> {
  const [r] = await s.sql(`CHECKSUM TABLE ${table}`);
  return String(r?.Checksum);
}

/** `reseed clone` from the donor's agent to the joiner's, replicating as `repl`. */
export function agentCloneArgs(
  donor: TestServer,
  joiner: TestServer,
  method: string,
  ...extra: string[]
): string[] {
  return [
    'clone',
    '--from',
    `agent://${donor.info.name}`,
    '--to',
    `agent://${joiner.info.name}`,
    '--method',
    method,
    '--replication-user',
    'repl',
    ...extra,
  ];
}

/** A sandbox's agent started again, with RESEED_FAULT set to `fault` (or unset). */
export async function restartAgent(s: TestServer, fault?: string): Promise<void> {
  await sandboxAgentDown(sandboxInfo(s));
  if (fault) process.env.RESEED_FAULT = fault;
  try {
    await sandboxAgentUp(sandboxInfo(s));
  } finally {
    delete process.env.RESEED_FAULT;
  }
}

/**
 * The donor's data (an InnoDB table, a table of `otherEngine`, a table for writes) and its
 * replication account; the joiner's own schema `legacy`, whose checksum is returned; both agents up.
 */
export async function seedPair(donor: TestServer, joiner: TestServer, otherEngine: string): Promise<string> {
  await createReplUser(donor);
  await donor.sql('CREATE DATABASE shop');
  await donor.sql('CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(64), price DECIMAL(10,2))');
  await donor.sql(
    "INSERT INTO shop.items SELECT seq, CONCAT('item ', seq), seq / 7 FROM shop.seq_1_to_30000",
  );
  await donor.sql(`CREATE TABLE shop.notes (id INT PRIMARY KEY, body TEXT) ENGINE=${otherEngine}`);
  await donor.sql("INSERT INTO shop.notes SELECT seq, REPEAT('n', seq % 200) FROM shop.seq_1_to_2000");
  await donor.sql('CREATE TABLE shop.w (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))');
  await joiner.sql('CREATE DATABASE legacy');
  await joiner.sql('CREATE TABLE legacy.keep (id INT PRIMARY KEY, v VARCHAR(20))');
  await joiner.sql("INSERT INTO legacy.keep SELECT seq, CONCAT('v', seq) FROM legacy.seq_1_to_500");
  await sandboxAgentUp(sandboxInfo(donor));
  await sandboxAgentUp(sandboxInfo(joiner));
  return checksum(joiner, 'legacy.keep');
}
