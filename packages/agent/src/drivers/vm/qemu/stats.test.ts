import { describe, expect, it } from 'vitest';
import type { QmpBlockStats } from './qmp.js';
import { cpuTimeNs, residentBytes, vmStats } from './stats.js';

describe('process counters', () => {
  it('reads user + system CPU time from /proc/<pid>/stat, a command name with spaces and parentheses included', () => {
    const rest = 'S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 0 0';
    expect(cpuTimeNs(`4242 (qemu (x) y) ${rest}`)).toBe(3_000_000_000);
    expect(cpuTimeNs('4242 (qemu)')).toBeNull();
  });

  it('reads resident memory from /proc/<pid>/status', () => {
    expect(residentBytes('Name:\tqemu\nVmRSS:\t  2048 kB\nThreads:\t4\n')).toBe(2048 * 1024);
    expect(residentBytes('Name:\tqemu\n')).toBeNull();
  });
});

describe('vmStats', () => {
  it('sums the block devices and leaves unknown counters null', () => {
    const at = new Date('2026-01-02T03:04:05.000Z');
    const blocks: QmpBlockStats[] = [
      { device: 'disk0', stats: { rd_bytes: 10, wr_bytes: 1, rd_operations: 2, wr_operations: 1 } },
      { device: 'seed', stats: { rd_bytes: 5, wr_bytes: 0, rd_operations: 1, wr_operations: 0 } },
    ];
    expect(vmStats(at, { cpu: 7, rss: null }, 512, blocks)).toEqual({
      at: '2026-01-02T03:04:05.000Z',
      cpu_time_ns: 7,
      memory_bytes: null,
      memory_assigned_bytes: 512 * 1024 * 1024,
      disk_read_bytes: 15,
      disk_write_bytes: 1,
      net_rx_bytes: null,
      net_tx_bytes: null,
    });
    expect(vmStats(at, { cpu: null, rss: null }, 1, null).disk_read_bytes).toBeNull();
  });
});
