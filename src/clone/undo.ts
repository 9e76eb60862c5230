import { ReseedError, errorMessage } from '../errors.js';
import type { Flavor } from '../mysql/flavor/index.js';
import type { Journal, RollbackReport, Target, UndoAction, UndoOp } from '../journal/journal.js';
import type { Endpoint } from '../mysql/credentials.js';
import { inspect } from '../mysql/facts.js';
import type { SchemaObject } from '../mysql/objects.js';
import { dropStatement, schemaObjectCount } from '../mysql/objects.js';
import { connect, quoteIdent, sqlErrno } from '../mysql/server.js';
import type { Server } from '../mysql/server.js';
import { createObjects } from '../methods/logical/schema.js';
import { captureAgain, compareHostState } from '../host/host-state.js';
import type { HostState } from '../host/host-state.js';
import { isThisHost } from '../host/host-id.js';
import { runHostUndo } from '../host/host-undo.js';
import { captureState, compareState, settledReplication } from './state-record.js';
import type { StateRecord } from './state-record.js';

/**
 * Undo operations that look before they act. Plain statements cannot say "move back what moved"
 * or "drop this schema only if nothing is in it"; these can, so an undo of a step that was cut off
 * half-way never destroys what the step had not touched yet.
 */
export type UndoOperation =
  /**
   * For each move, the tables of `from` listed in `tables` go back to `to` (made first with
   * `createSchema`): all in one RENAME TABLE, which the server does whole or not at all.
   */
  | {
      kind: 'rename-back-all';
      moves: { from: string; to: string; tables: string[]; createSchema: string }[];
    }
  /** DROP DATABASE, refused (the step fails) when the schema holds any table, routine or event. */
  | { kind: 'drop-schema-if-empty'; schema: string }
  /** Each object dropped if it exists and made again as saved (views in the order that works). */
  | { kind: 'recreate-objects'; objects: SchemaObject[] }
  /**
   * A named replication connection stopped and removed if it exists, then (all replica threads
   * being stopped) gtid_slave_pos set back to `gtidSlavePos` when given.
   */
  | { kind: 'remove-replica-connection'; connection: string; gtidSlavePos?: string };

export function undoOp(op: UndoOperation): UndoOp {
  return op as unknown as UndoOp;
}

async function runOperation(s: Server, op: UndoOperation): Promise<void> {
  switch (op.kind) {
    case 'rename-back-all': {
      const back: string[] = [];
      for (const m of op.moves) {
        await s.query(m.createSchema);
        const rows = await s.query(
          'SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?',
          [m.from],
        );
        const present = new Set(rows.map((r) => String(r.n)));
        for (const t of m.tables.filter((x) => present.has(x)))
          back.push(`${quoteIdent(m.from)}.${quoteIdent(t)} TO ${quoteIdent(m.to)}.${quoteIdent(t)}`);
      }
      if (back.length > 0) await s.query(`RENAME TABLE ${back.join(', ')}`);
      return;
    }
    case 'drop-schema-if-empty': {
      const [exists] = await s.query('SELECT 1 AS x FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [
        op.schema,
      ]);
      if (!exists) return;
      const n = await schemaObjectCount(s, op.schema);
      if (n > 0)
        throw new ReseedError(
          'JOURNAL',
          `schema ${op.schema} still holds ${n} table(s)/routine(s)/event(s): left in place, not dropped`,
        );
      await s.query(`DROP DATABASE ${quoteIdent(op.schema)}`);
      return;
    }
    case 'remove-replica-connection': {
      const { flavor } = await inspect(s);
      const rows = await s.query(flavor.allReplicaStatusSql);
      if (
        rows.some(
          (r) => flavor.parseReplicaStatus(r).connection.toLowerCase() === op.connection.toLowerCase(),
        )
      ) {
        const use = flavor.useReplicaConnectionSql(op.connection);
        if (use) await s.query(use);
        try {
          await s.query(flavor.stopReplicaSql);
          await s.query(flavor.resetReplicaAllSql);
        } finally {
          const back = flavor.useReplicaConnectionSql('');
          if (back) await s.query(back);
        }
      }
      if (op.gtidSlavePos !== undefined)
        for (const sql of flavor.restoreGtidPositionSql(op.gtidSlavePos)) await s.query(sql);
      return;
    }
    case 'recreate-objects': {
      for (const o of [...op.objects].reverse()) await s.query(dropStatement(o));
      const facts = await inspect(s);
      await createObjects({ joiner: s, flavor: facts.flavor, objects: op.objects, asReplica: false });
      return;
    }
  }
}

