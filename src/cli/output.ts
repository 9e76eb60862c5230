import cliProgress from 'cli-progress';
import type { ProgressEvent, ProgressSink } from '../progress.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** --json: one event per line on stdout, each stamped with the time. */
export function jsonSink(write: (line: string) => void = (l) => process.stdout.write(l)): ProgressSink {
  return { emit: (e) => write(JSON.stringify({ at: new Date().toISOString(), ...e }) + '\n') };
}

/**
 * On a terminal: an overall bar (rows, bytes, rate, ETA) for the copy, and a line per phase and
 * per finished table. Elsewhere (a pipe, a log file): the lines only.
 */
export function terminalSink(stream: NodeJS.WriteStream = process.stderr): ProgressSink & { stop(): void } {
  const tty = stream.isTTY === true;
  let bar: cliProgress.SingleBar | undefined;
  let totalRows = 0;
  let rows = 0;
  let bytes = 0;
  let started = 0;
  let lagShown = false;
  const line = (text: string) => {
    if (bar) bar.stop();
    stream.write(text + '\n');
    if (bar) {
      bar.start(Math.max(totalRows, rows, 1), rows, payload());
    }
  };
  const payload = () => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    return { bytes: formatBytes(bytes), rate: `${formatBytes(bytes / secs)}/s` };
  };
  return {
    emit(e: ProgressEvent) {
      switch (e.type) {
        case 'phase':
          if (lagShown) {
            stream.write('\n');
            lagShown = false;
          }
          if (e.phase === 'copy') {
            started = Date.now();
            if (tty) {
              bar = new cliProgress.SingleBar(
                {
                  stream,
                  format:
                    '  copy [{bar}] {percentage}% | {value}/{total} rows | {bytes} | {rate} | ETA {eta_formatted}',
                  hideCursor: true,
                  etaBuffer: 50,
                  fps: 5,
                },
                cliProgress.Presets.shades_classic,
              );
              bar.start(Math.max(totalRows, 1), 0, payload());
            }
          } else if (bar) {
            bar.stop();
            bar = undefined;
          }
          stream.write(`- ${e.phase}${e.detail ? `: ${e.detail}` : ''}\n`);
          break;
        case 'table-planned':
          totalRows += e.estimatedRows;
          break;
        case 'rows':
          rows += e.rows;
          bytes += e.bytes;
          if (bar) {
            if (rows > bar.getTotal()) bar.setTotal(rows);
            bar.update(rows, payload());
          }
          break;
        case 'table-done':
          if (!tty) line(`  ${e.table}: ${e.rows} rows, ${formatBytes(e.bytes)}`);
          break;
        case 'lag':
          if (tty) {
            stream.write(`\r  catching up: ${e.secondsBehind ?? '?'} s behind   `);
            lagShown = true;
          }
          break;
        case 'warning':
          line(`  warning: ${e.message}`);
          break;
        case 'verify-table':
          break;
        case 'plan':
          line(e.dryRun ? 'Plan (dry run: nothing will be changed):' : 'Plan:');
          for (const l of e.lines) line(`  ${l}`);
          break;
      }
    },
    stop() {
      if (lagShown) stream.write('\n');
      lagShown = false;
      bar?.stop();
      bar = undefined;
    },
  };
}
