/** Stats history points into series and SVG paths, for the graphs of an instance. */

/** One point of `GET /v1/instances/:id/stats/history`: rates over the interval that ends at `at`. */
export interface StatsPoint {
  at: string;
  cpu_percent: number | null;
  memory_bytes: number | null;
  disk_read_bytes_per_second: number | null;
  disk_write_bytes_per_second: number | null;
  net_rx_bytes_per_second: number | null;
  net_tx_bytes_per_second: number | null;
}

/** A point of a series: milliseconds since the epoch and a value. */
export interface Point {
  t: number;
  v: number;
}

/** The series the graphs draw. */
export interface Series {
  cpu: Point[];
  memory: Point[];
  disk_read: Point[];
  disk_write: Point[];
  net_rx: Point[];
  net_tx: Point[];
}

/**
 * Turns history points into series, oldest first; unknown values (null) leave a gap in their series only.
 *
 * @example
 * toSeries([{ at: '2026-01-01T00:00:10Z', cpu_percent: 50, memory_bytes: null, ... }]).cpu // [{ t: 1767225610000, v: 50 }]
 */
export function toSeries(points: readonly StatsPoint[]): Series {
  const s: Series = { cpu: [], memory: [], disk_read: [], disk_write: [], net_rx: [], net_tx: [] };
  const sorted = [...points].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  for (const p of sorted) {
    const t = Date.parse(p.at);
    const push = (into: Point[], v: number | null) => {
      if (v !== null) into.push({ t, v });
    };
    push(s.cpu, p.cpu_percent);
    push(s.memory, p.memory_bytes);
    push(s.disk_read, p.disk_read_bytes_per_second);
    push(s.disk_write, p.disk_write_bytes_per_second);
    push(s.net_rx, p.net_rx_bytes_per_second);
    push(s.net_tx, p.net_tx_bytes_per_second);
  }
  return s;
}

/** Adds newly polled points to those already held: one per time, oldest first, none older than `from`. */
export function mergePoints(held: readonly StatsPoint[], fresh: readonly StatsPoint[], from: number): StatsPoint[] {
  const byAt = new Map(held.map((p) => [p.at, p]));
  for (const p of fresh) byAt.set(p.at, p);
  return [...byAt.values()].filter((p) => Date.parse(p.at) >= from).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

/**
 * An SVG path (`M x y L x y ...`) of points in a `width`×`height` box, time on x from `from` to `to`,
 * value on y from 0 to `max` (upwards).
 *
 * @example
 * svgPath([{ t: 0, v: 0 }, { t: 10, v: 1 }], 0, 10, 1, 100, 50) // 'M0 50L100 0'
 */
export function svgPath(
  points: readonly Point[],
  from: number,
  to: number,
  max: number,
  width: number,
  height: number,
): string {
  if (points.length === 0 || to <= from || max <= 0) return '';
  const x = (t: number) => Math.round(((t - from) / (to - from)) * width * 10) / 10;
  const y = (v: number) => Math.round((height - (Math.min(v, max) / max) * height) * 10) / 10;
  return points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.t)} ${y(p.v)}`).join('');
}

/** A round upper bound for an axis: 1, 2 or 5 times a power of ten at or above the largest value. */
export function niceMax(values: readonly number[]): number {
  const m = Math.max(0, ...values);
  if (m === 0) return 1;
  const p = 10 ** Math.floor(Math.log10(m));
  return [1, 2, 5, 10].map((f) => f * p).find((c) => c >= m) ?? 10 * p;
}
