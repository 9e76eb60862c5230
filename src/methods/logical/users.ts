import type { Journal } from '../../journal/journal.js';
import type { Server } from '../../mysql/server.js';
import { quoteString } from '../../mysql/server.js';
import type { ProgressSink } from '../../progress.js';

/** Accounts that belong to the server itself, never copied. */
const SYSTEM_USERS = [
  'root',
  'mariadb.sys',
  'mysql',
  'mysql.sys',
  'mysql.session',
  'mysql.infoschema',
  'debian-sys-maint',
  // MariaDB's built-in role that every account has
  'PUBLIC',
];

function account(user: string, host: string): string {
  return `${quoteString(user)}@${quoteString(host)}`;
}

interface Principal {
  /** `'user'@'host'` or, for a MariaDB role, `'role'` */
  name: string;
  role: boolean;
  user: string;
  host: string;
}

/** The donor's accounts and MariaDB roles, system accounts left out. */
async function principals(donor: Server, signal?: AbortSignal): Promise<Principal[]> {
  const marks = SYSTEM_USERS.map(() => '?').join(', ');
  const rows = await donor
    .query(
      `SELECT User AS u, Host AS h, IFNULL(is_role, 'N') = 'Y' AS r FROM mysql.user
       WHERE User <> '' AND User NOT IN (${marks}) ORDER BY 3 DESC, User, Host`,
      SYSTEM_USERS,
      signal,
    )
    // MySQL has no is_role column: its roles are accounts, and copy as such.
    .catch(() =>
      donor.query(
        `SELECT User AS u, Host AS h, 0 AS r FROM mysql.user WHERE User <> '' AND User NOT IN (${marks}) ORDER BY User, Host`,
        SYSTEM_USERS,
        signal,
      ),
    );
  return rows.map((r) => {
    const role = Number(r.r) === 1;
    const user = String(r.u);
    const host = String(r.h);
    return { name: role ? quoteString(user) : account(user, host), role, user, host };
  });
}

/**
 * Copies accounts, MariaDB roles and their grants (--users). An account or role that already
 * exists on the joiner is kept as it is and reported. All are created first and granted after,
 * so that a grant of a role finds the role whatever the order. Password hashes pass through
 * memory only: the journal's undo just drops what this clone created.
 */
export async function copyUsers(args: {
  donor: Server;
  joiner: Server;
  journal: Journal;
  progress: ProgressSink;
  signal?: AbortSignal | undefined;
}): Promise<number> {
  const { donor, joiner, journal, progress, signal } = args;
  const created: Principal[] = [];
  for (const p of await principals(donor, signal)) {
    const [exists] = await joiner.query(
      'SELECT 1 AS x FROM mysql.user WHERE User = ? AND Host = ?',
      [p.user, p.role ? '' : p.host],
      signal,
    );
    if (exists) {
      progress.emit({
        type: 'warning',
        message: `${p.role ? 'role' : 'account'} ${p.name} already exists on the joiner; kept as it is`,
      });
      continue;
    }
    // CREATE ROLE makes the joiner's own session the role's admin, as on the donor.
    const create = p.role
      ? `CREATE ROLE ${p.name}`
      : String(Object.values((await donor.query(`SHOW CREATE USER ${p.name}`, [], signal))[0] ?? {})[0]);
    await journal.apply(
      `create ${p.role ? 'role' : 'account'} ${p.name} on the joiner`,
      { target: 'joiner', statements: [`DROP ${p.role ? 'ROLE' : 'USER'} IF EXISTS ${p.name}`] },
      async () => void (await joiner.query(create, [], signal)),
    );
    created.push(p);
  }
  for (const p of created) {
    for (const g of await donor.query(`SHOW GRANTS FOR ${p.name}`, [], signal)) {
      await joiner.query(String(Object.values(g)[0]), [], signal);
    }
  }
  return created.filter((p) => !p.role).length;
}
