import type { Server } from './server.js';

/** The named lock (GET_LOCK, on the joiner) that keeps two reseed operations off one joiner. */
export const JOINER_LOCK = 'reseed:joiner';

/**
 * Takes the joiner's reseed lock on this session, without waiting: the server holds it until the
 * session ends (even after a kill -9 of its client). Returns the holder's connection id when
 * another session has it.
 */
export async function tryLockJoiner(
  meta: Server,
  signal?: AbortSignal,
): Promise<{ got: true } | { got: false; holder: string }> {
  const [row] = await meta.query(
    'SELECT GET_LOCK(?, 0) AS got, IS_USED_LOCK(?) AS holder',
    [JOINER_LOCK, JOINER_LOCK],
    signal,
  );
  return Number(row?.got) === 1 ? { got: true } : { got: false, holder: String(row?.holder) };
}
