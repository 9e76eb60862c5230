import { DEFAULT_READ_LOCK_POLICY } from '../mysql/read-lock.js';
import type { CloneOptions } from '../methods/method.js';
import { DEFAULT_THROTTLE } from '../throttle/donor-throttle.js';

/** The clone's defaults, as `reseed clone --help` documents them. */
export function defaultCloneOptions(over: Partial<CloneOptions> = {}): CloneOptions {
  return {
    method: 'logical',
    schemas: [],
    parallel: 4,
    chunkRows: 100_000,
    deferIndexes: true,
    loadMode: 'auto',
    lockMode: 'auto',
    readLock: DEFAULT_READ_LOCK_POLICY,
    users: false,
    force: false,
    replicate: true,
    gtid: true,
    replicateFrom: 'donor',
    replicationUser: undefined,
    replicationPassword: undefined,
    replicationHost: undefined,
    replicationSsl: undefined,
    catchupTimeoutMs: 600_000,
    writable: false,
    verify: false,
    dryRun: false,
    throttle: DEFAULT_THROTTLE,
    ...over,
  };
}
