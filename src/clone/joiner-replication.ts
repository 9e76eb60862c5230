import type { CloneContext } from '../methods/method.js';
import type { Server } from '../mysql/server.js';
import type { ReplicationState } from './state-record.js';

/** Stops every replication connection of the joiner that runs; the undo restarts each thread that ran. */
export async function stopJoinerReplication(
  ctx: CloneContext,
  connections: ReplicationState[],
): Promise<string[]> {
  const { joiner, journal, signal } = ctx;
  const flavor = joiner.facts.flavor;
  const stopped: string[] = [];
  for (const r of connections.filter((x) => x.ioOn || x.sqlOn)) {
    const use = flavor.useReplicaConnectionSql(r.connection);
    if (r.connection !== '' && !use) continue;
    const around = (sql: string[]) => (use ? [use, ...sql, flavor.useReplicaConnectionSql('')!] : sql);
    const restart =
      r.ioOn && r.sqlOn
        ? flavor.startReplicaSql
        : r.ioOn
          ? `${flavor.startReplicaSql} IO_THREAD`
          : flavor.startReplicaSqlThreadSql;
    await journal.apply(
      `stop the joiner's replication ${r.connection ? `connection '${r.connection}' ` : ''}from ${r.source}`,
      { target: 'joiner', statements: around([restart]), resumes: true },
      async () => {
        for (const sql of around([flavor.stopReplicaSql])) await joiner.meta.query(sql, [], signal);
      },
    );
    stopped.push(r.connection);
  }
  return stopped;
}

/**
 * At commit: the joiner's previous replication connections are removed (the new replication,
 * if any, was promoted to the default connection already). Their settings could not be restored
 * once removed, which is why this waits until the clone has succeeded.
 */
export async function removeOldReplication(
  ctx: CloneContext,
  connections: ReplicationState[],
  stopped: string[],
  control: Server | undefined,
): Promise<string[]> {
  const { joiner, options } = ctx;
  const flavor = joiner.facts.flavor;
  const removed: string[] = [];
  for (const r of connections) {
    const label = `${r.connection ? `connection '${r.connection}' ` : ''}from ${r.source}`;
    // The default connection now holds the new replication: it was replaced, not removed.
    if (r.connection === '' && options.replicate) {
      removed.push(label);
      continue;
    }
    const use = flavor.useReplicaConnectionSql(r.connection);
    if (r.connection !== '' && !use) continue;
    const s = control ?? joiner.meta;
    if (use) await s.query(use);
    if (!stopped.includes(r.connection)) await s.query(flavor.stopReplicaSql);
    await s.query(flavor.resetReplicaAllSql);
    if (use) await s.query(flavor.useReplicaConnectionSql('')!);
    removed.push(label);
  }
  return removed;
}
