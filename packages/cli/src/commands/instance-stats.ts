import { InvalidArgumentError } from 'commander';
import type { InstanceStatsHistory, InstanceStatsPoint } from '@floe/api';
import { bytes, renderTable } from '../output.js';

/** The eight levels of a sparkline, lowest first. */
const BARS = '▁▂▃▄▅▆▇█';

/**
 * Values as a sparkline `width` characters wide: the values are split into
 * `width` consecutive buckets (fewer when there are fewer values), each shown
 * by its mean, scaled from 0 to the largest mean (a flat line of zeros stays
 * at the bottom); a bucket without a value is a space. Pure.
 *
 * @example
 * sparkline([0, 1, 2, 3], 4) // '▁▃▆█'
 */
export function sparkline(values: readonly (number | null)[], width: number): string {
  const n = Math.min(width, values.length);
  if (n <= 0) return '';
  const means: Array<number | null> = [];
  for (let b = 0; b < n; b++) {
    const from = Math.floor((b * values.length) / n);
    const to = Math.floor(((b + 1) * values.length) / n);
    const known = values.slice(from, to).filter((v): v is number => v !== null && Number.isFinite(v));
    means.push(known.length === 0 ? null : known.reduce((a, v) => a + v, 0) / known.length);
  }
  const max = Math.max(0, ...means.filter((m): m is number => m !== null));
  return means
    .map((m) => {
      if (m === null) return ' ';
      if (max === 0) return BARS[0];
      return BARS[Math.min(BARS.length - 1, Math.round((Math.max(0, m) / max) * (BARS.length - 1)))];
    })
    .join('');
}

/** A byte rate as `1.5 KiB/s`, `-` when unknown. */
export function rate(n: number | null | undefined): string {
  return n === null || n === undefined ? '-' : `${bytes(n)}/s`;
}

/** A percentage as `12.3 %`, `-` when unknown. */
function percent(n: number | null | undefined): string {
  return n === null || n === undefined ? '-' : `${n.toFixed(1)} %`;
}

interface Row {
  label: string;
  pick: (p: InstanceStatsPoint) => number | null;
  show: (n: number | null) => string;
}

const ROWS: readonly Row[] = [
  { label: 'CPU', pick: (p) => p.cpu_percent, show: percent },
  { label: 'MEMORY', pick: (p) => p.memory_bytes, show: bytes },
  { label: 'DISK READ', pick: (p) => p.disk_read_bytes_per_second, show: rate },
  { label: 'DISK WRITE', pick: (p) => p.disk_write_bytes_per_second, show: rate },
  { label: 'NET RX', pick: (p) => p.net_rx_bytes_per_second, show: rate },
  { label: 'NET TX', pick: (p) => p.net_tx_bytes_per_second, show: rate },
];

/**
 * The table of `floe vm stats --history`: per metric the latest value, the
 * mean and the peak over the samples, and a sparkline `width` wide. Pure.
 */
export function historyTable(h: InstanceStatsHistory, width = 40): string {
  const samples = h.samples;
  if (samples.length === 0)
    return 'no samples yet: the host samples running instances every ' + `${h.interval_seconds || 10} s\n`;
  const first = samples[0]!.at;
  const last = samples.at(-1)!.at;
  const head = `${samples.length} samples every ${h.interval_seconds} s, ${first} to ${last} (CPU as a share of ${h.vcpus} vCPU${h.vcpus === 1 ? '' : 's'})\n`;
  const rows = ROWS.map((row) => {
    const values = samples.map(row.pick);
    const known = values.filter((v): v is number => v !== null);
    const mean = known.length === 0 ? null : known.reduce((a, v) => a + v, 0) / known.length;
    const peak = known.length === 0 ? null : Math.max(...known);
    return [row.label, row.show(values.at(-1) ?? null), row.show(mean), row.show(peak), sparkline(values, width)];
  });
  return head + renderTable(['METRIC', 'LAST', 'MEAN', 'MAX', 'HISTORY'], rows);
}

/**
 * `--since`: an RFC 3339 time, or a duration back from `now` (`90s`, `15m`,
 * `1h`), as the RFC 3339 time the API takes.
 */
export function sinceArg(value: string, now: () => number = Date.now): string {
  const m = /^(\d{1,5})(s|m|h)$/.exec(value.trim());
  if (m !== null) {
    const seconds = Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
    return new Date(now() - seconds * 1000).toISOString();
  }
  if (/^\d{4}-\d{2}-\d{2}T/.test(value) && !Number.isNaN(Date.parse(value))) return new Date(value).toISOString();
  throw new InvalidArgumentError(
    `expected a duration such as 15m or 1h, or an RFC 3339 time such as 2026-01-02T15:04:05Z, got ${JSON.stringify(value)}`,
  );
}
