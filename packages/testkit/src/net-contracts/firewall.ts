import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tapName, type FirewallDriver, type NetSpec } from '@floe/agent/net';
import { nicOn, privateNet } from './samples.js';

/** What a firewall driver's contract run needs. */
export interface FirewallContractSetup {
  driver: FirewallDriver;
  /** The names of the chains of one of floe's tables as the host has it now (`bridge floe`, `inet floe_nat`); [] when it has none. */
  chains: (table: 'bridge floe' | 'inet floe_nat') => Promise<string[]>;
  cleanup: () => Promise<void>;
}

/**
 * The behaviour every FirewallDriver shows, as vitest cases: the fake and
 * nftables (in a network namespace) both run it. Each apply replaces the
 * whole ruleset, atomically: one that is refused leaves the previous one.
 */
export function firewallDriverContract(name: string, setup: () => Promise<FirewallContractSetup>): void {
  describe(`FirewallDriver contract: ${name}`, () => {
    let ctx: FirewallContractSetup;
    let net: NetSpec;
    beforeEach(async () => {
      ctx = await setup();
      net = privateNet({ natInterface: 'eth0' });
    });
    afterEach(async () => {
      await ctx.cleanup();
    });

    it('gives every NIC a chain of its own and keeps the base chains', async () => {
      const [a, b] = [nicOn(net, 5), nicOn(net, 6)];
      await ctx.driver.applyFirewall([net], [a, b]);
      expect((await ctx.chains('bridge floe')).sort()).toEqual(
        ['output', 'prerouting', `tap_${tapName(a.id)}`, `tap_${tapName(b.id)}`].sort(),
      );
      expect((await ctx.chains('inet floe_nat')).sort()).toEqual(['forward', 'postrouting']);
    });

    it('replaces the whole ruleset on each apply, idempotently', async () => {
      const a = nicOn(net, 5);
      await ctx.driver.applyFirewall([net], [a]);
      await ctx.driver.applyFirewall([net], [a]);
      expect(await ctx.chains('bridge floe')).toContain(`tap_${tapName(a.id)}`);
      await ctx.driver.applyFirewall([net], []);
      expect(await ctx.chains('bridge floe')).not.toContain(`tap_${tapName(a.id)}`);
      await ctx.driver.applyFirewall([], []);
      expect((await ctx.chains('bridge floe')).sort()).toEqual(['output', 'prerouting']);
    });

    it('leaves the previous ruleset when a new one is refused', async () => {
      const a = nicOn(net, 5);
      await ctx.driver.applyFirewall([net], [a]);
      await expect(
        ctx.driver.applyFirewall([net], [a, { ...nicOn(net, 6), mac: '52:54:00:00:00:06" accept' }]),
      ).rejects.toThrow();
      expect(await ctx.chains('bridge floe')).toContain(`tap_${tapName(a.id)}`);
    });
  });
}
