import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capabilityPlanLines, capabilityProblems } from '../../src/clone/capabilities.js';
import type { CloneSide, MethodCapabilities, TransferMethod } from '../../src/methods/method.js';
import { logical } from '../../src/methods/logical/index.js';
import { detectFlavor, parseVersion } from '../../src/mysql/flavor/index.js';

/** Pure logic: a method is only its declared capabilities here, the sides only their versions. */
const method = (capabilities: Partial<MethodCapabilities>): TransferMethod => ({
  ...logical,
  name: 'physical-test',
  capabilities: { ...logical.capabilities, ...capabilities },
});
const side = (version: string): CloneSide =>
  ({ facts: { flavor: detectFlavor(version), version: parseVersion(version) } }) as unknown as CloneSide;
const sides = (d: string, j: string) => ({ donor: side(d), joiner: side(j), agents: false });

test('the logical method works across versions and needs nothing of the hosts', () => {
  assert.deepEqual(capabilityProblems(logical, sides('10.11.6-MariaDB', '8.0.36')), []);
  assert.deepEqual(capabilityPlanLines(logical), []);
});

test('a same-version method is refused across versions and flavors, with the way out', () => {
  const m = method({ crossVersion: false });
  assert.deepEqual(capabilityProblems(m, sides('10.11.6-MariaDB', '10.11.9-MariaDB')), []);
  const [minor] = capabilityProblems(m, sides('10.11.6-MariaDB', '11.4.2-MariaDB'));
  assert.match(
    minor!,
    /donor runs mariadb 10\.11\.6-MariaDB, the joiner mariadb 11\.4\.2-MariaDB \(use --method logical/,
  );
  assert.equal(capabilityProblems(m, sides('8.0.36', '10.11.6-MariaDB')).length, 1);
});

test('a method that needs agents is refused without them, and says where to read', () => {
  const m = method({ needsAgents: true });
  assert.match(
    capabilityProblems(m, sides('10.11.6-MariaDB', '10.11.6-MariaDB'))[0]!,
    /needs a reseed agent on the donor's and on the joiner's host/,
  );
  assert.deepEqual(
    capabilityProblems(m, { ...sides('10.11.6-MariaDB', '10.11.6-MariaDB'), agents: true }),
    [],
  );
});

test('the plan says what a method locks, stops and replaces', () => {
  const lines = capabilityPlanLines(
    method({ donorLock: 'for-copy', needsJoinerStopped: true, replaces: 'datadir' }),
  );
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /block the donor's writes for the whole copy/);
  assert.match(lines[1]!, /stop the joiner's mysqld/);
  assert.match(lines[2]!, /accounts and passwords, system tables and replication state become the donor's/);
});
