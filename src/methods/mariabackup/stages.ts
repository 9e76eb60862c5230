/**
 * What mariadb-backup's stderr tells of the donor's locks (10.11.8 and later run every BACKUP
 * STAGE): DDL is blocked from BLOCK_DDL on, commits from BLOCK_COMMIT on, both until "All tables
 * unlocked". The lines carry whole seconds only, so each is timed as it arrives.
 */
export class StageClock {
  #ddlAt: number | undefined;
  #commitAt: number | undefined;
  ddlBlockedMs = 0;
  commitBlockedMs = 0;
  /** the last "Streaming ..."/"Copying ..." line, for progress */
  current = '';

  line(text: string, now = Date.now()): void {
    if (/Acquired locks for BACKUP STAGE BLOCK_DDL/.test(text)) this.#ddlAt = now;
    else if (/Acquired locks for BACKUP STAGE BLOCK_COMMIT/.test(text)) this.#commitAt = now;
    else if (/All tables unlocked/.test(text)) {
      if (this.#ddlAt !== undefined) this.ddlBlockedMs = now - this.#ddlAt;
      if (this.#commitAt !== undefined) this.commitBlockedMs = now - this.#commitAt;
      this.#ddlAt = this.#commitAt = undefined;
    } else {
      const m = /(?:Streaming|Copying) (\S+)/.exec(text);
      if (m) this.current = m[1]!;
    }
  }
}

export interface BinlogInfo {
  file: string;
  position: number;
  /** MariaDB's gtid_current_pos at the copy: empty when the donor has no GTIDs */
  gtid: string;
}

/** xtrabackup_binlog_info: `<file>\t<position>[\t<gtid_current_pos>]` (whitespace of any kind). */
export function parseBinlogInfo(text: string): BinlogInfo | undefined {
  const [file, pos, gtid] = text.trim().split(/\s+/);
  if (!file || !pos || !/^\d+$/.test(pos)) return undefined;
  return { file, position: Number(pos), gtid: gtid ?? '' };
}
