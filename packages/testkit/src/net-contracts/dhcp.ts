import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DhcpDriver, NetSpec } from '@floe/agent/net';
import { nicOn, privateNet } from './samples.js';

/** What a DHCP driver's contract run needs. */
export interface DhcpContractSetup {
  driver: DhcpDriver;
  /** Build the network's bridge, where the server listens (the network driver of the same host). */
  prepare: (net: NetSpec) => Promise<void>;
  /** Kill the network's server behind the driver's back (it crashed). */
  kill: (netId: string) => Promise<void>;
  cleanup: () => Promise<void>;
}

/**
 * The behaviour every DhcpDriver shows, as vitest cases: the fake and
 * dnsmasq (in a network namespace) both run it.
 */
export function dhcpDriverContract(name: string, setup: () => Promise<DhcpContractSetup>): void {
  describe(`DhcpDriver contract: ${name}`, () => {
    let ctx: DhcpContractSetup;
    let net: NetSpec;
    beforeEach(async () => {
      ctx = await setup();
      net = privateNet();
      await ctx.prepare(net);
    });
    afterEach(async () => {
      await ctx.driver.removeDhcp(net.id).catch(() => undefined);
      await ctx.cleanup();
    });

    it('starts a server once, and a second call adopts it', async () => {
      const nic = nicOn(net);
      const first = await ctx.driver.ensureDhcp(net, [nic]);
      expect(first.started).toBe(true);
      expect(first.pid).not.toBeNull();
      expect(await ctx.driver.dhcpPid(net.id)).toBe(first.pid);
      expect(await ctx.driver.ensureDhcp(net, [nic])).toEqual({ pid: first.pid, started: false });
    });

    it('reloads for new leases or names and restarts for a new configuration', async () => {
      const a = nicOn(net, 5);
      const first = await ctx.driver.ensureDhcp(net, [a]);
      const more = await ctx.driver.ensureDhcp(net, [a, nicOn(net, 6)], [nicOn(net, 7)]);
      expect(more).toEqual({ pid: first.pid, started: false, reloaded: true });
      const changed = await ctx.driver.ensureDhcp({ ...net, mtu: 1400 }, [a]);
      expect(changed.started).toBe(true);
      expect(changed.pid).not.toBeNull();
      expect(changed.pid).not.toBe(first.pid);
    });

    it('starts a server that died again', async () => {
      const first = await ctx.driver.ensureDhcp(net, []);
      await ctx.kill(net.id);
      expect(await ctx.driver.dhcpPid(net.id)).toBeNull();
      const again = await ctx.driver.ensureDhcp(net, []);
      expect(again.started).toBe(true);
      expect(again.pid).not.toBe(first.pid);
    });

    it('stops a server, and stopping none is fine', async () => {
      await ctx.driver.ensureDhcp(net, []);
      await ctx.driver.stopDhcp(net.id);
      expect(await ctx.driver.dhcpPid(net.id)).toBeNull();
      await ctx.driver.stopDhcp(net.id);
      await ctx.driver.removeDhcp(net.id);
    });

    it("serves no public network where the host has no address in the network's subnet", async () => {
      const pub: NetSpec = {
        ...net,
        kind: 'public',
        physical: 'eth9',
        gatewayMode: 'none',
        peers: [],
        ipv4: { cidr: '203.0.113.0/24', gateway: null },
        ipv6: null,
      };
      const d = await ctx.driver.ensureDhcp(pub, [nicOn(pub)]);
      expect(d).toMatchObject({
        pid: null,
        started: false,
        skipped: expect.stringContaining('203.0.113.0/24') as string,
      });
      expect(await ctx.driver.dhcpPid(pub.id)).toBeNull();
    });

    it('refuses a NIC whose values could break the configuration', async () => {
      await expect(ctx.driver.ensureDhcp(net, [{ ...nicOn(net), hostname: 'a\nb' }])).rejects.toThrow(/DNS label/);
      expect(await ctx.driver.dhcpPid(net.id)).toBeNull();
    });
  });
}
