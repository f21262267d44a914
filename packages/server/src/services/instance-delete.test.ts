import type { Instance, ObservedInstance, Operation } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transaction } from '../db/index.js';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// The end of a delete, on both dialects, with the agent's reports played through the service: a delete
// while one is under way answers that operation, and once the instance is gone no operation on it
// stays unfinished, whatever generation the agent last reported.

const call = injectJson;

function observed(instance: Instance, patch: Partial<ObservedInstance>): ObservedInstance {
  return {
    id: instance.id,
    state: 'running',
    observed_revision: instance.revision,
    observed_generation: 1,
    observed_restart_generation: 0,
    reason: null,
    accelerator: 'fake',
    started_at: new Date().toISOString(),
    stopped_at: null,
    ...patch,
  };
}

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`instance delete on ${target.name}`, () => {
    let cp: TestControlPlane;
    let hostId: string;

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        FLOE_LOG_LEVEL: 'silent',
      });
      hostId = await onlineTestHost(cp.app, 'node-1');
      expect((await call(cp, 'POST', '/v1/images', { name: 'img' })).status).toBe(201);
      expect((await call(cp, 'POST', '/v1/networks', { name: 'net', ipv4: '10.78.0.0/24' })).status).toBe(201);
    });

    afterAll(async () => {
      await cp?.close();
    });

    async function runningInstance(name: string): Promise<Instance> {
      const res = await call(cp, 'POST', '/v1/instances', { name, image: 'img', vcpus: 1, memory_mib: 128 });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const instance = res.body.instance as Instance;
      await cp.app.services.instances.applyObserved(hostId, observed(instance, {}));
      return instance;
    }

    const operation = async (id: string) => (await call(cp, 'GET', `/v1/operations/${id}`)).body as Operation;

    it('a second delete while one is under way answers the same operation, recorded once', async () => {
      const i = await runningInstance('twice');
      const first = await call(cp, 'DELETE', `/v1/instances/${i.id}`);
      const second = await call(cp, 'DELETE', `/v1/instances/${i.id}`);
      expect([first.status, second.status]).toEqual([202, 202]);
      expect(second.body.id).toBe(first.body.id);
      const history = (await call(cp, 'GET', `/v1/instances/${i.id}/history`)).body.items as Array<{ action: string }>;
      expect(history.filter((h) => h.action === 'delete')).toHaveLength(1);
      await cp.app.services.instances.applyObserved(hostId, observed(i, { state: 'deleted', observed_generation: 2 }));
      expect(await operation(first.body.id)).toMatchObject({ status: 'succeeded', progress: 100 });
    });

    it('the report that the instance is gone ends a delete that targeted a later generation', async () => {
      const i = await runningInstance('retried');
      const first = await call(cp, 'DELETE', `/v1/instances/${i.id}`);
      // The host fails the first delete, which ends; the retry targets the next generation...
      await cp.app.services.instances.applyObserved(
        hostId,
        observed(i, { state: 'error', observed_generation: 2, reason: 'disk busy' }),
      );
      expect((await operation(first.body.id)).status).toBe('failed');
      const retry = await call(cp, 'DELETE', `/v1/instances/${i.id}`);
      expect(retry.body.id).not.toBe(first.body.id);
      // ...but the host's own retry of the first gets there before it hears of the second.
      await cp.app.services.instances.applyObserved(hostId, observed(i, { state: 'deleted', observed_generation: 2 }));
      expect((await call(cp, 'GET', `/v1/instances/${i.id}`)).status).toBe(404);
      expect(await operation(retry.body.id)).toMatchObject({ status: 'succeeded', progress: 100 });
    });
    it('a request that waited for the row of an instance deleted meanwhile finds no instance', async () => {
      const i = await runningInstance('vanishing');
      expect((await call(cp, 'DELETE', `/v1/instances/${i.id}`)).status).toBe(202);
      // The agent's report that it is gone holds the row while the requests come in.
      let locked!: () => void;
      let release!: () => void;
      const isLocked = new Promise<void>((r) => (locked = r));
      const released = new Promise<void>((r) => (release = r));
      const report = transaction(cp.store, async (trx) => {
        await trx.selectFrom('instances').selectAll().where('id', '=', i.id).forUpdate().execute();
        locked();
        await released;
        await trx.deleteFrom('instances').where('id', '=', i.id).execute();
      });
      await isLocked;
      const waiting = [
        call(cp, 'DELETE', `/v1/instances/${i.id}`),
        call(cp, 'POST', `/v1/instances/${i.id}/nics`, { network: 'net' }),
        call(cp, 'PATCH', `/v1/instances/${i.id}`, { labels: { a: 'b' } }),
        call(cp, 'POST', `/v1/instances/${i.id}/stop`),
      ];
      await new Promise((r) => setTimeout(r, 300));
      release();
      await report;
      for (const res of await Promise.all(waiting)) {
        expect(res.status, JSON.stringify(res.body)).toBe(404);
        expect(res.body.error.code).toBe('instance_not_found');
      }
    });
  });
}
