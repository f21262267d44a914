import type { Instance } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';
import { groupsOf, sumRanges, type RangeRow } from './metering-report.js';

const H = 3_600_000;
const t = (iso: string) => Date.parse(iso);
const range = (p: Partial<RangeRow>): RangeRow => ({
  resource_kind: 'instance',
  resource_id: 'inst_a',
  dimension: 'vcpus',
  quantity: 2,
  started_at: '2026-12-01T22:00:00.000Z',
  ended_at: '2026-12-02T02:00:00.000Z',
  ...p,
});

describe('sums of metering ranges', () => {
  it('clips every range to [from, to) and counts an open range until now', () => {
    const rows = sumRanges(
      [
        range({}),
        range({ resource_id: 'inst_b', quantity: 4, started_at: '2026-12-02T01:00:00.000Z', ended_at: null }),
      ],
      t('2026-12-01T23:00:00Z'),
      t('2026-12-03T00:00:00Z'),
      t('2026-12-02T03:00:00Z'),
      groupsOf(undefined),
    );
    // inst_a: 2 vCPUs × 3 h inside the window; inst_b: 4 × 2 h until now.
    expect(rows).toEqual([
      {
        dimension: 'vcpus',
        resource_kind: null,
        resource_id: null,
        day: null,
        quantity_seconds: (2 * 3 + 4 * 2) * 3600,
      },
    ]);
  });

  it('splits by resource and by UTC day, a range across midnight in both days', () => {
    const rows = sumRanges(
      [range({}), range({ dimension: 'running', quantity: 1 })],
      t('2026-12-01T00:00:00Z'),
      t('2026-12-05T00:00:00Z'),
      t('2026-12-09T00:00:00Z'),
      groupsOf('resource,day'),
    );
    expect(rows.map((r) => [r.day, r.dimension, r.resource_id, r.quantity_seconds / 3600])).toEqual([
      ['2026-12-01', 'running', 'inst_a', 2],
      ['2026-12-01', 'vcpus', 'inst_a', 4],
      ['2026-12-02', 'running', 'inst_a', 2],
      ['2026-12-02', 'vcpus', 'inst_a', 4],
    ]);
  });

  it('ignores ranges outside the window', () => {
    expect(
      sumRanges([range({})], t('2026-12-03T00:00:00Z'), t('2026-12-04T00:00:00Z'), Date.now(), ['dimension']),
    ).toEqual([]);
  });
});

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`GET /v1/projects/{id}/metering on ${target.name}`, () => {
    let cp: TestControlPlane;
    let instance: Instance;
    let hostId: string;

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), { FLOE_LOG_LEVEL: 'silent' });
      hostId = await onlineTestHost(cp.app, 'node-1');
      expect((await injectJson(cp, 'POST', '/v1/images', { name: 'img' })).status).toBe(201);
      const res = await injectJson(cp, 'POST', '/v1/instances', {
        name: 'vm',
        image: 'img',
        vcpus: 2,
        memory_mib: 256,
      });
      expect(res.status).toBe(202);
      instance = res.body.instance as Instance;
      await cp.app.services.instances.applyObserved(hostId, {
        id: instance.id,
        state: 'running',
        observed_revision: 1,
        observed_generation: 1,
        observed_restart_generation: 0,
        reason: null,
        accelerator: 'fake',
        started_at: instance.created_at,
        stopped_at: null,
      });
    });
    afterAll(async () => {
      await cp?.close();
    });

    const window = () => {
      const from = new Date(Date.parse(instance.created_at) - H).toISOString();
      const to = new Date(Date.now() + H).toISOString();
      return `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    };

    it('sums each dimension the instance holds, per resource when asked', async () => {
      const res = await injectJson(cp, 'GET', `/v1/projects/default/metering?${window()}&group_by=resource`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const items = res.body.items as Array<{ dimension: string; resource_id: string; quantity_seconds: number }>;
      expect(items.map((i) => i.dimension).sort()).toEqual(['allocated', 'disk_gib', 'memory_mib', 'running', 'vcpus']);
      const of = (d: string) => items.find((i) => i.dimension === d)!;
      expect(of('vcpus').resource_id).toBe(instance.id);
      // Quantities scale the same held time: 2 vCPUs, 256 MiB, 1 for allocated.
      expect(of('vcpus').quantity_seconds).toBeCloseTo(2 * of('allocated').quantity_seconds, 0);
      expect(of('memory_mib').quantity_seconds).toBeGreaterThan(of('vcpus').quantity_seconds);
    });

    it('answers CSV for Accept: text/csv and format=csv', async () => {
      for (const [url, headers] of [
        [`/v1/projects/default/metering?${window()}&format=csv`, {}],
        [`/v1/projects/default/metering?${window()}`, { accept: 'text/csv' }],
      ] as const) {
        const res = await cp.app.http.inject({
          method: 'GET',
          url,
          headers: { authorization: `Bearer ${cp.adminToken}`, ...headers },
        });
        expect(res.statusCode, res.body).toBe(200);
        expect(res.headers['content-type']).toMatch(/^text\/csv/);
        const lines = res.body.trimEnd().split('\r\n');
        expect(lines[0]).toBe('day,dimension,resource_kind,resource_id,quantity_seconds');
        expect(lines).toHaveLength(6);
        expect(lines.some((l) => l.startsWith(',vcpus,,,'))).toBe(true);
      }
    });

    it('refuses a window that ends before it starts, and a group it does not know', async () => {
      const bad = await injectJson(
        cp,
        'GET',
        '/v1/projects/default/metering?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z',
      );
      expect(bad.status).toBe(400);
      expect(bad.body.error.code).toBe('validation_failed');
      const group = await injectJson(cp, 'GET', `/v1/projects/default/metering?${window()}&group_by=month`);
      expect(group.status).toBe(400);
    });
  });
}