/** Runs a journal's undo against fresh sessions (the operation's own may be broken). */
export async function rollbackJournal(
  journal: Journal,
  endpoints: Record<Target, Endpoint>,
  beforeResume?: () => Promise<void>,
): Promise<RollbackReport> {
  const sessions = new Map<Target, Server>();
  const session = async (target: Target): Promise<Server> => {
    let s = sessions.get(target);
    if (!s) {
      s = await connect(endpoints[target], {
        init: target === 'joiner' ? ['SET SESSION sql_log_bin = 0'] : [],
      });
      sessions.set(target, s);
    }
    return s;
  };
  try {
    // A host's undo steps are a stack: each assumes the ones after it were undone (mysqld is
    // started only on the datadir moved back). After one fails, the rest on that host wait.
    const failedHosts = new Set<Target>();
    return await journal.rollback(async (action: UndoAction) => {
      if (action.host) {
        if (failedHosts.has(action.target))
          throw new ReseedError(
            'JOURNAL',
            `not run: an undo before it on the ${action.target}'s host failed`,
          );
        try {
          return await runHostUndo(action.host);
        } catch (err) {
          failedHosts.add(action.target);
          throw err;
        }
      }
      const s = await session(action.target);
      try {
        for (const sql of action.statements ?? []) await s.query(sql);
      } catch (err) {
        // Resuming a replication connection that an earlier undo removed (1617): nothing to resume.
        if (!(action.resumes && sqlErrno(err) === 1617)) throw err;
        await s.query("SET SESSION default_master_connection = ''").catch(() => undefined);
      }
      if (action.op) await runOperation(s, action.op as unknown as UndoOperation);
    }, beforeResume);
  } finally {
    for (const s of sessions.values()) await s.close();
  }
}

/** What a journal keeps of the servers before an operation's first change. */
export interface RecordedState {
  donor: StateRecord;
  joiner: StateRecord;
  /** joiner schemas whose rows were checksummed */
  dataSchemas: string[];
  accounts: boolean;
}

export interface UndoOutcome {
  report: RollbackReport;
  /** 'donor: ...' / 'joiner: ...' lines; undefined when the journal kept no state record */
  differences: string[] | undefined;
}

/**
 * Rolls a journal back and compares each server with the state recorded before the first change.
 * The joiner's data is read just before an undo that restarts its replication (which may then
 * apply new transactions of its own source); replication states are read after every undo, once
 * restarted threads have settled.
 */
export async function undoAndCompare(
  journal: Journal,
  endpoints: Record<Target, Endpoint>,
): Promise<UndoOutcome> {
  const before = journal.state('before') as RecordedState | undefined;
  let joinerData: StateRecord | undefined;
  const flavors = new Map<Target, Flavor>();
  const flavorOf = async (target: Target, s: Server) => {
    let f = flavors.get(target);
    if (!f) {
      f = (await inspect(s)).flavor;
      flavors.set(target, f);
    }
    return f;
  };
  const report = await rollbackJournal(journal, endpoints, async () => {
    if (!before) return;
    // A session of its own: the undo's session has had its sql_mode and collation changed. A
    // joiner that cannot be reached leaves nothing to compare; the undo goes on regardless.
    const s = await connect(endpoints.joiner).catch(() => undefined);
    if (!s) return;
    try {
      joinerData = await captureState(s, {
        flavor: await flavorOf('joiner', s),
        dataSchemas: before.dataSchemas,
        schemas: true,
        accounts: before.accounts,
      });
    } catch {
      joinerData = undefined;
    } finally {
      await s.close();
    }
  });
  // An undo that failed (a server gone, say) leaves nothing worth comparing yet: recover says so.
  if (report.failed.length > 0) return { report, differences: undefined };
  const differences = await compareHosts(journal);
  if (!before || !joinerData)
    return { report, differences: journal.state(HOST_STATE_LABEL) === undefined ? undefined : differences };
  for (const target of ['donor', 'joiner'] as const) {
    const s = await connect(endpoints[target]).catch((err: unknown) => {
      // Undone, but not proven: say so rather than claim it.
      differences.push(`${target}: could not be compared (${errorMessage(err)})`);
      return undefined;
    });
    if (!s) continue;
    try {
      const flavor = await flavorOf(target, s);
      const data =
        target === 'joiner'
          ? joinerData
          : await captureState(s, { flavor, dataSchemas: [], schemas: false, accounts: false });
      const after = { ...data, replication: await settledReplication(s, flavor, before[target]) };
      differences.push(...compareState(before[target], after).map((d) => `${target}: ${d}`));
    } finally {
      await s.close();
    }
  }
  return { report, differences };
}

/** The journal's label for the hosts' state before the first change: Partial<Record<Target, HostState>>. */
export const HOST_STATE_LABEL = 'host-before';

/** Each recorded host compared with what it is now; a host other than this one cannot be read here. */
async function compareHosts(journal: Journal): Promise<string[]> {
  const hosts = (journal.state(HOST_STATE_LABEL) ?? {}) as Partial<Record<Target, HostState>>;
  const out: string[] = [];
  for (const [target, before] of Object.entries(hosts) as [Target, HostState][]) {
    if (!isThisHost(before.host)) {
      out.push(`${target} host: ${before.host.hostname} could not be compared from here`);
      continue;
    }
    const after = await captureAgain(before).catch((err: unknown) => errorMessage(err));
    if (typeof after === 'string') out.push(`${target} host: could not be read (${after})`);
    else out.push(...compareHostState(before, after).map((d) => `${target} host: ${d}`));
  }
  return out;
}
