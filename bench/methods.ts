import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, renameSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../src/mysql/server.js';
import type { Server } from '../src/mysql/server.js';
import { sandboxDown, sandboxEndpoint, sandboxUp } from '../src/sandbox/sandbox.js';
import type { SandboxInfo } from '../src/sandbox/sandbox.js';

export interface RunResult {
  wallMs: number;
  lockMs?: number | undefined;
  rssKb?: number | undefined;
  cpuS?: number | undefined;
  phases?: Record<string, number> | undefined;
}

export interface BenchContext {
  root: string;
  donor: SandboxInfo;
  parallel: number;
  work: string;
  /** the dataset's tables, for the ingest limit */
  tables: string[];
  csvDir: string;
}

export function sh(cmd: string, env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', cmd], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) =>
      code === 0
        ? resolve({ stdout, stderr })
        : reject(new Error(`${cmd.slice(0, 200)} failed (${code}): ${stderr.slice(-1500)}`)),
    );
  });
}

async function withSession<T>(info: SandboxInfo, fn: (s: Server) => Promise<T>): Promise<T> {
  const s = await connect(sandboxEndpoint(info));
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** Points `joiner` at the donor from a GTID position and waits until it has caught up. */
async function replicateFrom(ctx: BenchContext, joiner: SandboxInfo, gtid: string): Promise<void> {
  await withSession(joiner, async (s) => {
    await s.query('STOP SLAVE');
    await s.query('SET GLOBAL gtid_slave_pos = ?', [gtid]);
    await s.query(
      "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ?, MASTER_USER = 'repl', MASTER_PASSWORD = 'repl', MASTER_USE_GTID = slave_pos",
      [ctx.donor.port],
    );
    await s.query('START SLAVE');
    const target = await withSession(ctx.donor, async (d) =>
      String((await d.query('SELECT @@gtid_binlog_pos AS g'))[0]!.g),
    );
    for (;;) {
      const [w] = await s.query('SELECT MASTER_GTID_WAIT(?, 1) AS r', [target]);
      const [st] = await s.query('SHOW SLAVE STATUS');
      if (Number(w!.r) === 0 && st!.Slave_IO_Running === 'Yes' && st!.Slave_SQL_Running === 'Yes') return;
      if (st!.Last_IO_Error || st!.Last_SQL_Error)
        throw new Error(`replication failed: ${String(st!.Last_IO_Error || st!.Last_SQL_Error)}`);
    }
  });
}

export async function reseedClone(ctx: BenchContext, joiner: SandboxInfo): Promise<RunResult> {
  const started = Date.now();
  const { stdout, stderr } = await sh(
    `/usr/bin/time -f 'TIME %M %U %S' ${join(ctx.root, 'bin', 'reseed')} clone --from mysql://root@127.0.0.1:${ctx.donor.port} --to mysql://root@127.0.0.1:${joiner.port} --replication-user repl --parallel ${ctx.parallel} --json`,
    { RESEED_REPLICATION_PASSWORD: 'repl' },
  );
  const wallMs = Date.now() - started;
  const events = stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const summary = events.at(-1)!;
  const m = /TIME (\d+) ([\d.]+) ([\d.]+)/.exec(stderr)!;
  const phases = { ...(summary.phases as Record<string, number>) };
  phases.indexBuild = events.filter((e) => e.type === 'table-indexed').reduce((a, e) => a + Number(e.ms), 0);
  return {
    wallMs,
    lockMs: Number(summary.lockHeldMs),
    rssKb: Number(m[1]),
    cpuS: Number(m[2]) + Number(m[3]),
    phases,
  };
}

export async function mysqldumpPipe(ctx: BenchContext, joiner: SandboxInfo): Promise<RunResult> {
  const started = Date.now();
  // Galera's mysqldump SST: one consistent dump piped into the joiner (binlog off on the load).
  await sh(
    `mariadb-dump -h127.0.0.1 -P${ctx.donor.port} -uroot --single-transaction --gtid --master-data=1 --databases bench ` +
      `| mariadb -h127.0.0.1 -P${joiner.port} -uroot --init-command='SET SESSION sql_log_bin = 0'`,
  );
  const gtid = await withSession(joiner, async (s) =>
    String((await s.query('SELECT @@gtid_slave_pos AS g'))[0]!.g),
  );
  await replicateFrom(ctx, joiner, gtid);
  return { wallMs: Date.now() - started };
}

export async function mydumperMyloader(ctx: BenchContext, joiner: SandboxInfo): Promise<RunResult> {
  const dir = join(ctx.work, 'mydumper');
  rmSync(dir, { recursive: true, force: true });
  const started = Date.now();
  await sh(
    `mydumper -h 127.0.0.1 -P ${ctx.donor.port} -u root -t ${ctx.parallel} -r 100000 -B bench -o ${dir}`,
  );
  await sh(`myloader -h 127.0.0.1 -P ${joiner.port} -u root -t ${ctx.parallel} -d ${dir}`);
  const meta = readFileSync(join(dir, 'metadata'), 'utf8');
  const gtid = /GTID:\s*(\S+)/.exec(meta)?.[1] ?? '';
  await replicateFrom(ctx, joiner, gtid);
  const wallMs = Date.now() - started;
  rmSync(dir, { recursive: true, force: true });
  return { wallMs };
}

/** Dumps every table to a TSV file once, for the ingest limit. */
export async function prepareCsv(ctx: BenchContext): Promise<void> {
  rmSync(ctx.csvDir, { recursive: true, force: true });
  mkdirSync(ctx.csvDir, { recursive: true, mode: 0o777 });
  await withSession(ctx.donor, async (s) => {
    for (const t of ctx.tables)
      await s.query(`SELECT * FROM bench.${t} INTO OUTFILE '${join(ctx.csvDir, `${t}.tsv`)}'`);
  });
}

/** The server's own ingest limit: LOAD DATA INFILE from files on its disk, same schema, binlog off. */
export async function ingestLimit(ctx: BenchContext, joiner: SandboxInfo): Promise<RunResult> {
  const ddl = await withSession(ctx.donor, async (s) => {
    const out: string[] = [];
    for (const t of ctx.tables)
      out.push(String((await s.query(`SHOW CREATE TABLE bench.${t}`))[0]!['Create Table']));
    return out;
  });
  await withSession(joiner, async (s) => {
    await s.query('CREATE DATABASE bench');
    await s.query('USE bench');
    for (const d of ddl) await s.query(d);
  });
  const queue = [...ctx.tables];
  const started = Date.now();
  await Promise.all(
    Array.from({ length: ctx.parallel }, () =>
      withSession(joiner, async (s) => {
        await s.query('SET SESSION sql_log_bin = 0');
        for (let t = queue.shift(); t; t = queue.shift()) {
          await s.query(`LOAD DATA INFILE '${join(ctx.csvDir, `${t}.tsv`)}' INTO TABLE bench.${t}`);
        }
      }),
    ),
  );
  return { wallMs: Date.now() - started };
}

/** mariabackup streamed and prepared, then started as the joiner and replicating (for context). */
export async function mariabackupStream(ctx: BenchContext, joiner: SandboxInfo): Promise<RunResult> {
  await sandboxDown(joiner.name);
  const target = join(ctx.work, 'mariabackup');
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  const started = Date.now();
  await sh(
    `mariabackup --backup --stream=xbstream --host=127.0.0.1 --port=${ctx.donor.port} --user=root --target-dir=${target} 2>/dev/null ` +
      `| mbstream -x -C ${target}`,
  );
  await sh(`mariabackup --prepare --target-dir=${target} 2>/dev/null`);
  const data = join(joiner.dir, 'data');
  rmSync(data, { recursive: true, force: true });
  renameSync(target, data);
  const info = await sandboxUp(joiner.name);
  const binlogInfo = readdirSync(data).find((f) => /binlog_info$/.test(f));
  const gtid = binlogInfo ? (readFileSync(join(data, binlogInfo), 'utf8').trim().split(/\s+/)[2] ?? '') : '';
  await replicateFrom(ctx, info, gtid);
  return { wallMs: Date.now() - started };
}
