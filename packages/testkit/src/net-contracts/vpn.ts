import { generateKeyPairSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vpnIfName, type VpnDriver, type VpnInterfaceSpec } from '@floe/agent/vpn';
import { until } from '../wait.js';

/** What a VPN driver's contract run needs. */
export interface VpnContractSetup {
  driver: VpnDriver;
  cleanup: () => Promise<void>;
}

/** A fresh WireGuard key pair in base64. */
function keyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const b64 = (s: string | undefined) => Buffer.from(s!, 'base64url').toString('base64');
  return {
    privateKey: b64(privateKey.export({ format: 'jwk' }).d),
    publicKey: b64(publicKey.export({ format: 'jwk' }).x),
  };
}

let seq = 0;

/** A gateway interface with `peers` peers, on its own prefixes. */
function sample(peers: number): VpnInterfaceSpec {
  const n = ++seq;
  return {
    name: vpnIfName(`vnet_contract_${process.pid}_${n}`),
    listenPort: 41000 + n,
    privateKey: keyPair().privateKey,
    addresses: [`fd7c:${n.toString(16)}::1/64`, `10.77.${n}.1/24`],
    reach: [`fd7c:${n.toString(16)}::/64`, `10.77.${n}.0/24`, '10.31.0.0/24'],
    peers: Array.from({ length: peers }, (_, i) => ({
      publicKey: keyPair().publicKey,
      allowedIps: [`fd7c:${n.toString(16)}::${i + 2}/128`, `10.77.${n}.${i + 2}/32`],
    })),
  };
}

/**
 * Two interfaces that are each other's peer, `a` dialing `b` on loopback (site-to-site between two
 * gateways): their handshake needs no addresses routed, only the UDP ports.
 */
function dialingPair(): { a: VpnInterfaceSpec; b: VpnInterfaceSpec } {
  const keysA = keyPair();
  const keysB = keyPair();
  const a = { ...sample(0), privateKey: keysA.privateKey };
  const b = { ...sample(0), privateKey: keysB.privateKey };
  return {
    a: {
      ...a,
      peers: [{ publicKey: keysB.publicKey, allowedIps: ['10.31.0.0/24'], endpoint: `127.0.0.1:${b.listenPort}` }],
    },
    b: { ...b, peers: [{ publicKey: keysA.publicKey, allowedIps: ['10.33.0.0/24'] }] },
  };
}

/**
 * The behaviour every VpnDriver shows, as vitest cases: the fake and the Linux driver (kernel WireGuard
 * or wireguard-go, in a network namespace) both run it.
 */
export function vpnDriverContract(name: string, setup: () => Promise<VpnContractSetup>): void {
  describe(`VpnDriver contract: ${name}`, () => {
    let ctx: VpnContractSetup;
    beforeEach(async () => {
      ctx = await setup();
    });
    afterEach(async () => {
      for (const n of await ctx.driver.list()) await ctx.driver.remove(n);
      await ctx.driver.applyFilter([]);
      await ctx.cleanup();
    });

    it('creates an interface with its peers once; a second ensure changes nothing', async () => {
      const spec = sample(2);
      await ctx.driver.ensure(spec);
      await ctx.driver.ensure(spec);
      expect(await ctx.driver.list()).toEqual([spec.name]);
      const stats = (await ctx.driver.stats(spec.name))!;
      expect(stats.map((p) => [p.publicKey, [...p.allowedIps].sort()]).sort()).toEqual(
        spec.peers.map((p) => [p.publicKey, [...p.allowedIps].sort()]).sort(),
      );
      expect(stats.every((p) => p.latestHandshake === 0 && p.rxBytes === 0)).toBe(true);
    });

    it('adds, changes and removes peers in place', async () => {
      const spec = sample(2);
      await ctx.driver.ensure(spec);
      const [a, b] = spec.peers;
      const c = sample(1).peers[0]!;
      const site = { publicKey: c.publicKey, allowedIps: [...c.allowedIps, '192.168.88.0/24'] };
      await ctx.driver.ensure({ ...spec, peers: [b!, site] });
      const stats = (await ctx.driver.stats(spec.name))!;
      expect(stats.map((p) => p.publicKey).sort()).toEqual([b!.publicKey, site.publicKey].sort());
      expect(stats.find((p) => p.publicKey === site.publicKey)!.allowedIps).toContain('192.168.88.0/24');
      expect(stats.some((p) => p.publicKey === a!.publicKey)).toBe(false);
    });

    it('reads handshakes, transfer and endpoints, and keeps a session when the interface changes around it', async () => {
      const { a, b } = dialingPair();
      await ctx.driver.ensure(b);
      await ctx.driver.ensure(a);
      const now = Date.now() / 1000;
      const dialed = await until(
        'a handshake between the two interfaces',
        async () => {
          const p = (await ctx.driver.stats(a.name))![0]!;
          return p.latestHandshake > 0 && p.rxBytes > 0 && p.txBytes > 0 ? p : null;
        },
        { timeoutMs: 10_000 },
      );
      expect(Math.abs(dialed.latestHandshake - now)).toBeLessThan(60);
      expect(dialed.endpoint).toBe(`127.0.0.1:${b.listenPort}`);
      const answered = await until('the answering side to count it', async () => {
        const p = (await ctx.driver.stats(b.name))![0]!;
        return p.latestHandshake > 0 && p.rxBytes > 0 ? p : null;
      });
      expect(answered.endpoint).toBe(`127.0.0.1:${a.listenPort}`);
      // Another peer comes, the reach and the dialed peer's subnets change: its session goes on.
      const more = {
        ...a,
        reach: [...a.reach, '10.44.0.0/24'],
        peers: [{ ...a.peers[0]!, allowedIps: ['10.31.0.0/24', '10.32.0.0/24'] }, ...sample(1).peers],
      };
      await ctx.driver.ensure(more);
      const after = (await ctx.driver.stats(a.name))!.find((p) => p.publicKey === a.peers[0]!.publicKey)!;
      expect(after.latestHandshake).toBe(dialed.latestHandshake);
      expect(after.rxBytes).toBeGreaterThanOrEqual(dialed.rxBytes);
      expect([...after.allowedIps].sort()).toEqual(['10.31.0.0/24', '10.32.0.0/24']);
    });

    it('keeps interfaces apart, removes one, and answers null for stats of a missing one', async () => {
      const one = sample(1);
      const two = sample(1);
      await ctx.driver.ensure(one);
      await ctx.driver.ensure(two);
      await ctx.driver.applyFilter([one, two]);
      expect(await ctx.driver.list()).toEqual([one.name, two.name].sort());
      await ctx.driver.remove(one.name);
      await ctx.driver.remove(one.name);
      expect(await ctx.driver.list()).toEqual([two.name]);
      expect(await ctx.driver.stats(one.name)).toBeNull();
      await ctx.driver.applyFilter([two]);
    });

    it('refuses a malformed spec before touching the host', async () => {
      const spec = sample(1);
      await expect(ctx.driver.ensure({ ...spec, name: 'eth0' })).rejects.toThrow();
      await expect(
        ctx.driver.ensure({ ...spec, peers: [{ publicKey: 'x; rm -rf /', allowedIps: ['10.0.0.1/32'] }] }),
      ).rejects.toThrow();
      await expect(ctx.driver.ensure({ ...spec, addresses: ['10.0.0.1/99'] })).rejects.toThrow();
      expect(await ctx.driver.list()).toEqual([]);
    });
  });
}
