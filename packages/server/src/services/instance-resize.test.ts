import type { Instance, Operation } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// Resize through the HTTP API on both stores: the host keeps room for what its instances hold, a machine
// type gives its size, the operation waits for the host, and a cancelled resize keeps the new size.

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`instance resize on ${target.name}`, () => {
    let cp: TestControlPlane;
    const call = (method: 'GET' | 'POST', url: string, body?: unknown) => injectJson(cp, method, url, body);
    const stopped = async (name: string, size: { vcpus: number; memory_mib: number }) => {
      const res = await call('POST', '/v1/instances', { name, image: 'img', ...size, start: false });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return res.body.instance as Instance;
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        FLOE_LOG_LEVEL: 'silent',
        FLOE_CPU_OVERCOMMIT: '1',
        FLOE_MEMORY_OVERCOMMIT: '1',
      });
      // The only host: 4 vCPUs and 2 GiB.
      await onlineTestHost(cp.app, 'small-node', { cpus: 4, memory_mib: 2048 });
      expect((await call('POST', '/v1/images', { name: 'img' })).status).toBe(201);
    });

    afterAll(async () => {
      await cp?.close();
    });

    it('refuses growth the host has no room for, stopped instances counted, and takes what fits', async () => {
      await stopped('a', { vcpus: 2, memory_mib: 1024 });
      await stopped('b', { vcpus: 1, memory_mib: 512 });
      const over = await call('POST', '/v1/instances/b/resize', { vcpus: 3 });
      expect(over.status).toBe(409);
      expect(over.body.error).toMatchObject({
        code: 'no_host_capacity',
        details: { host: 'small-node', free: { vcpus: 1, memory_mib: 512 } },
      });
      const fits = await call('POST', '/v1/instances/b/resize', { vcpus: 2, memory_mib: 1024 });
      expect(fits.status, JSON.stringify(fits.body)).toBe(202);
      const op = fits.body as Operation;
      expect(op).toMatchObject({ kind: 'instance.resize', status: 'pending' });
      expect((await call('GET', '/v1/instances/b')).body.spec).toMatchObject({ vcpus: 2, memory_mib: 1024 });
      // The host is full now: even 1 MiB more is refused, less is always fine.
      expect((await call('POST', '/v1/instances/a/resize', { memory_mib: 1025 })).body.error.code).toBe(
        'no_host_capacity',
      );
      expect((await call('POST', '/v1/instances/a/resize', { vcpus: 1, memory_mib: 512 })).status).toBe(202);
      // Without an agent the operation stays pending; cancelling it stops the wait and keeps the size.
      const cancelled = await call('POST', `/v1/operations/${op.id}/cancel`);
      expect(cancelled.status, JSON.stringify(cancelled.body)).toBeLessThan(300);
      expect((await call('GET', '/v1/instances/b')).body.spec).toMatchObject({ vcpus: 2, memory_mib: 1024 });
    });

    it("takes a machine type's size, keeps the disk unless the type's is larger, and names the type", async () => {
      const c = await stopped('c', { vcpus: 1, memory_mib: 256 });
      const typed = await call('POST', '/v1/instances/c/resize', { machine_type: 'micro' });
      expect(typed.status, JSON.stringify(typed.body)).toBe(202);
      const after = (await call('GET', '/v1/instances/c')).body as Instance;
      expect(after.spec).toMatchObject({ machine_type: 'micro', vcpus: 1, memory_mib: 512 });
      expect(after.spec.disk_gib).toBeGreaterThanOrEqual(c.spec.disk_gib);
      // A size of its own is no longer the type's.
      expect((await call('POST', '/v1/instances/c/resize', { memory_mib: 384 })).status).toBe(202);
      expect((await call('GET', '/v1/instances/c')).body.spec).toMatchObject({ machine_type: null, memory_mib: 384 });
      const nothing = await call('POST', '/v1/instances/c/resize', {});
      expect(nothing.status).toBe(400);
      expect(nothing.body.error.code).toBe('validation_failed');
      expect((await call('POST', '/v1/instances/c/resize', { machine_type: 'no-such' })).status).toBe(404);
    });
  });
}
