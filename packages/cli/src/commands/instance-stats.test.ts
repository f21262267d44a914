import type { InstanceStatsHistory, InstanceStatsPoint } from '@floe/api';
import { FloeApiError, type FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { historyTable, rate, sinceArg, sparkline } from './instance-stats.js';
import { runWithClient } from '../testing.js';

function point(i: number, over: Partial<InstanceStatsPoint> = {}): InstanceStatsPoint {
  return {
    at: new Date(Date.parse('2026-02-03T10:00:00.000Z') + i * 10_000).toISOString(),
    cpu_percent: i * 10,
    memory_bytes: 64 * 1024 * 1024,
    memory_assigned_bytes: 256 * 1024 * 1024,
    disk_read_bytes_per_second: 1024 * i,
    disk_write_bytes_per_second: 0,
    net_rx_bytes_per_second: null,
    net_tx_bytes_per_second: 512,
    ...over,
  };
}

const HISTORY: InstanceStatsHistory = {
  instance_id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  interval_seconds: 10,
  retention_seconds: 3600,
  vcpus: 2,
  samples: [point(0, { cpu_percent: null, disk_read_bytes_per_second: null }), point(1), point(2), point(3)],
};

describe('sparkline', () => {
  it('scales to the peak, one bucket per character', () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8)).toBe('▁▂▃▄▅▆▇█');
    expect(sparkline([0, 1, 2, 3], 4)).toBe('▁▃▆█');
    expect(sparkline([0, 0, 0], 3)).toBe('▁▁▁');
    expect(sparkline([null, 5, null], 3)).toBe(' █ ');
    expect(sparkline([], 10)).toBe('');
  });

  it('averages many values into `width` buckets', () => {
    // Two buckets: mean 1 and mean 4 (the peak).
    expect(sparkline([0, 2, 4, 4], 2)).toBe('▃█');
    expect(
      sparkline(
        Array.from({ length: 360 }, (_, i) => i),
        40,
      ),
    ).toHaveLength(40);
  });
});

describe('sinceArg', () => {
  const now = () => Date.parse('2026-02-03T10:00:00.000Z');
  it('takes durations back from now, or RFC 3339 times', () => {
    expect(sinceArg('15m', now)).toBe('2026-02-03T09:45:00.000Z');
    expect(sinceArg('90s', now)).toBe('2026-02-03T09:58:30.000Z');
    expect(sinceArg('1h', now)).toBe('2026-02-03T09:00:00.000Z');
    expect(sinceArg('2026-02-03T09:59:00+01:00', now)).toBe('2026-02-03T08:59:00.000Z');
  });

  it('refuses anything else, saying what it wants', () => {
    for (const bad of ['yesterday', '15', '1d', '2026-13-45T00:00:00Z', ''])
      expect(() => sinceArg(bad, now)).toThrow(/duration such as 15m/);
  });
});

describe('historyTable', () => {
  it('shows last, mean, peak and a sparkline per metric', () => {
    const text = historyTable(HISTORY, 4);
    expect(text).toContain(
      '4 samples every 10 s, 2026-02-03T10:00:00.000Z to 2026-02-03T10:00:30.000Z (CPU as a share of 2 vCPUs)',
    );
    expect(text).toMatch(/METRIC\s+LAST\s+MEAN\s+MAX\s+HISTORY/);
    expect(text).toMatch(/CPU\s+30\.0 %\s+20\.0 %\s+30\.0 %\s+ ▃▆█/);
    expect(text).toMatch(/DISK READ\s+3\.0 KiB\/s\s+2\.0 KiB\/s\s+3\.0 KiB\/s/);
    expect(text).toMatch(/NET RX\s+-\s+-\s+-/);
    expect(text).toMatch(/MEMORY\s+64\.0 MiB\s+64\.0 MiB\s+64\.0 MiB\s+████/);
  });

  it('says when there is nothing yet', () => {
    expect(historyTable({ ...HISTORY, samples: [] })).toMatch(/no samples yet/);
  });

  it('formats rates', () => {
    expect(rate(null)).toBe('-');
    expect(rate(1536)).toBe('1.5 KiB/s');
  });
});

describe('floe vm stats --history', () => {
  async function floe(argv: string[], answer: () => Promise<InstanceStatsHistory> = () => Promise.resolve(HISTORY)) {
    const calls: Array<{ id: string; options: unknown }> = [];
    const client = {
      instances: {
        statsHistory(id: string, options: unknown) {
          calls.push({ id, options });
          return answer();
        },
      },
      close: () => Promise.resolve(),
    } as unknown as FloeClient;
    return { ...(await runWithClient(argv, client)), calls };
  }

  it('prints the history table, and the raw answer with -o json', async () => {
    const r = await floe(['vm', 'stats', 'web', '--history', '--width', '8']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/CPU\s+30\.0 %/);
    expect(r.calls).toEqual([{ id: 'web', options: { project: undefined } }]);
    const json = await floe(['vm', 'stats', 'web', '--history', '-o', 'json', '-p', 'shop']);
    expect(JSON.parse(json.out)).toEqual(HISTORY);
    expect(json.calls[0]!.options).toEqual({ project: 'shop' });
  });

  it('passes --since as a time, and refuses it without --history', async () => {
    const r = await floe(['vm', 'stats', 'web', '--history', '--since', '2026-02-03T10:00:05Z']);
    expect(r.code, r.err).toBe(0);
    expect(r.calls[0]!.options).toMatchObject({ since: '2026-02-03T10:00:05.000Z' });
    const alone = await floe(['vm', 'stats', 'web', '--since', '15m']);
    expect(alone.code).toBe(2);
    expect(alone.err).toMatch(/--since goes with --history/);
    const bad = await floe(['vm', 'stats', 'web', '--history', '--since', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/duration such as 15m/);
  });

  it('reports failures with their code', async () => {
    const r = await floe(['vm', 'stats', 'web', '--history'], () =>
      Promise.reject(new FloeApiError({ status: 503, code: 'host_offline', message: 'the host is not connected' })),
    );
    expect(r.code).toBe(1);
    expect(r.err).toBe('error: the host is not connected (host_offline)\n');
  });
});
