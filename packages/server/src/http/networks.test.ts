import { ERROR_CODES, type ErrorCode, type HostFacts, type Network, type Nic } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../app.js';
import { storeTargets } from '../db/testing.js';
import { eui64, formatIpv6, parseCidr6 } from '../services/ip.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';

// Networks, NICs and IPAM through the HTTP API, on both dialects. No agent: hosts are
// marked online through the services, and deletes are completed by reporting `deleted`.

const FACTS: HostFacts = {
  hostname: 'test',
  agent_version: '0.0.0',
  arch: 'x86_64',
  kernel: '6.1.0',
  cpus: 4,
  memory_mib: 8192,
  disk_free_gib: 100,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'test host' },
  accelerator: 'tcg',
  wireguard_kernel: false,
  vm_driver: 'fake',
};

async function onlineHost(app: App, name: string, underlay: string): Promise<string> {
  const { id } = await app.services.hosts.ensureLocal(name, async () => ({ serial: 'x' }));
  await app.services.hosts.markOnline(id, { ...FACTS, hostname: name, underlay_ipv4: underlay }, 'test');
  return id;
}

interface Res {
  status: number;
  body: any;
}

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`networks API on ${t.name}`, () => {
    let cp: TestControlPlane;
    let userToken: string;
    const call = async (
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      body?: unknown,
      token?: string,
    ): Promise<Res> => {
      const headers: Record<string, string> = { authorization: `Bearer ${token ?? cp.adminToken}` };
      if (body !== undefined)
        headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
      const res = await cp.app.http.inject({
        method,
        url,
        headers,
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
      return { status: res.statusCode, body: res.body === '' ? null : JSON.parse(res.body) };
    };
    const expectError = (res: Res, code: ErrorCode, field?: string) => {
      expect(res.body?.error?.code, JSON.stringify(res.body)).toBe(code);
      expect(res.status).toBe(ERROR_CODES[code].status);
      if (field !== undefined) expect(res.body.error.details?.field, JSON.stringify(res.body)).toBe(field);
    };
    const nicsOf = async (instance: string): Promise<Nic[]> => {
      const res = await call('GET', `/v1/instances/${instance}/nics?project=net`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body.items;
    };
    let hostA: string;
    let hostB: string;

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
      expect((await call('POST', '/v1/projects', { name: 'net' })).status).toBe(201);
      expect((await call('POST', '/v1/images', { name: 'img', project: 'net' })).status).toBe(201);
      const tok = await call('POST', '/v1/tokens', { name: 'user', projects: ['net'] });
      userToken = tok.body.secret;
      hostA = await onlineHost(cp.app, 'node-a', '192.0.2.10');
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('creates, shows, lists, patches networks with a unique VNI and a ULA for ipv6 auto', async () => {
      const res = await call(
        'POST',
        '/v1/networks',
        { name: 'lan', project: 'net', ipv4: '10.10.0.0/24', ipv6: 'auto', gateway: 'host' },
        userToken,
      );
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      const lan = res.body as Network;
      expect(lan.spec).toMatchObject({
        kind: 'private',
        ipv4: '10.10.0.0/24',
        gateway: 'host',
        mtu: 1450,
        dns: true,
        dhcpv6: false,
        reserved: [],
      });
      expect(lan.spec.ipv6).toMatch(/^fd[0-9a-f]{2}:.*::\/64$/);
      expect(lan.vni).toBeGreaterThanOrEqual(1);
      expect(lan.vni).toBeLessThanOrEqual(16_777_215);
      expect(lan.status).toMatchObject({ hosts: [], nics: 0, gateway4: '10.10.0.1', host_ipv4: '10.10.0.1' });
      const other = await call('POST', '/v1/networks', {
        name: 'dmz',
        project: 'net',
        ipv4: '10.20.0.0/24',
        gateway: 'none',
        dns: false,
      });
      expect(other.status).toBe(201);
      expect(other.body.vni).not.toBe(lan.vni);
      expect(other.body.status.gateway4).toBe(null);

      expect((await call('GET', '/v1/networks/lan?project=net', undefined, userToken)).body.id).toBe(lan.id);
      const list = await call('GET', '/v1/networks?project=net', undefined, userToken);
      expect(list.body.items.map((n: Network) => n.name).sort()).toEqual(['dmz', 'lan']);
      const patched = await call('PATCH', '/v1/networks/dmz?project=net', {
        labels: { tier: 'edge' },
        spec: { reserved: ['10.20.0.2'] },
      });
      expect(patched.status, JSON.stringify(patched.body)).toBe(200);
      expect(patched.body.spec.reserved).toEqual(['10.20.0.2']);
      expect(patched.body.revision).toBe(2);
    });

    it('hands IPv6 out by DHCPv6 when asked, only with IPv6 and never on public networks; older records read as SLAAC', async () => {
      const v6 = await call(
        'POST',
        '/v1/networks',
        { name: 'v6', project: 'net', ipv4: null, ipv6: 'fd00:60::/64', gateway: 'none', dhcpv6: true },
        userToken,
      );
      expect(v6.status, JSON.stringify(v6.body)).toBe(201);
      expect(v6.body.spec).toMatchObject({ ipv4: null, ipv6: 'fd00:60::/64', dhcpv6: true });
      expectError(
        await call('POST', '/v1/networks', { name: 'bad', project: 'net', ipv4: '10.0.0.0/24', dhcpv6: true }),
        'validation_failed',
        'dhcpv6',
      );
      expectError(
        await call('POST', '/v1/networks', {
          name: 'bad',
          project: 'default',
          kind: 'public',
          ipv4: '198.51.100.0/24',
          ipv6: '2001:db8::/64',
          pool: { start: '198.51.100.10', end: '198.51.100.11' },
          uplink: 'eth0',
          dhcpv6: true,
        }),
        'validation_failed',
        'dhcpv6',
      );
      const off = await call('PATCH', '/v1/networks/v6?project=net', { spec: { dhcpv6: false } }, userToken);
      expect(off.status, JSON.stringify(off.body)).toBe(200);
      expect(off.body.spec.dhcpv6).toBe(false);
      expectError(
        await call('PATCH', '/v1/networks/dmz?project=net', { spec: { dhcpv6: true } }),
        'validation_failed',
        'dhcpv6',
      );
      // A network stored before the field existed.
      const row = await cp.store.db
        .selectFrom('networks')
        .select(['id', 'spec'])
        .where('name', '=', 'v6')
        .executeTakeFirstOrThrow();
      const { dhcpv6: _, ...older } = JSON.parse(row.spec) as Record<string, unknown>;
      await cp.store.db
        .updateTable('networks')
        .set({ spec: JSON.stringify(older) })
        .where('id', '=', row.id)
        .execute();
      expect((await call('GET', '/v1/networks/v6?project=net', undefined, userToken)).body.spec.dhcpv6).toBe(false);
      expect((await call('DELETE', '/v1/networks/v6?project=net', undefined, userToken)).status).toBe(204);
    });

    it('rejects bad specs, duplicate names, and public networks from non-admins', async () => {
      expectError(
        await call('POST', '/v1/networks', { name: 'bad', project: 'net', ipv4: '10.0.0.1/24' }),
        'validation_failed',
        'ipv4',
      );
      expectError(
        await call('POST', '/v1/networks', { name: 'bad', project: 'net', ipv4: '10.0.0.0/24', gateway: '10.9.9.9' }),
        'validation_failed',
        'gateway',
      );
      expectError(
        await call('POST', '/v1/networks', { name: 'bad', project: 'net', ipv6: 'fd00::/40' }),
        'validation_failed',
        'ipv6',
      );
      expectError(
        await call('POST', '/v1/networks', { name: 'lan', project: 'net', ipv4: '10.30.0.0/24' }),
        'name_conflict',
        'name',
      );
      expectError(
        await call(
          'POST',
          '/v1/networks',
          { name: 'pub', project: 'net', kind: 'public', ipv4: '198.51.100.0/24' },
          userToken,
        ),
        'forbidden',
      );
      const pub = await call('POST', '/v1/networks', {
        name: 'internet',
        project: 'default',
        kind: 'public',
        ipv4: '198.51.100.0/24',
        gateway: '198.51.100.1',
        pool: { start: '198.51.100.10', end: '198.51.100.11' },
        uplink: 'eth0',
      });
      expect(pub.status, JSON.stringify(pub.body)).toBe(201);
      expect(pub.body.spec).toMatchObject({ kind: 'public', mtu: 1500, dns: false, uplink: 'eth0' });
      // Public networks are seen from every project.
      const seen = await call('GET', '/v1/networks?project=net', undefined, userToken);
      expect(seen.body.items.map((n: Network) => n.name)).toContain('internet');
    });

    it('creates instances with NICs: stable MACs, requested or next-free IPv4, EUI-64 IPv6, desired state for the agent', async () => {
      const res = await call(
        'POST',
        '/v1/instances',
        {
          name: 'web',
          project: 'net',
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
          networks: ['lan', { network: 'lan', ipv4: '10.10.0.50' }, 'internet'],
        },
        userToken,
      );
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const nics = await nicsOf('web');
      expect(nics.map((n) => [n.index, n.network_name, n.ipv4])).toEqual([
        [0, 'lan', '10.10.0.2'],
        [1, 'lan', '10.10.0.50'],
        [2, 'internet', '198.51.100.10'],
      ]);
      for (const n of nics) expect(n.mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
      expect(new Set(nics.map((n) => n.mac)).size).toBe(3);
      const lan = (await call('GET', '/v1/networks/lan?project=net')).body as Network;
      expect(nics[0]!.ipv6).toBe(formatIpv6(eui64(parseCidr6(lan.spec.ipv6!).network, nics[0]!.mac)));
      expect(nics[2]!.ipv6).toBe(null);
      expect(lan.status).toMatchObject({ hosts: [hostA], nics: 2 });

      const desired = await cp.app.services.instances.desiredOne(res.body.instance.id);
      expect(desired!.nics).toEqual([
        {
          id: nics[0]!.id,
          network_id: lan.id,
          vni: lan.vni,
          index: 0,
          mac: nics[0]!.mac,
          ipv4: '10.10.0.2',
          ipv4_prefix: 24,
          ipv6: nics[0]!.ipv6,
          ipv6_prefix: 64,
          gateway4: '10.10.0.1',
          gateway6: lan.status.gateway6,
          mtu: 1450,
          dns_servers: ['10.10.0.1', lan.status.host_ipv6],
          // Named none: the project's default group.
          security_groups: [expect.stringMatching(/^sg_/) as string],
          filtering: true,
        },
        expect.objectContaining({ index: 1, ipv4: '10.10.0.50' }),
        expect.objectContaining({
          index: 2,
          ipv4: '198.51.100.10',
          ipv4_prefix: 24,
          gateway4: '198.51.100.1',
          mtu: 1500,
          dns_servers: [],
        }),
      ]);

      // A taken address, an address outside the network and an unknown network leave no trace.
      const before = await cp.store.db.selectFrom('ip_addresses').select('address').execute();
      expectError(
        await call('POST', '/v1/instances', {
          name: 'dup',
          project: 'net',
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
          networks: [{ network: 'lan', ipv4: '10.10.0.50' }],
        }),
        'address_in_use',
        'networks[0].ipv4',
      );
      expectError(
        await call('POST', '/v1/instances', {
          name: 'dup',
          project: 'net',
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
          networks: [{ network: 'lan', ipv4: '10.11.0.5' }],
        }),
        'validation_failed',
        'networks[0].ipv4',
      );
      expectError(
        await call('POST', '/v1/instances', {
          name: 'dup',
          project: 'net',
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
          networks: ['nope'],
        }),
        'network_not_found',
        'networks[0]',
      );
      expect((await cp.store.db.selectFrom('ip_addresses').select('address').execute()).length).toBe(before.length);
      expect((await call('GET', '/v1/instances/dup?project=net')).status).toBe(404);
    });

    it('gives agents their networks with VXLAN peers and pinned leases', async () => {
      hostB = await onlineHost(cp.app, 'node-b', '192.0.2.11');
      // node-a is full of nothing; pin placement by draining node-a for this one.
      expect((await call('PATCH', `/v1/hosts/${hostA}`, { spec: { schedulable: false } })).status).toBe(200);
      const res = await call('POST', '/v1/instances', {
        name: 'db',
        project: 'net',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
        networks: ['lan'],
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      expect(res.body.instance.status.host).toBe(hostB);
      expect((await call('PATCH', `/v1/hosts/${hostA}`, { spec: { schedulable: true } })).status).toBe(200);

      const onA = await cp.app.services.networks.desiredForHost(hostA);
      const onB = await cp.app.services.networks.desiredForHost(hostB);
      expect(onA.map((n) => n.name).sort()).toEqual(['internet', 'lan']);
      expect(onB.map((n) => n.name)).toEqual(['lan']);
      const lanA = onA.find((n) => n.name === 'lan')!;
      expect(lanA.peers).toEqual(['192.0.2.11']);
      expect(onB[0]!.peers).toEqual(['192.0.2.10']);
      expect(lanA).toMatchObject({
        ipv4: '10.10.0.0/24',
        gateway: 'host',
        gateway4: '10.10.0.1',
        host_ipv4: '10.10.0.1',
        dns: true,
        dhcpv6: false,
        mtu: 1450,
      });
      expect(lanA.leases.map((l) => [l.hostname, l.ipv4])).toEqual([
        ['db', '10.10.0.3'],
        ['web', '10.10.0.2'],
        ['web-1', '10.10.0.50'],
      ]);
      expect(onA.find((n) => n.name === 'internet')).toMatchObject({ kind: 'public', uplink: 'eth0', peers: [] });
      expect((await call('GET', '/v1/networks/lan?project=net')).body.status.hosts).toEqual([hostA, hostB].sort());
    });

    it('hot-adds and hot-removes NICs as operations; freed addresses are reused; at most 8', async () => {
      const web = (await call('GET', '/v1/instances/web?project=net')).body;
      const gen = (
        await cp.store.db
          .selectFrom('instances')
          .select('generation')
          .where('id', '=', web.id)
          .executeTakeFirstOrThrow()
      ).generation;
      const added = await call('POST', '/v1/instances/web/nics?project=net', { network: 'dmz' }, userToken);
      expect(added.status, JSON.stringify(added.body)).toBe(202);
      expect(added.body.operation).toMatchObject({ kind: 'instance.nic-add', status: 'pending' });
      expect(added.body.nic).toMatchObject({ index: 3, network_name: 'dmz', ipv4: '10.20.0.3' }); // .2 is reserved
      const after = (
        await cp.store.db
          .selectFrom('instances')
          .select('generation')
          .where('id', '=', web.id)
          .executeTakeFirstOrThrow()
      ).generation;
      expect(Number(after)).toBe(Number(gen) + 1);
      expect((await cp.app.services.instances.desiredOne(web.id))!.nics!.map((n) => n.index)).toEqual([0, 1, 2, 3]);

      expectError(
        await call('POST', '/v1/instances/web/nics?project=net', { network: 'lan', ipv4: '10.10.0.2' }),
        'address_in_use',
      );
      const removed = await call('DELETE', `/v1/instances/web/nics/${(await nicsOf('web'))[1]!.id}?project=net`);
      expect(removed.status, JSON.stringify(removed.body)).toBe(202);
      expect(removed.body.kind).toBe('instance.nic-remove');
      expect((await nicsOf('web')).map((n) => n.index)).toEqual([0, 2, 3]);
      // The freed slot and the freed address are used again.
      const again = await call('POST', '/v1/instances/web/nics?project=net', { network: 'lan', ipv4: '10.10.0.50' });
      expect(again.status, JSON.stringify(again.body)).toBe(202);
      expect(again.body.nic.index).toBe(1);
      expectError(
        await call('DELETE', '/v1/instances/web/nics/nic_01JB8X0Q3E6M2T9K4V7W5YB1C3?project=net'),
        'nic_not_found',
      );
      for (let i = 0; i < 4; i++)
        expect((await call('POST', '/v1/instances/web/nics?project=net', { network: 'dmz' })).status).toBe(202);
      expectError(await call('POST', '/v1/instances/web/nics?project=net', { network: 'dmz' }), 'too_many_nics');
    });

    it('sets rate limits on a new NIC and changes them on an existing one as operations the agent sees', async () => {
      const web = (await call('GET', '/v1/instances/web?project=net')).body;
      const last = (await nicsOf('web')).at(-1)!;
      expect((await call('DELETE', `/v1/instances/web/nics/${last.id}?project=net`)).status).toBe(202);
      const limit = { ingress_kbps: 10_000, egress_kbps: 10_000 };
      const added = await call(
        'POST',
        '/v1/instances/web/nics?project=net',
        { network: 'dmz', rate_limit: limit },
        userToken,
      );
      expect(added.status, JSON.stringify(added.body)).toBe(202);
      expect(added.body.nic.rate_limit).toEqual(limit);
      const nicId: string = added.body.nic.id;
      const desiredLimit = async () =>
        (await cp.app.services.instances.desiredOne(web.id))!.nics!.find((n) => n.id === nicId)!.rate_limit;
      expect(await desiredLimit()).toEqual(limit);

      const changed = await call(
        'PATCH',
        `/v1/instances/web/nics/${nicId}?project=net`,
        { rate_limit: { egress_pps: 2000 } },
        userToken,
      );
      expect(changed.status, JSON.stringify(changed.body)).toBe(202);
      expect(changed.body.operation).toMatchObject({ kind: 'instance.nic-update', status: 'pending' });
      expect(changed.body.nic.rate_limit).toEqual({ egress_pps: 2000 });
      expect((await nicsOf('web')).find((n) => n.id === nicId)!.rate_limit).toEqual({ egress_pps: 2000 });
      expect(await desiredLimit()).toEqual({ egress_pps: 2000 });
      const history = (await call('GET', '/v1/instances/web/history?project=net')).body.items as { action: string }[];
      expect(history.at(-1)!.action).toBe('nic-update');

      // Null and an empty object both remove them.
      await call('PATCH', `/v1/instances/web/nics/${nicId}?project=net`, { rate_limit: {} });
      expect((await nicsOf('web')).find((n) => n.id === nicId)!.rate_limit).toBeNull();
      await call('PATCH', `/v1/instances/web/nics/${nicId}?project=net`, { rate_limit: { ingress_pps: 5 } });
      await call('PATCH', `/v1/instances/web/nics/${nicId}?project=net`, { rate_limit: null });
      expect(await desiredLimit()).toBeUndefined();

      expectError(
        await call('PATCH', `/v1/instances/web/nics/${nicId}?project=net`, { rate_limit: { ingress_kbps: 0 } }),
        'validation_failed',
      );
      expectError(
        await call('PATCH', `/v1/instances/web/nics/${nicId}?project=net`, { rate_limit: { burst: 5 } }),
        'validation_failed',
      );
      expectError(
        await call('PATCH', '/v1/instances/web/nics/nic_01JB8X0Q3E6M2T9K4V7W5YB1C3?project=net', { rate_limit: null }),
        'nic_not_found',
      );
    });

    it('refuses to delete a network with NICs (409), frees addresses when the instance is gone, then deletes', async () => {
      expectError(await call('DELETE', '/v1/networks/lan?project=net'), 'in_use');
      for (const name of ['web', 'db']) {
        const inst = (await call('GET', `/v1/instances/${name}?project=net`)).body;
        expect((await call('DELETE', `/v1/instances/${name}?project=net`)).status).toBe(202);
        await cp.app.services.instances.applyObserved(inst.status.host, {
          id: inst.id,
          state: 'deleted',
          observed_revision: 99,
          observed_generation: 99,
          observed_restart_generation: 0,
          reason: null,
          accelerator: null,
          started_at: null,
          stopped_at: null,
        });
      }
      expect(await cp.store.db.selectFrom('nics').select('id').execute()).toEqual([]);
      expect(await cp.store.db.selectFrom('ip_addresses').select('address').execute()).toEqual([]);
      expect(await cp.app.services.networks.desiredForHost(hostA)).toEqual([]);
      expect((await call('DELETE', '/v1/networks/lan?project=net', undefined, userToken)).status).toBe(204);
      expectError(await call('GET', '/v1/networks/lan?project=net'), 'network_not_found');
    });

    it('concurrent hot-adds on one instance get distinct slots, addresses and generations', async () => {
      expect((await call('POST', '/v1/networks', { name: 'par', project: 'net', ipv4: '10.60.0.0/24' })).status).toBe(
        201,
      );
      const res = await call('POST', '/v1/instances', {
        name: 'par',
        project: 'net',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => call('POST', '/v1/instances/par/nics?project=net', { network: 'par' })),
      );
      expect(answers.map((r) => r.status)).toEqual(Array(8).fill(202));
      expect(answers.map((r) => r.body.nic.index).sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      expect(new Set(answers.map((r) => r.body.nic.ipv4)).size).toBe(8);
      const row = await cp.store.db
        .selectFrom('instances')
        .select('generation')
        .where('id', '=', res.body.instance.id)
        .executeTakeFirstOrThrow();
      expect(Number(row.generation)).toBe(1 + 8);
    });

    it('a project with networks cannot be deleted', async () => {
      expect((await call('POST', '/v1/projects', { name: 'gone' })).status).toBe(201);
      expect((await call('POST', '/v1/networks', { name: 'n', project: 'gone', ipv4: '10.50.0.0/24' })).status).toBe(
        201,
      );
      expectError(await call('DELETE', '/v1/projects/gone'), 'in_use');
      expect((await call('DELETE', '/v1/networks/n?project=gone')).status).toBe(204);
      expect((await call('DELETE', '/v1/projects/gone')).status).toBe(204);
    });

    it('says network_full when a network has no address left', async () => {
      expect((await call('POST', '/v1/networks', { name: 'tiny', project: 'net', ipv4: '10.40.0.0/30' })).status).toBe(
        201,
      );
      const first = await call('POST', '/v1/instances', {
        name: 't1',
        project: 'net',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
        networks: ['tiny'],
      });
      expect(first.status, JSON.stringify(first.body)).toBe(202);
      expectError(
        await call('POST', '/v1/instances', {
          name: 't2',
          project: 'net',
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
          networks: ['tiny'],
        }),
        'network_full',
      );
    });
  });
}
