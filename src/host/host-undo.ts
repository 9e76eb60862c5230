import { existsSync, readdirSync, renameSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ReseedError } from '../errors.js';
import type { UndoAction, UndoOp } from '../journal/journal.js';
import { isThisHost, thisHost } from './host-id.js';
import { run } from '../exec/run.js';
import { serviceControl } from './service-control.js';
import { datasetExists, moveVolume, removeReceived, removeVolume, rollbackTo } from './volumes.js';
import type { Snapshot, Volume } from './volumes.js';
import type { ServiceSpec } from './service-control.js';

/**
 * Undo operations on a host. Like the SQL ones they look before they act: a step cut off half-way
 * (the rename did not happen, the directory was never made) leaves nothing for its undo to do,
 * and an undo never deletes what it cannot prove reseed made.
 */
export type HostOperation =
  /** `from` goes back to `to`; nothing when `from` is gone; refused when `to` holds anything */
  | { kind: 'move-back'; from: string; to: string }
  /** a directory reseed made, removed with what is in it only if it still holds the marker file */
  | { kind: 'remove-made-directory'; path: string; marker: string }
  /** a temporary file, removed if it exists */
  | { kind: 'remove-file'; path: string }
  /** `skipReplicaStart`: its replication was stopped before, and stays so (--skip-slave-start) */
  | { kind: 'start-service'; service: ServiceSpec; skipReplicaStart?: boolean }
  | { kind: 'stop-service'; service: ServiceSpec }
  /** a ZFS dataset at `volume.path` mounted back at `to`; nothing when it is not there */
  | { kind: 'move-volume'; volume: Volume; to: string }
  /** a btrfs subvolume or ZFS dataset reseed made, destroyed if it exists */
  | { kind: 'remove-volume'; volume: Volume }
  /** a received snapshot (and, on ZFS, its dataset), destroyed if it exists */
  | { kind: 'remove-received'; snapshot: Snapshot }
  /**
   * ZFS: a dataset rolled back to `snapshot`, the snapshots after it destroyed (an incremental
   * receive writes the dataset itself: destroying the new snapshot alone leaves it changed)
   */
  | { kind: 'rollback-to'; snapshot: Snapshot };

/** The undo of a step on this host, as the journal keeps it. */
export function hostUndo(target: UndoAction['target'], op: HostOperation): UndoAction {
  return { target, host: { on: thisHost(), op: op as unknown as UndoOp } };
}

export function describeHostOperation(op: HostOperation): string {
  switch (op.kind) {
    case 'move-back':
      return `move ${op.from} back to ${op.to}`;
    case 'remove-made-directory':
      return `remove ${op.path}`;
    case 'remove-file':
      return `remove ${op.path}`;
    case 'start-service':
      return `start ${op.service.kind === 'sandbox' ? `sandbox ${op.service.name}` : 'mysqld'}`;
    case 'stop-service':
      return `stop ${op.service.kind === 'sandbox' ? `sandbox ${op.service.name}` : 'mysqld'}`;
    case 'move-volume':
      return `mount ${op.volume.dataset ?? op.volume.path} back at ${op.to}`;
    case 'remove-volume':
      return `destroy ${op.volume.dataset ?? op.volume.path}`;
    case 'remove-received':
      return `destroy the received snapshot ${op.snapshot.id}`;
    case 'rollback-to':
      return `roll ${op.snapshot.id.replace(/@.*$/, '')} back to ${op.snapshot.id}`;
  }
}

export async function runHostUndo(
  host: NonNullable<UndoAction['host']>,
  signal?: AbortSignal,
): Promise<void> {
  if (!isThisHost(host.on))
    throw new ReseedError(
      'JOURNAL',
      `this undo runs on host ${host.on.hostname}, not here: run reseed recover there (or start its agent)`,
    );
  const op = host.op as unknown as HostOperation;
  switch (op.kind) {
    case 'move-back': {
      if (!existsSync(op.from)) return;
      if (existsSync(op.to)) {
        // An empty directory in the way (made and emptied, never filled) may go; anything else stays.
        if (statSync(op.to).isDirectory() && readdirSync(op.to).length === 0) rmdirSync(op.to);
        else
          throw new ReseedError(
            'JOURNAL',
            `cannot move ${op.from} back: ${op.to} exists and is not empty (left both in place)`,
          );
      }
      renameSync(op.from, op.to);
      return;
    }
    case 'remove-made-directory': {
      if (!existsSync(op.path)) return;
      if (!existsSync(join(op.path, op.marker)))
        throw new ReseedError(
          'JOURNAL',
          `${op.path} does not hold reseed's marker ${op.marker}: it is not the directory reseed made, left in place`,
        );
      rmSync(op.path, { recursive: true, force: true });
      return;
    }
    case 'remove-file':
      rmSync(op.path, { force: true });
      return;
    case 'start-service': {
      const control = serviceControl(op.service);
      if (!(await control.status(signal)).running)
        await control.start(signal, { skipReplicaStart: op.skipReplicaStart === true });
      return;
    }
    case 'stop-service': {
      const control = serviceControl(op.service);
      if ((await control.status(signal)).running) await control.stop(signal);
      return;
    }
    case 'move-volume': {
      const v = op.volume;
      if (v.fs === 'zfs') {
        if (!(await datasetExists(v.dataset!, signal))) return;
        const [mountpoint] = (
          await run('zfs', ['get', '-H', '-o', 'value', 'mountpoint', v.dataset!])
        ).stdout.split('\n');
        if (mountpoint !== v.path) return;
      } else if (!existsSync(v.path)) return;
      await moveVolume(v, op.to, signal);
      return;
    }
    case 'remove-volume':
      await removeVolume(op.volume, signal);
      return;
    case 'remove-received':
      await removeReceived(op.snapshot, signal);
      return;
    case 'rollback-to':
      await rollbackTo(op.snapshot, signal);
      return;
  }
}
