import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tapName, type FirewallDriver, type NetSpec, type SecurityGroupSpec } from '@floe/agent/net';
import { testId } from '../factories.js';
import { nicOn, privateNet } from './samples.js';

/** What a firewall driver's contract run needs. */
export interface FirewallContractSetup {
  driver: FirewallDriver;
  /** The names of the chains of one of floe's tables as the host has it now (`bridge floe`, `inet floe_nat`, `inet floe_sg`); [] when it has none. */
  chains: (table: 'bridge floe' | 'inet floe_nat' | 'inet floe_sg') => Promise<string[]>;
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

    it('gives filtered NICs security-group chains, and none to a NIC with filtering off', async () => {
      const group: SecurityGroupSpec = {
        id: testId('sg'),
        ingressDefault: 'deny',
        egressDefault: 'allow',
        rules: [
          { direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: null, remoteGroup: null },
        ],
        members: [],
      };
      const a = { ...nicOn(net, 5), securityGroups: [group.id] };
      const b = { ...nicOn(net, 6), securityGroups: [group.id], filtering: false };
      await ctx.driver.applyFirewall([net], [a, b], [group]);
      const chains = await ctx.chains('bridge floe');
      expect(chains).toEqual(
        expect.arrayContaining([`sgi_${tapName(a.id)}`, `sgo_${tapName(a.id)}`, `sg_${group.id}_in`, 'sg_forward']),
      );
      expect(chains).not.toContain(`sgi_${tapName(b.id)}`);
      expect((await ctx.chains('inet floe_sg')).sort()).toEqual(['output', 'prerouting']);
      // A NIC naming a group the host was not sent is refused whole.
      await expect(ctx.driver.applyFirewall([net], [a], [])).rejects.toThrow();
      expect(await ctx.chains('bridge floe')).toContain(`sgi_${tapName(a.id)}`);
      await ctx.driver.applyFirewall([net], [b], [group]);
      expect(await ctx.chains('bridge floe')).not.toContain('sg_forward');
      expect(await ctx.chains('inet floe_sg')).toEqual([]);
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
