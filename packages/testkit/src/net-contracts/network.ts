import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bridgeName, tapName, vxlanName, type NetSpec, type NetworkDriver } from '@floe/agent/net';
import { nicOn, privateNet, rejectedField } from './samples.js';

/** One interface as the contract sees it. */
export interface ProbedLink {
  kind: string | null;
  master: string | null;
  mtu: number;
  up: boolean;
  /** `address/prefix` list. */
  addrs: string[];
}

/** What the network contract reads from (and breaks on) the host behind a driver. */
export interface NetworkProbe {
  link(name: string): Promise<ProbedLink | null>;
  /** Flood destinations of a VXLAN device. */
  floods(vxlan: string): Promise<string[]>;
  /** A sysctl's value (`net.ipv4.ip_forward`). */
  sysctl(key: string): Promise<string>;
  /** Delete a link behind the driver's back (drift). */
  deleteLink(name: string): Promise<void>;
}

/** What a network driver's contract run needs. */
export interface NetworkContractSetup {
  driver: NetworkDriver;
  probe: NetworkProbe;
  /** The driver's underlay address (the VXLAN source). */
  underlay: string;
  /** An interface a public network may take over, with its global addresses (`address/prefix`); without it, the takeover case is skipped. */
  physical?: { name: string; addrs: string[] };
  /** An interface a host-gateway network may NAT to. */
  natInterface: string;
  cleanup: () => Promise<void>;
}

/**
 * The behaviour every NetworkDriver shows, as vitest cases: the fake and the
 * Linux driver (in network namespaces) both run it, through the interface and
 * a probe of the host only.
 *
 * @example
 * networkDriverContract('fake', async () => { const host = new FakeHost(); ... });
 */
export function networkDriverContract(name: string, setup: () => Promise<NetworkContractSetup>): void {
  describe(`NetworkDriver contract: ${name}`, () => {
    let ctx: NetworkContractSetup;
    let net: NetSpec;
    beforeEach(async () => {
      ctx = await setup();
      net = privateNet({ natInterface: ctx.natInterface });
    });
    afterEach(async () => {
      await ctx.driver.removeNetwork(net.id).catch(() => undefined);
      await ctx.cleanup();
    });

    it('builds a private network: bridge, VXLAN device with its flood entries, gateway addresses', async () => {
      expect(await ctx.driver.ensureNetwork(net)).toBe(bridgeName(net.id));
      const br = await ctx.probe.link(bridgeName(net.id));
      expect(br).toMatchObject({ kind: 'bridge', mtu: 1450, up: true });
      expect(br!.addrs).toEqual(expect.arrayContaining(['10.77.0.1/24', 'fd00:77::1/64']));
      expect(await ctx.probe.link(vxlanName(net.id))).toMatchObject({
        kind: 'vxlan',
        master: bridgeName(net.id),
        mtu: 1450,
        up: true,
      });
      expect((await ctx.probe.floods(vxlanName(net.id))).sort()).toEqual(['192.0.2.2', '192.0.2.3']);
      expect(await ctx.probe.sysctl('net.ipv4.ip_forward')).toBe('1');
    });

    it('is idempotent and follows the peers', async () => {
      await ctx.driver.ensureNetwork(net);
      await ctx.driver.ensureNetwork(net);
      expect((await ctx.probe.floods(vxlanName(net.id))).sort()).toEqual(['192.0.2.2', '192.0.2.3']);
      await ctx.driver.ensureNetwork({ ...net, peers: ['192.0.2.3', '192.0.2.4'] });
      expect((await ctx.probe.floods(vxlanName(net.id))).sort()).toEqual(['192.0.2.3', '192.0.2.4']);
    });

    it('plugs taps in, and back in after the bridge was deleted by hand', async () => {
      await ctx.driver.ensureNetwork(net);
      const nic = nicOn(net);
      expect(await ctx.driver.ensureTap(nic, net)).toBe(tapName(nic.id));
      expect(await ctx.driver.ensureTap(nic, net)).toBe(tapName(nic.id));
      expect(await ctx.probe.link(tapName(nic.id))).toMatchObject({ master: bridgeName(net.id), mtu: 1450, up: true });
      await ctx.probe.deleteLink(bridgeName(net.id));
      expect((await ctx.probe.link(tapName(nic.id)))?.master ?? null).toBeNull();
      await ctx.driver.ensureNetwork(net, [nic]);
      expect(await ctx.probe.link(bridgeName(net.id))).toMatchObject({ kind: 'bridge', up: true });
      expect((await ctx.probe.link(tapName(nic.id)))?.master).toBe(bridgeName(net.id));
      await ctx.driver.removeTap(nic.id);
      await ctx.driver.removeTap(nic.id);
      expect(await ctx.probe.link(tapName(nic.id))).toBeNull();
    });

    it('removes a network, and a missing one is fine', async () => {
      await ctx.driver.ensureNetwork(net);
      await ctx.driver.removeNetwork(net.id);
      expect(await ctx.probe.link(bridgeName(net.id))).toBeNull();
      expect(await ctx.probe.link(vxlanName(net.id))).toBeNull();
      await ctx.driver.removeNetwork(net.id);
    });

    it('refuses a spec that could reach a host command unchecked', async () => {
      expect(await rejectedField(ctx.driver.ensureNetwork({ ...net, id: 'net_a b' }))).toBe('network_id');
      expect(await rejectedField(ctx.driver.ensureNetwork({ ...net, peers: ['192.0.2.2; reboot'] }))).toBe('peers[0]');
      expect(await ctx.probe.link(bridgeName(net.id))).toBeNull();
    });

    it('takes a physical interface over for a public network and gives its addresses back', async (t) => {
      const phys = ctx.physical;
      if (phys === undefined) return t.skip();
      const pub: NetSpec = {
        ...privateNet(),
        kind: 'public',
        physical: phys.name,
        gatewayMode: 'none',
        peers: [],
        ipv4: { cidr: '192.0.2.0/24', gateway: null },
        ipv6: null,
        mtu: 1500,
      };
      try {
        await ctx.driver.ensureNetwork(pub);
        await ctx.driver.ensureNetwork(pub);
        expect((await ctx.probe.link(phys.name))?.master).toBe(bridgeName(pub.id));
        expect((await ctx.probe.link(bridgeName(pub.id)))?.addrs).toEqual(expect.arrayContaining(phys.addrs));
        expect((await ctx.probe.link(phys.name))?.addrs).not.toEqual(expect.arrayContaining(phys.addrs));
      } finally {
        await ctx.driver.removeNetwork(pub.id);
      }
      expect(await ctx.probe.link(phys.name)).toMatchObject({ master: null });
      expect((await ctx.probe.link(phys.name))?.addrs).toEqual(expect.arrayContaining(phys.addrs));
      expect(await ctx.probe.link(bridgeName(pub.id))).toBeNull();
    });
  });
}
