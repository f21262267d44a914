/** Stats samples into rates and SVG paths, for the graphs of an instance. */

/** One sample of the stats history: a time and counters (cumulative) or gauges. */
export interface Sample {
  at: string;
  cpu_time_ns?: number | null;
  memory_bytes?: number | null;
  disk_read_bytes?: number | null;
  disk_write_bytes?: number | null;
  net_rx_bytes?: number | null;
  net_tx_bytes?: number | null;
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
 * Turns samples into series: CPU as percent of one vCPU, memory as bytes, disk and network as bytes per
 * second. Rates need two samples; a counter that went down (a restart) starts over.
 *
 * @example
 * toSeries([{ at: '2026-01-01T00:00:00Z', cpu_time_ns: 0 }, { at: '2026-01-01T00:00:10Z', cpu_time_ns: 5e9 }]).cpu
 * // [{ t: 1767225610000, v: 50 }]
 */
export function toSeries(samples: readonly Sample[]): Series {
  const s: Series = { cpu: [], memory: [], disk_read: [], disk_write: [], net_rx: [], net_tx: [] };
  const sorted = [...samples].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const rate = (prev: number | null | undefined, cur: number | null | undefined, dt: number) =>
    prev == null || cur == null || cur < prev || dt <= 0 ? null : (cur - prev) / dt;
  for (let i = 0; i < sorted.length; i++) {
    const cur = sorted[i]!;
    const t = Date.parse(cur.at);
    if (cur.memory_bytes != null) s.memory.push({ t, v: cur.memory_bytes });
    if (i === 0) continue;
    const prev = sorted[i - 1]!;
    const dt = (t - Date.parse(prev.at)) / 1000;
    const push = (into: Point[], v: number | null, scale = 1) => {
      if (v !== null) into.push({ t, v: v * scale });
    };
    push(s.cpu, rate(prev.cpu_time_ns, cur.cpu_time_ns, dt), 100 / 1e9);
    push(s.disk_read, rate(prev.disk_read_bytes, cur.disk_read_bytes, dt));
    push(s.disk_write, rate(prev.disk_write_bytes, cur.disk_write_bytes, dt));
    push(s.net_rx, rate(prev.net_rx_bytes, cur.net_rx_bytes, dt));
    push(s.net_tx, rate(prev.net_tx_bytes, cur.net_tx_bytes, dt));
  }
  return s;
}

/**
 * An SVG path (`M x y L x y ...`) of points in a `width`×`height` box, time on x from `from` to `to`,
 * value on y from 0 to `max` (upwards).
 *
 * @example
 * svgPath([{ t: 0, v: 0 }, { t: 10, v: 1 }], 0, 10, 1, 100, 50) // 'M0 50L100 0'
 */
export function svgPath(points: readonly Point[], from: number, to: number, max: number, width: number, height: number): string {
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
  return ([1, 2, 5, 10].map((f) => f * p).find((c) => c >= m) ?? 10 * p);
}
