import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ifbName, type RateLimitDriver } from '@floe/agent/net';
import { testId } from '../factories.js';

/** What a rate limit driver's contract run needs. */
export interface RateLimitContractSetup {
  driver: RateLimitDriver;
  /** Make the NIC's tap (down, in no bridge) as the network driver would. */
  makeTap: (nicId: string) => Promise<void>;
  /** Delete the NIC's tap, as the network driver does when its instance goes. */
  deleteTap: (nicId: string) => Promise<void>;
  /** Whether the host has an interface of this name. */
  hasLink: (name: string) => Promise<boolean>;
  cleanup: () => Promise<void>;
}

/**
 * The behaviour every RateLimitDriver shows, as vitest cases: the fake and tc
 * + nftables (in a network namespace) both run it. Limits are read back from
 * the host, so a driver that only remembers what it was told fails.
 */
export function rateLimitDriverContract(name: string, setup: () => Promise<RateLimitContractSetup>): void {
  describe(`RateLimitDriver contract: ${name}`, () => {
    let ctx: RateLimitContractSetup;
    let nic: string;
    beforeEach(async () => {
      ctx = await setup();
      nic = testId('nic');
    });
    afterEach(async () => {
      await ctx.cleanup();
    });

    it('does nothing for a NIC whose tap is not there', async () => {
      expect(await ctx.driver.applyRateLimit(nic, { ingress_kbps: 10_000 })).toBe(false);
      expect(await ctx.driver.observeRateLimit(nic)).toEqual({});
    });

    it('puts every limit on the tap, changes them in place, idempotently, and takes them off', async () => {
      await ctx.makeTap(nic);
      const all = { ingress_kbps: 10_000, egress_kbps: 20_000, ingress_pps: 3000, egress_pps: 4000 };
      expect(await ctx.driver.applyRateLimit(nic, all)).toBe(true);
      expect(await ctx.driver.observeRateLimit(nic)).toEqual(all);
      expect(await ctx.hasLink(ifbName(nic))).toBe(true);
      expect(await ctx.driver.applyRateLimit(nic, all)).toBe(true);
      expect(await ctx.driver.observeRateLimit(nic)).toEqual(all);

      await ctx.driver.applyRateLimit(nic, { ingress_kbps: 5_000, egress_pps: 100 });
      expect(await ctx.driver.observeRateLimit(nic)).toEqual({ ingress_kbps: 5_000, egress_pps: 100 });
      expect(await ctx.hasLink(ifbName(nic))).toBe(false);

      await ctx.driver.applyRateLimit(nic, { egress_kbps: 1_000 });
      expect(await ctx.driver.observeRateLimit(nic)).toEqual({ egress_kbps: 1_000 });
      await ctx.driver.applyRateLimit(nic, null);
      expect(await ctx.driver.observeRateLimit(nic)).toEqual({});
      expect(await ctx.hasLink(ifbName(nic))).toBe(false);
    });

    it('leaves a tap made again without limits, and clears what was beside the old one', async () => {
      await ctx.makeTap(nic);
      await ctx.driver.applyRateLimit(nic, { egress_kbps: 1_000, ingress_pps: 50 });
      await ctx.deleteTap(nic);
      await ctx.driver.clearRateLimit(nic);
      expect(await ctx.hasLink(ifbName(nic))).toBe(false);
      await ctx.driver.clearRateLimit(nic);
      await ctx.makeTap(nic);
      expect(await ctx.driver.observeRateLimit(nic)).toEqual({});
      expect(await ctx.driver.applyRateLimit(nic, { ingress_pps: 50 })).toBe(true);
      expect(await ctx.driver.observeRateLimit(nic)).toEqual({ ingress_pps: 50 });
    });
  });
}
