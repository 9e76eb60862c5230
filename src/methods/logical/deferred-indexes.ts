/**
 * Secondary indexes built after a table's rows are in: InnoDB then builds each index by sorting,
 * instead of inserting into it row by row at random places. Only plain KEYs are deferred:
 * PRIMARY (the rows' order), UNIQUE, FULLTEXT and SPATIAL keys stay in CREATE TABLE, and so does
 * every index of a table with foreign keys (InnoDB would make its own index for the constraint
 * in the meantime, and the definition would no longer match the donor's).
 */
export interface SplitTable {
  /** CREATE TABLE without the deferred indexes */
  create: string;
  /** "ADD KEY ..." clauses for one ALTER TABLE, empty when nothing is deferred */
  deferred: string[];
}

const PLAIN_KEY = /^\s+KEY `/;

export function splitSecondaryIndexes(createTable: string): SplitTable {
  const lines = createTable.split('\n');
  if (lines.some((l) => /^\s+CONSTRAINT `.*FOREIGN KEY/.test(l)))
    return { create: createTable, deferred: [] };
  const keep: string[] = [];
  const deferred: string[] = [];
  for (const line of lines) {
    if (PLAIN_KEY.test(line)) deferred.push(`ADD ${line.trim().replace(/,$/, '')}`);
    else keep.push(line);
  }
  if (deferred.length === 0) return { create: createTable, deferred: [] };
  // The last definition before ") ENGINE=..." must not end with a comma.
  const close = keep.findIndex((l) => l.startsWith(')'));
  if (close > 0) keep[close - 1] = keep[close - 1]!.replace(/,$/, '');
  return { create: keep.join('\n'), deferred };
}
