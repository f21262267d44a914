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
 * whole ruleset, atomically: one that is refused leaves the previous one; a
 * change of group members only is done in place.
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
      expect(chains).toEqual(expect.arrayContaining([`sg_${group.id}_in`, `sg_${group.id}_out`, 'sg_forward']));
      // The chains of a's set of groups (b's are the same, but b is not filtered and needs none).
      expect(chains.filter((c) => c.startsWith('sgi_') || c.startsWith('sgo_'))).toHaveLength(2);
      expect((await ctx.chains('inet floe_sg')).sort()).toEqual(['output', 'prerouting']);
      // A NIC naming a group the host was not sent is refused whole.
      await expect(ctx.driver.applyFirewall([net], [a], [])).rejects.toThrow();
      expect(await ctx.chains('bridge floe')).toContain(`sg_${group.id}_in`);
      await ctx.driver.applyFirewall([net], [b], [group]);
      expect(await ctx.chains('bridge floe')).not.toContain('sg_forward');
      expect(await ctx.chains('inet floe_sg')).toEqual([]);
    });

    it('refills member sets in place when members are all that changed, and only then', async () => {
      const group = (members: string[], ports: number[]): SecurityGroupSpec => ({
        id: 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D9',
        ingressDefault: 'deny',
        egressDefault: 'allow',
        rules: ports.map((p) => ({
          direction: 'ingress',
          protocol: 'tcp',
          portMin: p,
          portMax: p,
          remoteCidr: null,
          remoteGroup: 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D9',
        })),
        members,
      });
      const a = { ...nicOn(net, 5), securityGroups: ['sg_01JB8X0Q3E6M2T9K4V7W5YB1D9'] };
      const b = { ...nicOn(net, 6), securityGroups: ['sg_01JB8X0Q3E6M2T9K4V7W5YB1D9'] };
      // Nothing applied yet by this driver: the whole ruleset is needed.
      expect(await ctx.driver.updateFirewallMembers([net], [a], [group([a.ipv4!], [22])])).toBe(false);
      await ctx.driver.applyFirewall([net], [a], [group([a.ipv4!], [22])]);
      expect(await ctx.driver.updateFirewallMembers([net], [a], [group([a.ipv4!, b.ipv4!], [22])])).toBe(true);
      expect(await ctx.driver.updateFirewallMembers([net], [a], [group([b.ipv4!], [22])])).toBe(true);
      // A rule or a NIC more is not a change of members.
      expect(await ctx.driver.updateFirewallMembers([net], [a], [group([b.ipv4!], [22, 80])])).toBe(false);
      expect(await ctx.driver.updateFirewallMembers([net], [a, b], [group([b.ipv4!], [22])])).toBe(false);
      await ctx.driver.applyFirewall([net], [a, b], [group([a.ipv4!, b.ipv4!], [22, 80])]);
      expect(await ctx.driver.updateFirewallMembers([net], [a, b], [group([a.ipv4!], [22, 80])])).toBe(true);
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
