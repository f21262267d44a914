import type { InstanceStatsPoint, VmStatsSample } from '@floe/api';

/** The growth of a counter per second between two samples; null when unknown or when it went down (a reset). */
export function counterRate(before: number | null, after: number | null, seconds: number): number | null {
  if (before === null || after === null || !(seconds > 0)) return null;
  if (after < before) return null;
  return (after - before) / seconds;
}

/** Start times closer than this are one start seen twice (a host may only guess it while the VM is starting). */
const SAME_START_MS = 5000;

/**
 * Whether two samples may belong to the same run of the VM (its counters
 * continue from one to the other): not when both know when the VM started and
 * the times are further apart than SAME_START_MS. Where one does not know, a
 * counter that went down still tells a restart.
 */
function sameRun(a: VmStatsSample, b: VmStatsSample): boolean {
  if (a.started_at === null || b.started_at === null || a.started_at === b.started_at) return true;
  return Math.abs(Date.parse(a.started_at) - Date.parse(b.started_at)) <= SAME_START_MS;
}

/**
 * The points of an instance's stats history from the raw samples its host
 * keeps (oldest first): each point's rates cover the interval since the
 * sample before it. Rates are null for the first sample, across a restart of
 * the VM (its counters start again) and where a counter went down (a NIC
 * unplugged, a counter reset); `cpu_percent` is a share of `vcpus`. Points
 * at or before `since` are left out, but still serve as the base of the next
 * one. Pure.
 *
 * @example
 * statsPoints(samples, 2, '2026-01-01T00:00:00Z')
 */
export function statsPoints(samples: readonly VmStatsSample[], vcpus: number, since?: string): InstanceStatsPoint[] {
  const from = since === undefined ? -Infinity : Date.parse(since);
  const points: InstanceStatsPoint[] = [];
  samples.forEach((cur, i) => {
    const at = Date.parse(cur.at);
    if (!(at > from)) return;
    const prev = i > 0 ? samples[i - 1]! : null;
    const seconds = prev !== null && sameRun(prev, cur) ? (at - Date.parse(prev.at)) / 1000 : 0;
    const rate = (key: 'cpu_time_ns' | 'disk_read_bytes' | 'disk_write_bytes' | 'net_rx_bytes' | 'net_tx_bytes') =>
      prev === null ? null : counterRate(prev[key], cur[key], seconds);
    const cpuNsPerSecond = rate('cpu_time_ns');
    points.push({
      at: cur.at,
      cpu_percent: cpuNsPerSecond === null || vcpus < 1 ? null : (cpuNsPerSecond / 1e9 / vcpus) * 100,
      memory_bytes: cur.memory_bytes,
      memory_assigned_bytes: cur.memory_assigned_bytes,
      disk_read_bytes_per_second: rate('disk_read_bytes'),
      disk_write_bytes_per_second: rate('disk_write_bytes'),
      net_rx_bytes_per_second: rate('net_rx_bytes'),
      net_tx_bytes_per_second: rate('net_tx_bytes'),
    });
  });
  return points;
}
