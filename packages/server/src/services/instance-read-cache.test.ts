import type { Instance, ObservedInstance } from '@floe/api';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../db/index.js';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// The read cache of GET /v1/instances/{id}, through the HTTP API on both dialects: answers stay fresh
// after every kind of write, project scoping still applies to cached rows, and on PostgreSQL a write on
// one control plane reaches another's cache.

const onlineHost = onlineTestHost;
const call = injectJson;

async function createInstance(cp: TestControlPlane, project: string, name: string): Promise<Instance> {
  const res = await call(cp, 'POST', '/v1/instances', { name, project, image: 'img', vcpus: 1, memory_mib: 128 });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body.instance;
}

/** Change a row behind floe's back: a GET that still shows the old value proves it came from the cache. */
async function writeBehind(cp: TestControlPlane, id: string, labels: Record<string, string>): Promise<void> {
  await cp.store.db
    .updateTable('instances')
    .set({ labels: JSON.stringify(labels) })
    .where('id', '=', id)
    .execute();
}

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

async function eventually(check: () => Promise<boolean>, what: string, ms = 1000): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`instance read cache on ${target.name}`, () => {
    let cp: TestControlPlane;
    let hostId: string;

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        FLOE_LOG_LEVEL: 'silent',
      });
      hostId = await onlineHost(cp.app, 'node-1');
      for (const project of ['rc-a', 'rc-b']) {
        expect((await call(cp, 'POST', '/v1/projects', { name: project })).status).toBe(201);
        expect((await call(cp, 'POST', '/v1/images', { name: 'img', project })).status).toBe(201);
      }
    });

    afterAll(async () => {
      await cp?.close();
    });

    it('serves repeated GETs from the cache', async () => {
      const i = await createInstance(cp, 'rc-a', 'cached');
      const first = await call(cp, 'GET', `/v1/instances/${i.id}`);
      expect(first.body.labels).toEqual({});
      // A cached answer is the same document, with the same headers, as the list shows.
      const again = await call(cp, 'GET', `/v1/instances/${i.id}`);
      expect(again.body).toEqual(first.body);
      expect(again.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(again.headers.etag).toBe('"1"');
      expect(
        (await call(cp, 'GET', '/v1/instances?project=rc-a')).body.items.find((x: Instance) => x.id === i.id),
      ).toEqual(first.body);
      await writeBehind(cp, i.id, { behind: 'yes' });
      // By id and by name: the cached row, not the database.
      expect((await call(cp, 'GET', `/v1/instances/${i.id}`)).body.labels).toEqual({});
      expect((await call(cp, 'GET', '/v1/instances/cached?project=rc-a')).body.labels).toEqual({});
      // Lists never use the cache.
      const listed = (await call(cp, 'GET', '/v1/instances?project=rc-a')).body.items.find(
        (x: Instance) => x.id === i.id,
      );
      expect(listed.labels).toEqual({ behind: 'yes' });
    });

    it('answers fresh data after PATCH, by id and by name, with the new ETag', async () => {
      const i = await createInstance(cp, 'rc-a', 'patched');
      await call(cp, 'GET', `/v1/instances/${i.id}`);
      await call(cp, 'GET', '/v1/instances/patched?project=rc-a');
      const patched = await call(cp, 'PATCH', `/v1/instances/${i.id}`, { labels: { tier: 'web' } });
      expect(patched.status).toBe(200);
      const byId = await call(cp, 'GET', `/v1/instances/${i.id}`);
      expect(byId.body.labels).toEqual({ tier: 'web' });
      expect(byId.body.revision).toBe(2);
      expect(byId.headers.etag).toBe('"2"');
      expect((await call(cp, 'GET', '/v1/instances/patched?project=rc-a')).body.labels).toEqual({ tier: 'web' });
    });

    it('answers fresh data after stop, cancel, an agent status report and the end of a delete', async () => {
      const i = await createInstance(cp, 'rc-a', 'lifecycle');
      const get = async () => (await call(cp, 'GET', `/v1/instances/${i.id}`)).body as Instance;
      expect((await get()).status.state).toBe('scheduled');

      await cp.app.services.instances.applyObserved(hostId, observed(i, { state: 'running' }));
      expect((await get()).status.state).toBe('running');

      const stop = await call(cp, 'POST', `/v1/instances/${i.id}/stop`);
      expect(stop.status).toBe(202);
      expect((await get()).spec.power_state).toBe('stopped');
      expect((await call(cp, 'POST', `/v1/operations/${stop.body.id}/cancel`)).body.status).toBe('cancelled');
      expect((await get()).spec.power_state).toBe('running');

      expect((await call(cp, 'POST', `/v1/instances/${i.id}/stop`)).status).toBe(202);
      await cp.app.services.instances.applyObserved(
        hostId,
        observed(i, { state: 'stopped', observed_generation: 3, stopped_at: new Date().toISOString() }),
      );
      const stopped = await get();
      expect(stopped.status.state).toBe('stopped');
      expect(stopped.spec.power_state).toBe('stopped');

      expect((await call(cp, 'DELETE', `/v1/instances/${i.id}`)).status).toBe(202);
      expect((await get()).status.state).toBe('stopped'); // the host has not reported yet
      await cp.app.services.instances.applyObserved(hostId, observed(i, { state: 'deleting', observed_generation: 4 }));
      expect((await get()).status.state).toBe('deleting');
      await cp.app.services.instances.applyObserved(hostId, observed(i, { state: 'deleted', observed_generation: 4 }));
      expect((await call(cp, 'GET', `/v1/instances/${i.id}`)).body.error.code).toBe('instance_not_found');
      expect((await call(cp, 'GET', '/v1/instances/lifecycle?project=rc-a')).body.error.code).toBe(
        'instance_not_found',
      );
    });

    it('forgets an instance whose create was cancelled, and does not confuse a new one of the same name', async () => {
      const res = await call(cp, 'POST', '/v1/instances', {
        name: 'reborn',
        project: 'rc-a',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
      });
      const first = res.body.instance as Instance;
      expect((await call(cp, 'GET', '/v1/instances/reborn?project=rc-a')).body.id).toBe(first.id);
      expect((await call(cp, 'POST', `/v1/operations/${res.body.operation.id}/cancel`)).status).toBe(200);
      expect((await call(cp, 'GET', `/v1/instances/${first.id}`)).status).toBe(404);
      expect((await call(cp, 'GET', '/v1/instances/reborn?project=rc-a')).status).toBe(404);
      const second = await createInstance(cp, 'rc-a', 'reborn');
      expect((await call(cp, 'GET', '/v1/instances/reborn?project=rc-a')).body.id).toBe(second.id);
    });

    it('still hides cached instances from tokens of other projects', async () => {
      const a = await createInstance(cp, 'rc-a', 'scoped');
      const b = await createInstance(cp, 'rc-b', 'scoped');
      // The admin's GETs put both in the cache.
      expect((await call(cp, 'GET', `/v1/instances/${a.id}`)).status).toBe(200);
      expect((await call(cp, 'GET', `/v1/instances/${b.id}`)).status).toBe(200);
      expect((await call(cp, 'GET', '/v1/instances/scoped?project=rc-b')).status).toBe(200);
      await writeBehind(cp, b.id, { behind: 'yes' }); // b is served from the cache from here on
      const token = (await call(cp, 'POST', '/v1/tokens', { name: 'rc-team-a', projects: ['rc-a'] })).body
        .secret as string;
      const own = await call(cp, 'GET', `/v1/instances/${a.id}`, undefined, token);
      expect(own.status).toBe(200);
      expect(own.body.id).toBe(a.id);
      for (const url of [`/v1/instances/${b.id}`, '/v1/instances/scoped?project=rc-b']) {
        const res = await call(cp, 'GET', url, undefined, token);
        expect(res.status, url).toBe(404);
        expect(res.body.error.code).toBe('instance_not_found');
      }
      expect((await call(cp, 'GET', `/v1/instances/${b.id}`)).body.labels).toEqual({}); // it was cached
    });
  });

  describe.skipIf(target.skip)(`instance read cache switched off on ${target.name}`, () => {
    let cp: TestControlPlane;

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_READ_CACHE: 'off',
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        FLOE_LOG_LEVEL: 'silent',
      });
      await onlineHost(cp.app, 'node-1');
      expect((await call(cp, 'POST', '/v1/images', { name: 'img' })).status).toBe(201);
    });

    afterAll(async () => {
      await cp?.close();
    });

    it('reads the database on every GET with FLOE_READ_CACHE=off', async () => {
      const i = await createInstance(cp, 'default', 'uncached');
      expect((await call(cp, 'GET', `/v1/instances/${i.id}`)).body.labels).toEqual({});
      await writeBehind(cp, i.id, { behind: 'yes' });
      expect((await call(cp, 'GET', `/v1/instances/${i.id}`)).body.labels).toEqual({ behind: 'yes' });
    });
  });
}

