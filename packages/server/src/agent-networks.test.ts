import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from './db/testing.js';
import { FakeAgent } from './testing-agent.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from './testing.js';

// What agents hear about networks over a real agent link (mutual TLS on loopback): the
// snapshot's networks, NICs in desired instances, and network pushes when members or
// VXLAN peers change on any host.

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`networks on the agent link on ${t.name}`, () => {
    let cp: TestControlPlane;
    let a: FakeAgent;
    let b: FakeAgent;
    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
      a = await FakeAgent.connect(cp, 'node-a', '192.0.2.10');
      b = await FakeAgent.connect(cp, 'node-b', '192.0.2.11');
      await cp.app.services.images.create(cp.admin, { name: 'img' });
    });
    afterAll(async () => {
      a?.close();
      b?.close();
      await cp?.close();
    });

    it('hears a hello sent the moment the socket opens, even while the host lookup is slow', async () => {
      const hosts = cp.app.services.hosts;
      const forAgent = hosts.forAgent.bind(hosts);
      hosts.forAgent = async (id: string) => {
        await new Promise((r) => setTimeout(r, 300));
        return forAgent(id);
      };
      try {
        const c = await FakeAgent.connect(cp, 'node-c', '192.0.2.12', 5000);
        expect(c.messages.map((m) => m.type).slice(0, 2)).toEqual(['welcome', 'snapshot']);
        c.close();
      } finally {
        hosts.forAgent = forAgent;
      }
      await cp.app.services.hosts.delete(cp.admin, 'node-c');
    });

    it('sends NICs with instances and networks with their VXLAN peers to every member host', async () => {
      expect((await a.next('snapshot')).desired.network).toEqual([]);
      const lan = await cp.app.services.networks.create(cp.admin, { name: 'lan', ipv4: '10.10.0.0/24', ipv6: 'auto' });
      await cp.app.services.hosts.update(cp.admin, b.hostId, { spec: { schedulable: false } });
      const fromA = a.messages.length;
      const one = await cp.app.services.instances.create(cp.admin, {
        name: 'one',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
        networks: ['lan'],
      });
      expect(one.instance.status.host).toBe(a.hostId);
      const pushed = await a.desired('instance', fromA);
      expect(pushed).toHaveLength(1);
      expect(pushed[0]!.nics).toEqual([
        expect.objectContaining({
          network_id: lan.id,
          vni: lan.vni,
          index: 0,
          ipv4: '10.10.0.2',
          ipv4_prefix: 24,
          gateway4: '10.10.0.1',
          mtu: 1450,
        }),
      ]);
      const onA = await a.networks((n) => n.length === 1);
      expect(onA[0]).toMatchObject({
        id: lan.id,
        vni: lan.vni,
        peers: [],
        host_ipv4: '10.10.0.1',
        leases: [{ hostname: 'one', ipv4: '10.10.0.2' }],
      });

      // A member on node-b: both hosts learn of each other.
      await cp.app.services.hosts.update(cp.admin, b.hostId, { spec: { schedulable: true } });
      await cp.app.services.hosts.update(cp.admin, a.hostId, { spec: { schedulable: false } });
      const two = await cp.app.services.instances.create(cp.admin, {
        name: 'two',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
        networks: ['lan'],
      });
      expect(two.instance.status.host).toBe(b.hostId);
      const lanA = await a.networks((n) => n[0]?.peers.length === 1);
      expect(lanA[0]!.peers).toEqual(['192.0.2.11']);
      expect(lanA[0]!.leases.map((l) => l.hostname)).toEqual(['one', 'two']);
      expect((await b.networks((n) => n.length === 1))[0]!.peers).toEqual(['192.0.2.10']);

      // Its NIC removed, node-b has no member left: it drops the network, node-a drops the peer.
      const nic = (await cp.app.services.instances.nics(cp.admin, 'two', 'default'))[0]!;
      await cp.app.services.instances.removeNic(cp.admin, 'two', 'default', nic.id);
      await b.networks((n) => n.length === 0);
      expect((await a.networks((n) => n[0]?.peers.length === 0))[0]!.leases.map((l) => l.hostname)).toEqual(['one']);
      expect((await cp.app.services.instances.desiredOne(two.instance.id))!.nics).toEqual([]);
    });

    it('tells the VPN gateway host of the prefixes it routes for a connected network, and no other host', async () => {
      const call = async (url: string, body: unknown) => {
        const res = await injectJson(cp, 'POST', url, body);
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      };
      // node-a has `one` on lan (the test above); node-b gets a member again.
      await cp.app.services.hosts.update(cp.admin, b.hostId, { spec: { schedulable: true } });
      await cp.app.services.hosts.update(cp.admin, a.hostId, { spec: { schedulable: false } });
      await cp.app.services.instances.create(cp.admin, {
        name: 'three',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
        networks: ['lan'],
      });
      await b.networks((n) => n.length === 1);
      await call('/v1/vpn-pools', {
        name: 'edge',
        ipv6: 'fd50::/40',
        network_prefix: 48,
        ipv4: '10.250.0.0/16',
        ipv4_prefix: 24,
        hosts: ['node-a'],
        endpoint: 'vpn.example.org',
      });
      await call('/v1/vpn-networks', { name: 'office', pool: 'edge', networks: ['lan'] });
      const onA = await a.networks((n) => n[0]?.vpn_routes !== undefined);
      expect(onA[0]!.vpn_routes).toEqual(['fd50::/48', '10.250.0.0/24']);
      // A site's subnets behind a peer reach the gateway's DHCP answers too.
      await call('/v1/vpn-peers', { name: 'site', vpn_network: 'office', subnets: ['192.168.77.0/24'] });
      const again = await a.networks((n) => n[0]?.vpn_routes?.length === 3);
      expect(again[0]!.vpn_routes).toEqual(['fd50::/48', '10.250.0.0/24', '192.168.77.0/24']);
      // node-b is not a gateway of the pool: it routes nothing to the VPN itself, but to node-a's port on lan.
      const onB = await b.networks((n) => n[0]?.vpn_port?.gateways[0]?.routes.length === 3);
      expect(onB[0]!.vpn_routes).toBeUndefined();
      const port = again[0]!.vpn_port!;
      expect(port).toEqual({
        mac: expect.stringMatching(/^02:/),
        ipv4: expect.stringMatching(/^10\.10\.0\./),
        gateways: [],
      });
      expect(onB[0]!.vpn_port).toEqual({
        mac: expect.stringMatching(/^02:/),
        ipv4: null,
        gateways: [{ mac: port.mac, ipv4: port.ipv4, routes: ['fd50::/48', '10.250.0.0/24', '192.168.77.0/24'] }],
      });
      expect(onB[0]!.vpn_port!.mac).not.toBe(port.mac);
      // The gateway's address is IPAM's: no NIC gets it.
      const held = await cp.store.db
        .selectFrom('ip_addresses')
        .select(['address', 'nic_id'])
        .where('address', '=', port.ipv4!)
        .execute();
      expect(held).toEqual([{ address: port.ipv4, nic_id: `vpn-gw:${a.hostId}` }]);
    });

    it('puts a gateway host without VMs on the connected network, and takes it off with the VPN network', async () => {
      const call = async (method: 'POST' | 'DELETE', url: string, body?: unknown) => {
        const res = await injectJson(cp, method, url, body);
        expect(res.status, JSON.stringify(res.body)).toBe(method === 'POST' ? 201 : 204);
      };
      const g = await FakeAgent.connect(cp, 'node-g', '192.0.2.20');
      try {
        await cp.app.services.hosts.update(cp.admin, g.hostId, { spec: { schedulable: false } });
        await call('POST', '/v1/vpn-pools', {
          name: 'far',
          ipv6: 'fd60::/40',
          network_prefix: 48,
          hosts: ['node-g'],
          endpoint: 'far.example.org',
        });
        await call('POST', '/v1/vpn-networks', { name: 'remote', pool: 'far', networks: ['lan'] });
        // node-g has no member on lan, yet joins its VXLAN with the members' hosts, and they with it.
        const onG = await g.networks((n) => n.length === 1);
        expect(onG[0]).toMatchObject({ name: 'lan', peers: ['192.0.2.10', '192.0.2.11'], vpn_routes: ['fd60::/48'] });
        // It serves `remote` and routes `office`'s prefixes to node-a's port, like any other host of lan.
        expect(onG[0]!.vpn_port).toMatchObject({
          ipv4: expect.stringMatching(/^10\.10\.0\./),
          gateways: [{ routes: ['fd50::/48', '10.250.0.0/24', '192.168.77.0/24'] }],
        });
        const onB = await b.networks((n) => n[0]?.peers.includes('192.0.2.20') === true);
        expect(onB[0]!.vpn_port!.gateways.map((x) => x.routes)).toEqual([
          ['fd50::/48', '10.250.0.0/24', '192.168.77.0/24'],
          ['fd60::/48'],
        ]);
        await a.networks((n) => n[0]?.peers.includes('192.0.2.20') === true);

        await call('DELETE', '/v1/vpn-networks/remote?project=default');
        await g.networks((n) => n.length === 0);
        expect((await b.networks((n) => !n[0]!.peers.includes('192.0.2.20')))[0]!.vpn_port!.gateways).toHaveLength(1);
        const left = await cp.store.db
          .selectFrom('ip_addresses')
          .select('nic_id')
          .where('nic_id', '=', `vpn-gw:${g.hostId}`)
          .execute();
        expect(left).toEqual([]);
      } finally {
        g.close();
      }
    });
  });
}
