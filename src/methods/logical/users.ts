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
];

function account(user: string, host: string): string {
  return `${quoteString(user)}@${quoteString(host)}`;
}

/**
 * Copies accounts and their grants (--users). An account that already exists on the joiner is
 * kept as it is and reported. Password hashes pass through memory only: the journal's undo
 * just drops the accounts this clone created.
 */
export async function copyUsers(args: {
  donor: Server;
  joiner: Server;
  journal: Journal;
  progress: ProgressSink;
  signal?: AbortSignal | undefined;
}): Promise<number> {
  const { donor, joiner, journal, progress, signal } = args;
  const marks = SYSTEM_USERS.map(() => '?').join(', ');
  const rows = await donor
    .query(
      `SELECT User AS u, Host AS h FROM mysql.user WHERE User <> '' AND User NOT IN (${marks})
       AND IFNULL(is_role, 'N') = 'N' ORDER BY User, Host`,
      SYSTEM_USERS,
      signal,
    )
    .catch(() =>
      donor.query(
        `SELECT User AS u, Host AS h FROM mysql.user WHERE User <> '' AND User NOT IN (${marks}) ORDER BY User, Host`,
        SYSTEM_USERS,
        signal,
      ),
    );
  let copied = 0;
  for (const r of rows) {
    const name = account(String(r.u), String(r.h));
    const [exists] = await joiner.query(
      'SELECT 1 AS x FROM mysql.user WHERE User = ? AND Host = ?',
      [r.u, r.h],
      signal,
    );
    if (exists) {
      progress.emit({
        type: 'warning',
        message: `account ${name} already exists on the joiner; kept as it is`,
      });
      continue;
    }
    const [create] = await donor.query(`SHOW CREATE USER ${name}`, [], signal);
    const grants = await donor.query(`SHOW GRANTS FOR ${name}`, [], signal);
    await journal.apply(
      `create account ${name} on the joiner`,
      { target: 'joiner', statements: [`DROP USER IF EXISTS ${name}`] },
      async () => {
        await joiner.query(String(Object.values(create ?? {})[0]), [], signal);
        for (const g of grants) await joiner.query(String(Object.values(g)[0]), [], signal);
      },
    );
    copied++;
  }
  return copied;
}
