import type { MeteringReport } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { runWithClient } from '../testing.js';

const NOW = Date.parse('2026-12-07T01:00:00.000Z');

const REPORT: MeteringReport = {
  project: 'shop',
  from: '2026-12-01T00:00:00.000Z',
  to: '2026-12-07T01:00:00.000Z',
  group_by: ['dimension', 'resource'],
  items: [
    { dimension: 'vcpus', resource_kind: 'instance', resource_id: 'inst_a', day: null, quantity_seconds: 7200 },
    { dimension: 'public_ipv4', resource_kind: 'nic', resource_id: 'nic_b', day: null, quantity_seconds: 1800 },
  ],
};

async function floe(argv: string[]) {
  const asked: Array<[string, unknown]> = [];
  const client = {
    projects: {
      metering: (id: string, q: unknown) => {
        asked.push([id, q]);
        return Promise.resolve(REPORT);
      },
    },
    close: () => Promise.resolve(),
  } as unknown as FloeClient;
  return { ...(await runWithClient(argv, client, { now: NOW })), asked };
}

describe('floe project metering', () => {
  it('asks from the start of the UTC month until now by default, and shows quantity × hours', async () => {
    const r = await floe(['project', 'metering', 'shop', '--group-by', 'resource']);
    expect(r.code, r.err).toBe(0);
    expect(r.asked).toEqual([
      ['shop', { from: '2026-12-01T00:00:00.000Z', to: '2026-12-07T01:00:00.000Z', group_by: 'resource' }],
    ]);
    expect(r.out).toMatch(/vcpus\s+instance\/inst_a\s+2\.000\s+vCPU-hours/);
    expect(r.out).toMatch(/public_ipv4\s+nic\/nic_b\s+0\.500\s+address-hours/);
  });

  it('prints CSV with --csv, for the window given', async () => {
    const r = await floe([
      'project',
      'metering',
      'shop',
      '--from',
      '2026-11-01T00:00:00Z',
      '--to',
      '2026-12-01T00:00:00Z',
      '--csv',
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.asked[0]![1]).toEqual({ from: '2026-11-01T00:00:00Z', to: '2026-12-01T00:00:00Z', group_by: 'dimension' });
    expect(r.out).toBe(
      'day,dimension,resource_kind,resource_id,quantity_seconds\r\n,vcpus,instance,inst_a,7200\r\n,public_ipv4,nic,nic_b,1800\r\n',
    );
  });
});
