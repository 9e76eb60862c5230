import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ReseedError } from '../errors.js';
import { faultPoint } from '../fault.js';
import { hostUndo } from '../host/host-undo.js';
import { mountsUnder } from '../host/host-state.js';
import type { ServiceControl } from '../host/service-control.js';
import type { Journal } from '../journal/journal.js';

/** The joiner's datadir during a whole-datadir clone: the old one kept aside until the new one stands. */
export interface DatadirSwap {
  datadir: string;
  aside: string;
  /** the file that proves the new datadir is the one reseed made (its undo removes only that) */
  marker: string;
}

export function asideDatadirName(datadir: string, journalId: string): string {
  const d = resolve(datadir);
  return join(dirname(d), `${basename(d)}.reseed-aside-${journalId}`);
}

/**
 * Why a datadir cannot be set aside by renaming it, or undefined. A rename is instant and is
 * undone by another rename, but only within one filesystem: a datadir that is itself a mount
 * point (a dedicated volume for /var/lib/mysql) cannot be renamed.
 */
export function datadirRefusal(datadir: string): string | undefined {
  const d = resolve(datadir);
  if (!existsSync(d)) return `the joiner's datadir ${d} does not exist on this host`;
  if (mountsUnder([d]).includes(d))
    return `the joiner's datadir ${d} is a mount point: reseed sets a datadir aside by renaming it, which a mount point does not allow; mount the volume one level up (e.g. /srv/mysql) with the datadir inside it`;
  return undefined;
}

/**
 * Stops the joiner's mysqld, renames its datadir aside and makes an empty one with the same owner
 * and mode, each step journaled before it acts. Undone in reverse: the new directory removed (only
 * if it holds reseed's marker), the old one renamed back, mysqld started on it. The old datadir is
 * removed only by `dropAsideDatadir`, after the clone is proven.
 */
export async function setAsideDatadir(opts: {
  service: ServiceControl;
  datadir: string;
  journal: Journal;
  signal: AbortSignal;
}): Promise<DatadirSwap> {
  const { service, journal, signal } = opts;
  const datadir = resolve(opts.datadir);
  const refusal = datadirRefusal(datadir);
  if (refusal) throw new ReseedError('PREFLIGHT_FAILED', refusal);
  const swap: DatadirSwap = {
    datadir,
    aside: asideDatadirName(datadir, journal.header.id),
    marker: `.reseed-made-${journal.header.id}`,
  };
  if (existsSync(swap.aside))
    throw new ReseedError(
      'PREFLIGHT_FAILED',
      `${swap.aside} exists already: remove it or run reseed recover`,
    );
  const owner = statSync(datadir);

  if ((await service.status(signal)).running)
    await journal.apply(
      `stop the joiner's mysqld (${service.description})`,
      hostUndo('joiner', { kind: 'start-service', service: service.spec }),
      () => service.stop(signal),
    );
  faultPoint('datadir-stopped');
  await journal.apply(
    `move the joiner's datadir aside to ${swap.aside}`,
    hostUndo('joiner', { kind: 'move-back', from: swap.aside, to: datadir }),
    () => {
      renameSync(datadir, swap.aside);
      return Promise.resolve();
    },
  );
  faultPoint('datadir-moved');
  await journal.apply(
    `make a new empty datadir ${datadir}`,
    hostUndo('joiner', { kind: 'remove-made-directory', path: datadir, marker: swap.marker }),
    () => {
      mkdirSync(datadir, { mode: owner.mode & 0o7777 });
      writeFileSync(join(datadir, swap.marker), `made by reseed, journal ${journal.header.id}\n`);
      chmodSync(datadir, owner.mode & 0o7777);
      chownSync(datadir, owner.uid, owner.gid);
      return Promise.resolve();
    },
  );
  faultPoint('datadir-made');
  return swap;
}

/** After the clone is committed: the marker and the old datadir go. */
export function dropAsideDatadir(swap: DatadirSwap): void {
  rmSync(join(swap.datadir, swap.marker), { force: true });
  rmSync(swap.aside, { recursive: true, force: true });
}
