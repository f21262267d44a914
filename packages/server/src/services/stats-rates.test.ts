import { describe, expect, it } from 'vitest';
import type { VmStatsSample } from '@floe/api';
import { counterRate, statsPoints } from './stats-rates.js';

const STARTED = '2026-01-01T00:00:00.000Z';

function sample(seconds: number, counters: Partial<VmStatsSample> = {}): VmStatsSample {
  return {
    at: new Date(Date.parse('2026-01-01T00:01:00.000Z') + seconds * 1000).toISOString(),
    cpu_time_ns: 0,
    memory_bytes: 100,
    memory_assigned_bytes: 1000,
    disk_read_bytes: 0,
    disk_write_bytes: 0,
    net_rx_bytes: 0,
    net_tx_bytes: 0,
    started_at: STARTED,
    ...counters,
  };
}

describe('counterRate', () => {
  it('is the growth per second, null when unknown, reset or over no time', () => {
    expect(counterRate(100, 600, 10)).toBe(50);
    expect(counterRate(100, 100, 10)).toBe(0);
    expect(counterRate(null, 600, 10)).toBeNull();
    expect(counterRate(100, null, 10)).toBeNull();
    expect(counterRate(600, 100, 10)).toBeNull();
    expect(counterRate(1, 2, 0)).toBeNull();
    expect(counterRate(1, 2, -5)).toBeNull();
  });
});

describe('statsPoints', () => {
  it('turns counters into rates over each interval, CPU as a share of the vCPUs', () => {
    const points = statsPoints(
      [
        sample(0),
        sample(10, {
          cpu_time_ns: 10e9, // one vCPU's worth of 10 s: half of two vCPUs
          disk_read_bytes: 40_960,
          disk_write_bytes: 1024,
          net_rx_bytes: 5000,
          net_tx_bytes: 700,
          memory_bytes: 150,
        }),
        sample(20, {
          cpu_time_ns: 12e9,
          disk_read_bytes: 40_960,
          disk_write_bytes: 3072,
          net_rx_bytes: 5000,
          net_tx_bytes: 900,
        }),
      ],
      2,
    );
    expect(points).toEqual([
      {
        at: '2026-01-01T00:01:00.000Z',
        cpu_percent: null,
        memory_bytes: 100,
        memory_assigned_bytes: 1000,
        disk_read_bytes_per_second: null,
        disk_write_bytes_per_second: null,
        net_rx_bytes_per_second: null,
        net_tx_bytes_per_second: null,
      },
      {
        at: '2026-01-01T00:01:10.000Z',
        cpu_percent: 50,
        memory_bytes: 150,
        memory_assigned_bytes: 1000,
        disk_read_bytes_per_second: 4096,
        disk_write_bytes_per_second: 102.4,
        net_rx_bytes_per_second: 500,
        net_tx_bytes_per_second: 70,
      },
      {
        at: '2026-01-01T00:01:20.000Z',
        cpu_percent: 10,
        memory_bytes: 100,
        memory_assigned_bytes: 1000,
        disk_read_bytes_per_second: 0,
        disk_write_bytes_per_second: 204.8,
        net_rx_bytes_per_second: 0,
        net_tx_bytes_per_second: 20,
      },
    ]);
  });

  it('has no rates across a restart of the VM, whose counters start again', () => {
    const restarted = '2026-01-01T00:01:05.000Z';
    const points = statsPoints(
      [
        sample(0, { cpu_time_ns: 50e9, disk_read_bytes: 9000 }),
        // Counters are lower, but even a higher one after a restart is no rate: it counts from the restart.
        sample(10, { cpu_time_ns: 60e9, disk_read_bytes: 100, started_at: restarted }),
        sample(20, { cpu_time_ns: 61e9, disk_read_bytes: 300, started_at: restarted }),
      ],
      1,
    );
    expect(points.map((p) => p.cpu_percent)).toEqual([null, null, 10]);
    expect(points.map((p) => p.disk_read_bytes_per_second)).toEqual([null, null, 20]);
  });

  it('takes start times a moment apart for one start (a host guesses it while the VM starts)', () => {
    const points = statsPoints(
      [
        sample(0, { cpu_time_ns: 1e9, started_at: '2026-01-01T00:00:00.400Z' }),
        sample(10, { cpu_time_ns: 2e9, started_at: '2026-01-01T00:00:01.000Z' }),
        sample(20, { cpu_time_ns: 3e9, started_at: '2026-01-01T00:00:07.000Z' }),
      ],
      1,
    );
    expect(points.map((p) => p.cpu_percent)).toEqual([null, 10, null]);
  });

  it('rates samples that do not know when the VM started by their counters alone', () => {
    const points = statsPoints(
      [
        sample(0, { cpu_time_ns: 1e9, started_at: null }),
        sample(10, { cpu_time_ns: 2e9 }),
        sample(20, { cpu_time_ns: 1e8, started_at: null }),
      ],
      1,
    );
    expect(points.map((p) => p.cpu_percent)).toEqual([null, 10, null]);
  });

  it('has no rate for a counter that went down (a NIC unplugged), and keeps the others', () => {
    const points = statsPoints(
      [sample(0, { net_rx_bytes: 9000, cpu_time_ns: 0 }), sample(10, { net_rx_bytes: 4000, cpu_time_ns: 1e9 })],
      1,
    );
    expect(points[1]).toMatchObject({ net_rx_bytes_per_second: null, cpu_percent: 10 });
  });

  it('leaves unknown counters unknown', () => {
    const points = statsPoints([sample(0, { disk_write_bytes: null }), sample(10, { disk_write_bytes: 10 })], 1);
    expect(points[1]!.disk_write_bytes_per_second).toBeNull();
  });

  it('leaves out points at or before `since`, but rates the first one left against the one before it', () => {
    const samples = [sample(0), sample(10, { cpu_time_ns: 1e9 }), sample(20, { cpu_time_ns: 3e9 })];
    const points = statsPoints(samples, 1, '2026-01-01T00:01:10.000Z');
    expect(points).toHaveLength(1);
    expect(points[0]).toMatchObject({ at: '2026-01-01T00:01:20.000Z', cpu_percent: 20 });
    expect(statsPoints(samples, 1, '2026-01-01T00:05:00.000Z')).toEqual([]);
    expect(statsPoints([], 1)).toEqual([]);
  });
});