const pgTarget = storeTargets().find((t) => t.name === 'postgres')!;
describe.skipIf(pgTarget.skip)('instance read cache across two control planes on PostgreSQL', () => {
  let cp1: TestControlPlane;
  let cp2: TestControlPlane;
  let hostId: string;

  beforeAll(async () => {
    const store1 = await pgTarget.open();
    cp1 = await startTestControlPlane(store1, { FLOE_HOST_OFFLINE_AFTER_MS: '3600000', FLOE_LOG_LEVEL: 'silent' });
    cp2 = await startTestControlPlane(
      await openStore({ url: store1.options.url! }),
      { FLOE_HOST_OFFLINE_AFTER_MS: '3600000', FLOE_LOG_LEVEL: 'silent' },
      { ca: cp1.ca, pki: cp1.pki },
    );
    hostId = await onlineHost(cp1.app, 'node-1');
    expect((await call(cp1, 'POST', '/v1/images', { name: 'img' })).status).toBe(201);
  }, 30_000);

  afterAll(async () => {
    await cp2?.close(); // first: the test database is dropped with the first store
    await cp1?.close();
  });

  const get = async (cp: TestControlPlane, id: string) =>
    (await call(cp, 'GET', `/v1/instances/${id}`, undefined, cp1.adminToken)).body as Instance;

  /** Create on cp1 and wait until cp2 heard of it (its event also drops the id from cp2's cache). */
  async function createHeard(name: string): Promise<Instance> {
    let heard: (id: string) => void = () => undefined;
    const ids = new Set<string>();
    const stop = cp2.app.services.bus.subscribe((e) => {
      if (e.type === 'resource.created') {
        ids.add(e.resource_id);
        heard(e.resource_id);
      }
    });
    try {
      const i = await createInstance(cp1, 'default', name);
      if (!ids.has(i.id))
        await new Promise<void>((resolve) => {
          heard = (id) => {
            if (id === i.id) resolve();
          };
        });
      return i;
    } finally {
      stop();
    }
  }

  it('a write on one control plane reaches the cache of the other within a second', async () => {
    const i = await createHeard('shared');
    expect((await get(cp2, i.id)).labels).toEqual({});
    await writeBehind(cp2, i.id, { behind: 'yes' });
    expect((await get(cp2, i.id)).labels).toEqual({}); // cached on cp2

    expect((await call(cp1, 'PATCH', `/v1/instances/${i.id}`, { labels: { tier: 'db' } })).status).toBe(200);
    const patchMs = await eventually(async () => (await get(cp2, i.id)).labels.tier === 'db', 'the PATCH seen on cp2');
    expect(patchMs).toBeLessThan(1000);

    expect((await call(cp1, 'POST', `/v1/instances/${i.id}/stop`)).status).toBe(202);
    await eventually(async () => (await get(cp2, i.id)).spec.power_state === 'stopped', 'the stop seen on cp2');

    // The other way round: an agent report applied by cp2 (the control plane holding its link) reaches cp1's cache.
    expect((await get(cp1, i.id)).status.state).toBe('scheduled');
    await cp2.app.services.instances.applyObserved(hostId, observed(i, { state: 'stopped', observed_generation: 2 }));
    await eventually(async () => (await get(cp1, i.id)).status.state === 'stopped', 'the status report seen on cp1');
  });

  it('stops caching while it cannot hear the others, and starts again once it can', async () => {
    const i = await createHeard('deaf');
    await get(cp2, i.id);
    // Cut every LISTEN connection: notifications sent now would be lost.
    const admin = new pg.Client({ connectionString: cp2.store.url });
    await admin.connect();
    try {
      await eventually(async () => {
        const { rows } = await admin.query(
          `select pg_terminate_backend(pid) as t from pg_stat_activity where datname = current_database() and query like 'LISTEN %' and pid <> pg_backend_pid()`,
        );
        return rows.length > 0;
      }, 'LISTEN connections to cut');
    } finally {
      await admin.end();
    }
    await eventually(async () => !cp2.app.services.instances.cacheEnabled, 'cp2 to notice', 2000);
    await writeBehind(cp2, i.id, { behind: 'one' });
    expect((await get(cp2, i.id)).labels).toEqual({ behind: 'one' }); // from the database: nothing is cached now
    await eventually(async () => cp2.app.services.instances.cacheEnabled, 'cp2 to listen again', 5000);
    expect((await get(cp2, i.id)).labels).toEqual({ behind: 'one' });
    await writeBehind(cp2, i.id, { behind: 'two' });
    expect((await get(cp2, i.id)).labels).toEqual({ behind: 'one' }); // cached again
  }, 15_000);
});
