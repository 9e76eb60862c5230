import type { RunResult } from './methods.js';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const secs = (ms: number) => (ms / 1000).toFixed(1);

export interface ReportInput {
  size: string;
  bytes: number;
  runs: number;
  parallel: number;
  methods: string[];
  labels: Record<string, string>;
  results: Record<string, RunResult[]>;
  rss2x: { bytes: number; result: RunResult } | undefined;
  versions: { machine: string; mariadb: string; mydumper: string; node: string; cacheDropped: boolean };
  command: string;
  /** the chart's file name, beside the report */
  chart: string;
}

export function renderReport(r: ReportInput): string {
  const med = (m: string) => median(r.results[m]!.map((x) => x.wallMs));
  const base = r.results.reseed ? med('reseed') : undefined;
  const mb = r.bytes / 1e6;
  const lines = [
    '# Benchmarks',
    '',
    `Made by \`${r.command}\` on ${new Date().toISOString().slice(0, 10)}. Dataset: ${(r.bytes / 1e9).toFixed(2)} GB of InnoDB data`,
    '(8 sysbench-shaped tables, wide JSON/TEXT/BLOB rows, a composite-key table, a table without a key;',
    `see bench/dataset.ts). Each method loads a fresh, empty joiner sandbox; ${r.runs} interleaved rounds,`,
    `medians shown; parallelism ${r.parallel} for every method that has one. OS page cache dropped before each run: ${r.versions.cacheDropped ? 'yes' : 'NO (not permitted here)'}.`,
    'Time is until the joiner is a running replica that has caught up (the ingest limit: until the load ends).',
    '',
    '| method | median time | MB/s | time / reseed | runs (s) |',
    '| --- | ---: | ---: | ---: | --- |',
  ];
  for (const m of r.methods) {
    const t = med(m);
    lines.push(
      `| ${r.labels[m]} | ${secs(t)} s | ${(mb / (t / 1000)).toFixed(0)} | ${base ? (t / base).toFixed(2) : '-'} | ${r.results[m]!.map((x) => secs(x.wallMs)).join(', ')} |`,
    );
  }
  const rs = r.results.reseed;
  if (rs) {
    const lock = median(rs.map((x) => x.lockMs ?? 0));
    const phases = Object.keys(rs[0]!.phases ?? {});
    lines.push(
      '',
      '## reseed',
      '',
      `- donor read-lock time: ${lock} ms (median; 0 means the snapshot sessions lined up without any lock)`,
      `- peak RSS: ${(median(rs.map((x) => x.rssKb ?? 0)) / 1024).toFixed(0)} MB at ${(r.bytes / 1e9).toFixed(2)} GB` +
        (r.rss2x
          ? `; ${((r.rss2x.result.rssKb ?? 0) / 1024).toFixed(0)} MB at ${(r.rss2x.bytes / 1e9).toFixed(2)} GB (2x)`
          : ''),
      `- CPU of the reseed process: ${median(rs.map((x) => x.cpuS ?? 0)).toFixed(1)} s (user + system, median)`,
      `- where the time goes (median ms): ${phases.map((p) => `${p} ${median(rs.map((x) => x.phases?.[p] ?? 0)).toFixed(0)}`).join(', ')}`,
      '  (`indexBuild` is the sum of the secondary-index builds, which run inside `copy` while other tables are still copying)',
    );
    if (base) {
      const target = (name: string, ok: boolean, detail: string) =>
        lines.push(`| ${name} | ${ok ? 'met' : 'NOT met'} | ${detail} |`);
      lines.push('', '## Targets', '', '| target | result | measured |', '| --- | --- | --- |');
      if (r.results.mysqldump)
        target(
          '<= 1/3 of mariadb-dump \\| mariadb',
          base <= med('mysqldump') / 3,
          `${(base / med('mysqldump')).toFixed(2)} of it`,
        );
      if (r.results.mydumper)
        target(
          '<= 2/3 of mydumper + myloader',
          base <= (med('mydumper') * 2) / 3,
          `${(base / med('mydumper')).toFixed(2)} of it`,
        );
      if (r.results.ingest)
        target(
          ">= 85% of the ingest limit's throughput",
          med('ingest') / base >= 0.85,
          `${((med('ingest') / base) * 100).toFixed(0)}%`,
        );
      const rss = median(rs.map((x) => x.rssKb ?? 0)) / 1024;
      target(
        'peak RSS <= 300 MB, not growing with the data',
        rss <= 300 && (!r.rss2x || (r.rss2x.result.rssKb ?? 0) / 1024 <= 300),
        `${rss.toFixed(0)} MB${r.rss2x ? ` / ${((r.rss2x.result.rssKb ?? 0) / 1024).toFixed(0)} MB at 2x` : ''}`,
      );
      target('donor read-lock time <= 50 ms', lock <= 50, `${lock} ms`);
    }
  }
  lines.push(
    '',
    '## Machine',
    '',
    `- ${r.versions.machine}`,
    `- ${r.versions.mariadb}`,
    `- ${r.versions.mydumper}`,
    `- Node.js ${r.versions.node}`,
    '- every server is a sandbox with the same configuration (innodb_buffer_pool_size 2G, innodb_log_file_size 256M, binary log on, durability defaults)',
    '',
    `![median times](${r.chart})`,
    '',
    'The levers tried, one by one, with their measurements: [performance.md](performance.md).',
    '',
  );
  return lines.join('\n');
}

/** A horizontal bar chart of the median times, as a standalone SVG. */
export function renderChart(rows: { label: string; results: RunResult[] }[]): string {
  const data = rows.map((r) => ({ label: r.label, s: median(r.results.map((x) => x.wallMs)) / 1000 }));
  const max = Math.max(...data.map((d) => d.s), 1);
  const w = 720;
  const barX = 250;
  const rowH = 34;
  const h = 40 + rowH * data.length;
  const esc = (t: string) => t.replace(/\\\|/g, '|').replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const bars = data
    .map((d, i) => {
      const y = 30 + i * rowH;
      const bw = ((w - barX - 70) * d.s) / max;
      const fill = d.label.startsWith('reseed') ? '#2f7d32' : '#7a869a';
      return `<text x="${barX - 8}" y="${y + 17}" text-anchor="end">${esc(d.label)}</text><rect x="${barX}" y="${y}" width="${bw.toFixed(1)}" height="24" fill="${fill}"/><text x="${(barX + bw + 6).toFixed(1)}" y="${y + 17}">${d.s.toFixed(1)} s</text>`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="13">
<text x="10" y="18" font-weight="bold">Median time to a running, caught-up replica (lower is better)</text>
${bars}
</svg>
`;
}
