import type { InstanceStats } from '@floe/api';
import { FloeApiError, type FloeClient, type LogsOptions } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { cpuTime, splitAtDetach, statsTable } from './instance-io.js';
import { runWithClient } from '../testing.js';

const STATS: InstanceStats = {
  at: '2025-01-02T00:00:00.000Z',
  cpu_time_ns: 12_340_000_000,
  memory_bytes: 64 * 1024 * 1024,
  memory_assigned_bytes: 256 * 1024 * 1024,
  disk_read_bytes: 1536,
  disk_write_bytes: 0,
  net_rx_bytes: null,
  net_tx_bytes: 3 * 1024 * 1024 * 1024,
};

interface Calls {
  logs: Array<{ id: string; options: LogsOptions }>;
  stats: Array<{ id: string; options: unknown }>;
}

/** Runs the CLI against a client whose instances answer logs and stats from the arguments. */
async function floe(argv: string[], answers: { chunks?: string[]; stats?: () => Promise<InstanceStats> } = {}) {
  const calls: Calls = { logs: [], stats: [] };
  const client = {
    instances: {
      async *logs(id: string, options: LogsOptions) {
        calls.logs.push({ id, options });
        for (const c of answers.chunks ?? []) yield Buffer.from(c);
      },
      stats(id: string, options: unknown) {
        calls.stats.push({ id, options });
        return answers.stats?.() ?? Promise.resolve(STATS);
      },
    },
    close: () => Promise.resolve(),
  } as unknown as FloeClient;
  return { ...(await runWithClient(argv, client)), calls };
}

describe('floe vm logs', () => {
  it('writes the log bytes as they come', async () => {
    const r = await floe(['vm', 'logs', 'web'], { chunks: ['boot\r\n', 'FLOE-FAKE READY web\r\n'] });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('boot\r\nFLOE-FAKE READY web\r\n');
    expect(r.calls.logs).toHaveLength(1);
    expect(r.calls.logs[0]!.id).toBe('web');
    expect(r.calls.logs[0]!.options.follow).toBe(false);
    expect(r.calls.logs[0]!.options.tailBytes).toBeUndefined();
  });

  it('passes --follow, --tail and the project', async () => {
    const r = await floe(['vm', 'logs', 'web', '--follow', '--tail', '4096', '-p', 'shop']);
    expect(r.code, r.err).toBe(0);
    expect(r.calls.logs[0]!.options).toMatchObject({ follow: true, tailBytes: 4096, project: 'shop' });
    expect(r.calls.logs[0]!.options.signal).toBeInstanceOf(AbortSignal);
  });

  it('refuses a bad --tail', async () => {
    const r = await floe(['vm', 'logs', 'web', '--tail', '-5']);
    expect(r.code).toBe(2);
    expect(r.calls.logs).toHaveLength(0);
  });
});

describe('floe vm stats', () => {
  it('prints one row of counters', async () => {
    const r = await floe(['vm', 'stats', 'web']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/CPU TIME\s+MEMORY\s+DISK READ\s+DISK WRITE\s+NET RX\s+NET TX/);
    expect(r.out).toMatch(/12\.34s\s+64\.0 MiB \/ 256\.0 MiB\s+1\.5 KiB\s+0 B\s+-\s+3\.0 GiB/);
  });

  it('prints the raw answer with -o json', async () => {
    const r = await floe(['vm', 'stats', 'web', '-o', 'json', '-p', 'shop']);
    expect(JSON.parse(r.out)).toEqual(STATS);
    expect(r.calls.stats[0]).toEqual({ id: 'web', options: { project: 'shop' } });
  });

  it('reports a stopped VM with its code', async () => {
    const r = await floe(['vm', 'stats', 'web'], {
      stats: () =>
        Promise.reject(new FloeApiError({ status: 409, code: 'invalid_state', message: 'VM web is not running' })),
    });
    expect(r.code).toBe(1);
    expect(r.err).toBe('error: VM web is not running (invalid_state)\n');
  });
});

describe('console helpers', () => {
  it('finds the detach key', () => {
    expect(splitAtDetach(Buffer.from('ls\r'))).toEqual({ send: Buffer.from('ls\r'), detach: false });
    const r = splitAtDetach(Buffer.from([0x61, 0x1d, 0x62]));
    expect([...r.send]).toEqual([0x61]);
    expect(r.detach).toBe(true);
  });

  it('formats CPU time', () => {
    expect(cpuTime(null)).toBe('-');
    expect(cpuTime(850_000_000)).toBe('850ms');
    expect(cpuTime(12_340_000_000)).toBe('12.34s');
    expect(cpuTime(185e9)).toBe('3m05s');
    expect(cpuTime(7620e9)).toBe('2h07m');
  });

  it('shows memory without an assigned size alone', () => {
    expect(statsTable({ ...STATS, memory_assigned_bytes: null })).toContain('64.0 MiB ');
  });
});
