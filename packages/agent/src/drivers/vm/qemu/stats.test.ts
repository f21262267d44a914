import { describe, expect, it } from 'vitest';
import type { QmpBlockStats } from './qmp.js';
import { cpuTimeNs, guestNetCounters, readTapCounters, residentBytes, vmStats } from './stats.js';

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
    expect(vmStats(at, { cpu: 1, rss: 1 }, 1, [], { rx: 30, tx: 4 })).toMatchObject({
      net_rx_bytes: 30,
      net_tx_bytes: 4,
    });
  });
});

describe('guest network counters', () => {
  it("turns the taps' host counters around and sums them: the host receives what the guest sends", () => {
    expect(
      guestNetCounters([
        { rx: 100, tx: 2000 },
        { rx: 5, tx: 70 },
      ]),
    ).toEqual({ rx: 2070, tx: 105 });
    expect(guestNetCounters([])).toEqual({ rx: 0, tx: 0 });
    expect(guestNetCounters([{ rx: 1, tx: 1 }, null])).toBeNull();
  });

  it('reads the counters of a real interface and refuses names that are not interface names', async () => {
    const lo = await readTapCounters('lo');
    expect(lo).not.toBeNull();
    expect(Number.isSafeInteger(lo!.rx)).toBe(true);
    expect(await readTapCounters('../../../etc')).toBeNull();
    expect(await readTapCounters('flnope0')).toBeNull();
  });
});
