/**
 * Test driver: sets a sandbox's datadir aside as a whole-datadir clone does (journal, state
 * records, stop mysqld, rename, new empty datadir), writes a file where the copy would go, then
 * fails (the rollback runs in-process, as a clone's does) or dies at RESEED_FAULT=<point>:kill.
 * Usage: node --import tsx datadir-driver.ts SANDBOX SCHEMA
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { faultPoint } from '../../src/fault.js';
import { setAsideDatadir, asideDatadirName } from '../../src/clone/joiner-datadir.js';
import { rollback } from '../../src/clone/outcome.js';
import { captureState } from '../../src/clone/state-record.js';
import { HOST_STATE_LABEL } from '../../src/clone/undo.js';
import { captureHostState } from '../../src/host/host-state.js';
import { serviceControl } from '../../src/host/service-control.js';
import { Journal } from '../../src/journal/journal.js';
import { publicEndpoint } from '../../src/mysql/credentials.js';
import { inspect } from '../../src/mysql/facts.js';
import { connect } from '../../src/mysql/server.js';
import { createLogger } from '../../src/log.js';
import { getSandbox, sandboxEndpoint } from '../../src/sandbox/sandbox.js';

const [name, schema] = process.argv.slice(2) as [string, string];
const sandbox = getSandbox(name)!;
const endpoint = sandboxEndpoint(sandbox);
const datadir = join(sandbox.dir, 'data');
const service = serviceControl({ kind: 'sandbox', name });
const journal = Journal.create({
  operation: 'clone',
  donor: publicEndpoint(endpoint),
  joiner: publicEndpoint(endpoint),
});

const s = await connect(endpoint);
const { flavor } = await inspect(s);
// The sandbox stands in for both servers; recorded as a clone records each.
const donor = await captureState(s, { flavor, dataSchemas: [], schemas: false, accounts: false });
const joiner = await captureState(s, { flavor, dataSchemas: [schema], schemas: true, accounts: false });
await s.close();
journal.keepState('before', { donor, joiner, dataSchemas: [schema], accounts: false });
journal.keepState(HOST_STATE_LABEL, {
  joiner: await captureHostState({
    paths: [datadir, asideDatadirName(datadir, journal.header.id)],
    service: service.spec,
    listen: { host: endpoint.host, port: endpoint.port },
  }),
});
try {
  const swap = await setAsideDatadir({ service, datadir, journal, signal: new AbortController().signal });
  writeFileSync(join(swap.datadir, 'ibdata1'), Buffer.alloc(1 << 20, 1));
  faultPoint('datadir-filled');
  throw new Error('the copy failed (test driver)');
} catch (err) {
  const failed = await rollback(
    journal,
    { donor: endpoint, joiner: endpoint },
    err,
    createLogger({ level: 'silent' }),
  );
  process.stdout.write(`${failed.message}\n${((failed as { hints?: string[] }).hints ?? []).join('\n')}\n`);
  process.exitCode = 1;
}
