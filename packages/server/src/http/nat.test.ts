import { ERROR_CODES, type ErrorCode, type FloatingIp, type Operation } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// Floating IPs and port forwards through the HTTP API, on both stores. No agent: what a host would
// report is reported through the services, so operations end as they would.

interface Res {
  status: number;
  headers: Record<string, unknown>;
  body: any;
}

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`floating IPs and port forwards API on ${t.name}`, () => {
    let cp: TestControlPlane;
    let host: string;
    const ids: Record<string, string> = {};
    const call = (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<Res> =>
      injectJson(cp, method, url, body);
    const expectError = (res: Res, code: ErrorCode) => {
      expect(res.body?.error?.code, JSON.stringify(res.body)).toBe(code);
      expect(res.status).toBe(ERROR_CODES[code].status);
    };
    /** What the instance's host is told of NAT for its first NIC. */
    const natOf = async (name: string) => {
      const nic = (await cp.app.services.instances.desiredOne(ids[name]!))!.nics![0]!;
      return { fip: nic.floating_ipv4 ?? null, forwards: (nic.forwards ?? []).map((f) => f.port) };
    };
    /** The host reports the instance at the generation it wants, in the power state it wants. */
    const hostHasIt = async (name: string) => {
      const row = await cp.store.db
        .selectFrom('instances')
        .select(['generation', 'revision', 'spec'])
        .where('id', '=', ids[name]!)
        .executeTakeFirstOrThrow();
      const state = (JSON.parse(String(row.spec)) as { power_state: 'running' | 'stopped' }).power_state;
      await cp.app.services.instances.applyObserved(host, {
        id: ids[name]!,
        state,
        observed_revision: Number(row.revision),
        observed_generation: Number(row.generation),
        observed_restart_generation: 0,
        reason: null,
        accelerator: 'tcg',
        started_at: null,
        stopped_at: null,
      });
    };
    /** The types of the events published about a resource, oldest first. */
    const eventsOf = async (id: string) =>
      (
        await cp.store.db.selectFrom('events').select('type').where('resource_id', '=', id).orderBy('seq').execute()
      ).map((e) => e.type);
    const op = async (id: string): Promise<Operation> => (await call('GET', `/v1/operations/${id}`)).body;
    const historyOf = async (url: string) =>
      ((await call('GET', `${url}/history?project=shop`)).body.items as { action: string; actor: string }[]).map(
        (h) => `${h.action} by ${h.actor === 'system' ? 'system' : 'the caller'}`,
      );

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
      host = await onlineTestHost(cp.app, 'node-1');
      expect((await call('POST', '/v1/projects', { name: 'shop' })).status).toBe(201);
      expect((await call('POST', '/v1/images', { name: 'img', project: 'shop' })).status).toBe(201);
      const lan = { name: 'lan', project: 'shop', ipv4: '10.10.0.0/24', gateway: 'host' };
      expect((await call('POST', '/v1/networks', lan)).status).toBe(201);
      const pub = await call('POST', '/v1/networks', {
        name: 'internet',
        kind: 'public',
        ipv4: '198.51.100.0/24',
        gateway: '198.51.100.1',
        pool: { start: '198.51.100.50', end: '198.51.100.59' },
        uplink: 'eth0',
      });
      expect(pub.status, JSON.stringify(pub.body)).toBe(201);
      for (const name of ['a', 'b', 'c']) {
        const res = await call('POST', '/v1/instances', {
          name,
          project: 'shop',
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
          networks: ['lan'],
        });
        expect(res.status, JSON.stringify(res.body)).toBe(202);
        ids[name] = res.body.instance.id;
        await hostHasIt(name);
        expect((await op(res.body.operation.id)).status).toBe('succeeded');
      }
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('moves a floating IP as one operation on the instance it goes to, done once that host has it', async () => {
      const created = await call('POST', '/v1/floating-ips', { name: 'web', project: 'shop', instance: 'a' });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(await natOf('a')).toEqual({ fip: '198.51.100.50', forwards: [] });

      const moved = await call('POST', '/v1/floating-ips/web/attach?project=shop', { instance: 'b' });
      expect(moved.status, JSON.stringify(moved.body)).toBe(202);
      expect(moved.headers.location).toBe(`/v1/operations/${moved.body.operation.id}`);
      const fip = moved.body.floating_ip as FloatingIp;
      expect(fip).toMatchObject({ instance: ids.b, revision: 2 });
      expect(moved.body.operation).toMatchObject({
        kind: 'instance.floating-ip-attach',
        status: 'pending',
        resources: [
          { kind: 'instance', id: ids.b, name: 'b' },
          { kind: 'floating_ip', id: fip.id, name: 'web' },
        ],
      });
      // Both hosts are told at once: a loses it, b has it.
      expect(await natOf('a')).toEqual({ fip: null, forwards: [] });
      expect(await natOf('b')).toEqual({ fip: '198.51.100.50', forwards: [] });
      expect((await op(moved.body.operation.id)).status).toBe('pending');
      await hostHasIt('b');
      expect((await op(moved.body.operation.id)).status).toBe('succeeded');

      expect(await historyOf('/v1/floating-ips/web')).toEqual(['create by the caller', 'attach by the caller']);
      expect((await historyOf('/v1/instances/b')).at(-1)).toBe('floating-ip-attach by the caller');

      // Waiting: the answer comes once the operation ended (here: when it timed out still running).
      const detached = await call('POST', '/v1/floating-ips/web/detach?project=shop&wait=1');
      expect(detached.status).toBe(202);
      expect(detached.body.operation).toMatchObject({ kind: 'instance.floating-ip-detach', status: 'pending' });
      expect(detached.body.operation.resources[0].id).toBe(ids.b);
      expect(detached.body.floating_ip).toMatchObject({ instance: null, nic: null, revision: 3 });
      expect(await natOf('b')).toEqual({ fip: null, forwards: [] });
      await hostHasIt('b');
      const again = await call('GET', `/v1/operations/${detached.body.operation.id}?wait=1`);
      expect(again.body.status).toBe('succeeded');
    });

    it('refuses a detach of a detached floating IP and an attach elsewhere that cannot be, changing nothing', async () => {
      const before = (await call('GET', '/v1/floating-ips/web?project=shop')).body as FloatingIp;
      expect(before.instance).toBeNull();
      expectError(await call('POST', '/v1/floating-ips/web/detach?project=shop'), 'invalid_state');
      expectError(
        await call('POST', '/v1/floating-ips/web/attach?project=shop', { instance: 'nope' }),
        'instance_not_found',
      );
      expectError(
        await call('POST', '/v1/floating-ips/web/attach?project=shop', {
          instance: 'a',
          nic: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C3',
        }),
        'nic_not_found',
      );
      expect((await call('GET', '/v1/floating-ips/web?project=shop')).body.revision).toBe(before.revision);
      const ops = await cp.store.db
        .selectFrom('operations')
        .select('kind')
        .where('kind', 'like', 'instance.floating-ip-%')
        .execute();
      expect(ops.map((o) => o.kind).sort()).toEqual(['instance.floating-ip-attach', 'instance.floating-ip-detach']);
    });

    it("records in their history the floating IP and forwards a NIC's removal takes", async () => {
      const attached = await call('POST', '/v1/floating-ips/web/attach?project=shop', { instance: 'c' });
      expect(attached.status, JSON.stringify(attached.body)).toBe(202);
      await hostHasIt('c');
      const pf = await call('POST', '/v1/port-forwards', {
        name: 'ssh-c',
        project: 'shop',
        instance: 'c',
        port: 2222,
        target_port: 22,
      });
      expect(pf.status, JSON.stringify(pf.body)).toBe(201);
      expect(await natOf('c')).toEqual({ fip: '198.51.100.50', forwards: [2222] });
      const nic = (await call('GET', '/v1/instances/c/nics?project=shop')).body.items[0].id as string;

      expect((await call('DELETE', `/v1/instances/c/nics/${nic}?project=shop`)).status).toBe(202);
      const fip = (await call('GET', '/v1/floating-ips/web?project=shop')).body as FloatingIp;
      expect(fip).toMatchObject({ instance: null, nic: null });
      expect((await historyOf('/v1/floating-ips/web')).slice(-2)).toEqual([
        'attach by the caller',
        'detach by the caller',
      ]);
      // Its history outlives it (the API shows history of resources that exist; the table keeps it).
      const entries = (
        await cp.store.db
          .selectFrom('history')
          .select(['action', 'before'])
          .where('resource_id', '=', pf.body.id)
          .orderBy('id')
          .execute()
      ).map((h) => ({ action: h.action, before: h.before === null ? null : JSON.parse(String(h.before)) }));
      expect(entries.map((e) => e.action)).toEqual(['create', 'delete']);
      expect(entries[1]!.before).toMatchObject({ port: 2222, target_address: pf.body.target_address });
      expectError(await call('GET', '/v1/port-forwards/ssh-c?project=shop'), 'port_forward_not_found');
      const labels = await cp.store.db
        .selectFrom('resource_labels')
        .select('resource_id')
        .where('resource_id', '=', pf.body.id)
        .execute();
      expect(labels).toEqual([]);
      // And it is said at once to whoever listens, as when they are changed themselves.
      expect((await eventsOf(pf.body.id)).at(-1)).toBe('resource.deleted');
      expect((await eventsOf(fip.id)).at(-1)).toBe('resource.updated');
    });

    it("records the detach when the instance's deletion ends, by the system", async () => {
      expect((await call('POST', '/v1/floating-ips/web/attach?project=shop', { instance: 'a' })).status).toBe(202);
      expect((await call('DELETE', '/v1/instances/a?project=shop')).status).toBe(202);
      // Still attached while the host deletes the VM; detached once it reported it gone.
      expect(((await call('GET', '/v1/floating-ips/web?project=shop')).body as FloatingIp).instance).toBe(ids.a);
      await cp.app.services.instances.applyObserved(host, {
        id: ids.a!,
        state: 'deleted',
        observed_revision: 99,
        observed_generation: 99,
        observed_restart_generation: 0,
        reason: null,
        accelerator: null,
        started_at: null,
        stopped_at: null,
      });
      expect(((await call('GET', '/v1/floating-ips/web?project=shop')).body as FloatingIp).instance).toBeNull();
      expect((await historyOf('/v1/floating-ips/web')).at(-1)).toBe('detach by system');
      const fip = (await call('GET', '/v1/floating-ips/web?project=shop')).body as FloatingIp;
      const updates = (await eventsOf(fip.id)).filter((e) => e === 'resource.updated').length;
      // Attached to b, detached, attached to c, detached by the NIC's removal, attached to a, detached by the deletion.
      expect(updates).toBe(6);
    });
  });
}
