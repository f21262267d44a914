import { X509Certificate } from 'node:crypto';
import {
  AGENT_PROTOCOL_VERSION,
  type ControlMessage,
  type DesiredItem,
  type DesiredKind,
  type DesiredNetwork,
  type HostFacts,
} from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { issueClientCert } from './ca/index.js';
import { storeTargets } from './db/testing.js';
import { startTestControlPlane, type TestControlPlane } from './testing.js';

// What agents hear about networks over a real agent link (mutual TLS on loopback): the
// snapshot's networks, NICs in desired instances, and network pushes when members or
// VXLAN peers change on any host.

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

/** A stand-in agent: says hello and records what the control plane sends. */
class FakeAgent {
  readonly messages: ControlMessage[] = [];
  constructor(
    readonly hostId: string,
    private readonly ws: WebSocket,
  ) {
    ws.on('message', (data) => this.messages.push(JSON.parse((data as Buffer).toString()) as ControlMessage));
  }

  static async connect(
    cp: TestControlPlane,
    name: string,
    underlay: string,
    snapshotWithinMs = 20_000,
  ): Promise<FakeAgent> {
    let cert: { certPem: string; keyPem: string } | undefined;
    const { id } = await cp.app.services.hosts.ensureLocal(name, async (hostId) => {
      cert = await issueClientCert(cp.ca, { commonName: hostId });
      return { serial: new X509Certificate(cert.certPem).serialNumber };
    });
    const ws = new WebSocket(`${cp.url.replace('https', 'wss')}/v1/agent`, {
      ca: cp.ca.certPem,
      cert: cert!.certPem,
      key: cert!.keyPem,
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const agent = new FakeAgent(id, ws);
    ws.send(
      JSON.stringify({
        type: 'hello',
        protocol: AGENT_PROTOCOL_VERSION,
        facts: { ...FACTS, hostname: name, underlay_ipv4: underlay },
        instances: [],
      }),
    );
    // Generous: on a loaded machine (the whole suite in parallel) the first snapshot can take seconds.
    await agent.next('snapshot', 0, snapshotWithinMs);
    return agent;
  }

  /** The first message of `type` after `from` (an index into messages), waiting for it. */
  async next<T extends ControlMessage['type']>(
    type: T,
    from = 0,
    timeoutMs = 5000,
  ): Promise<Extract<ControlMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.slice(from).find((x) => x.type === type);
      if (m) return m as Extract<ControlMessage, { type: T }>;
      if (Date.now() > deadline)
        throw new Error(`no ${type} message; got ${this.messages.map((x) => x.type).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The first `desired` message of `kind` after `from`, waiting for it. */
  async desired<K extends DesiredKind>(kind: K, from = 0, timeoutMs = 5000): Promise<DesiredItem<K>[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.slice(from).find((x) => x.type === 'desired' && x.kind === kind);
      if (m?.type === 'desired') return m.items as DesiredItem<K>[];
      if (Date.now() > deadline)
        throw new Error(`no ${kind} message; got ${this.messages.map((x) => x.type).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Wait until the latest list of networks (snapshot or full `desired`) satisfies `check`. */
  async networks(check: (n: DesiredNetwork[]) => boolean, timeoutMs = 5000): Promise<DesiredNetwork[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = [...this.messages]
        .reverse()
        .find((x) => (x.type === 'desired' && x.kind === 'network' && x.full) || x.type === 'snapshot');
      const list =
        last?.type === 'desired' && last.kind === 'network'
          ? last.items
          : last?.type === 'snapshot'
            ? (last.desired.network ?? [])
            : [];
      if (check(list)) return list;
      if (Date.now() > deadline) throw new Error(`networks never matched; last: ${JSON.stringify(list)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.ws.close();
  }
}

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
  });
}
