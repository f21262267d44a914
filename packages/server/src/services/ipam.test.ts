import { FloeError, type NetworkSpec } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transaction } from '../db/index.js';
import { storeTargets } from '../db/testing.js';
import { newId } from '../ids.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';
import { eui64, formatIpv4, formatIpv6, parseCidr4, parseCidr6, parseIpv4, parseIpv6, ula64 } from './ip.js';
import { addressPlan, checkRequested4, freeIpv4, macFor } from './ipam.js';

const spec = (over: Partial<NetworkSpec> = {}): NetworkSpec => ({
  kind: 'private',
  ipv4: '10.10.0.0/24',
  ipv6: null,
  gateway: 'host',
  mtu: 1450,
  dns: true,
  dhcpv6: false,
  reserved: [],
  pool: null,
  uplink: null,
  ...over,
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof FloeError ? err.code : `not a FloeError: ${String(err)}`;
  }
  return undefined;
}

describe('address arithmetic', () => {
  it('parses and formats IPv4 and rejects malformed text', () => {
    expect(parseIpv4('10.1.2.3')).toBe(0x0a010203);
    expect(formatIpv4(0xc0a80001)).toBe('192.168.0.1');
    for (const bad of ['10.1.2', '10.1.2.256', '01.1.1.1', '1.1.1.1 ', 'a.b.c.d'])
      expect(
        codeOf(() => parseIpv4(bad)),
        bad,
      ).toBe('validation_failed');
    expect(parseCidr4('10.10.0.0/24')).toEqual({ network: 0x0a0a0000, prefix: 24, broadcast: 0x0a0a00ff });
    expect(codeOf(() => parseCidr4('10.10.0.1/24'))).toBe('validation_failed');
    expect(codeOf(() => parseCidr4('10.10.0.0/31'))).toBe('validation_failed');
  });

  it('parses and formats IPv6 canonically (RFC 5952)', () => {
    expect(formatIpv6(parseIpv6('FD00:0:0:0:0:0:0:1'))).toBe('fd00::1');
    expect(formatIpv6(parseIpv6('2001:db8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(formatIpv6(parseIpv6('::'))).toBe('::');
    expect(formatIpv6(parseIpv6('::ffff:10.0.0.1'))).toBe('::ffff:a00:1');
    // An IPv4 tail after :: is its two groups, not an IPv4-mapped address.
    expect(formatIpv6(parseIpv6('::10.0.0.1'))).toBe('::a00:1');
    expect(formatIpv6(parseIpv6('2001:db8:1:2:3:4:5:6'))).toBe('2001:db8:1:2:3:4:5:6');
    for (const bad of [
      '1::2::3',
      'fd00:::1',
      '1:2:3:4:5:6:7:8:9',
      'g::1',
      '12345::',
      '00001::',
      'fe80::1%eth0',
      '::01.0.0.1',
    ])
      expect(
        codeOf(() => parseIpv6(bad)),
        bad,
      ).toBe('validation_failed');
    expect(codeOf(() => parseCidr6('fd00::1/64'))).toBe('validation_failed');
    expect(parseCidr6('fd00::/64').prefix).toBe(64);
  });

  it('derives SLAAC (modified EUI-64) addresses from MACs', () => {
    // The classic example: QEMU's default MAC under fe80::/64.
    expect(formatIpv6(eui64(parseIpv6('fe80::'), '52:54:00:12:34:56'))).toBe('fe80::5054:ff:fe12:3456');
    expect(formatIpv6(eui64(parseIpv6('fd00:1:2:3::'), '02:aa:bb:cc:dd:ee'))).toBe('fd00:1:2:3:aa:bbff:fecc:ddee');
  });

  it('picks a stable, random-looking ULA /64 per network', () => {
    const a = ula64('net_A');
    expect(a).toMatch(/^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/64$/);
    expect(parseCidr6(a).network >> 120n).toBe(0xfdn);
    expect(ula64('net_A')).toBe(a);
    expect(ula64('net_B')).not.toBe(a);
    expect(parseCidr6(a).prefix).toBe(64);
  });

  it('makes stable, locally administered unicast MACs from NIC ids', () => {
    const id = newId('nic');
    const mac = macFor(id);
    expect(mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    expect(macFor(id)).toBe(mac);
    expect(macFor(id, 1)).not.toBe(mac);
    const first = parseInt(mac.slice(0, 2), 16);
    expect(first & 1).toBe(0); // unicast
    expect(first & 2).toBe(2); // locally administered
  });
});

describe('address plans', () => {
  it('gives the host the first address and routes through it with gateway host', () => {
    const p = addressPlan(spec({ ipv6: 'fd00:1::/64' }));
    expect([p.host4, p.gateway4, p.host6, p.gateway6]).toEqual(['10.10.0.1', '10.10.0.1', 'fd00:1::1', 'fd00:1::1']);
    expect(p.dnsServers).toEqual(['10.10.0.1', 'fd00:1::1']);
    expect([...freeIpv4(p, new Set(['10.10.0.2']))].slice(0, 2)).toEqual(['10.10.0.3', '10.10.0.4']);
    const all = [...freeIpv4(p, new Set())];
    expect(all.length).toBe(253); // .2 to .254: not the network, the broadcast or the host
    expect(all.at(-1)).toBe('10.10.0.254');
  });

  it('isolates with gateway none, routes through a VM with an address, skips reserved ones', () => {
    const none = addressPlan(spec({ gateway: 'none', dns: false, reserved: ['10.10.0.2'] }));
    expect([none.gateway4, none.host4]).toEqual([null, '10.10.0.1']);
    expect(none.dnsServers).toEqual([]);
    expect([...freeIpv4(none, new Set())][0]).toBe('10.10.0.3');
    const vm = addressPlan(spec({ gateway: '10.10.0.254' }));
    expect(vm.gateway4).toBe('10.10.0.254');
    // Next-free never hands out the router's address; the router VM asks for it.
    expect([...freeIpv4(vm, new Set())]).not.toContain('10.10.0.254');
    expect([...freeIpv4(vm, new Set())]).toHaveLength(252);
    expect(checkRequested4(vm, '10.10.0.254', 'ipv4')).toBe('10.10.0.254');
    expect(codeOf(() => addressPlan(spec({ gateway: '10.10.0.1' })))).toBe('validation_failed');
    expect(codeOf(() => addressPlan(spec({ gateway: '10.11.0.5' })))).toBe('validation_failed');
    expect(codeOf(() => addressPlan(spec({ reserved: ['10.11.0.5'] })))).toBe('validation_failed');
  });

  it("hands out a public network's pool only, never its router", () => {
    const p = addressPlan(
      spec({
        kind: 'public',
        ipv4: '192.0.2.0/24',
        gateway: '192.0.2.1',
        dns: false,
        pool: { start: '192.0.2.100', end: '192.0.2.102' },
      }),
    );
    expect([...freeIpv4(p, new Set())]).toEqual(['192.0.2.100', '192.0.2.101', '192.0.2.102']);
    expect(p.host4).toBe(null);
    expect(p.gateway4).toBe('192.0.2.1');
    expect(
      codeOf(() =>
        addressPlan(spec({ kind: 'public', ipv4: '192.0.2.0/24', pool: { start: '192.0.2.9', end: '192.0.2.3' } })),
      ),
    ).toBe('validation_failed');
  });
});

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`IPAM under concurrency on ${t.name}`, () => {
    let cp: TestControlPlane;
    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('100 concurrent NIC allocations on one network: no duplicates, no gaps', async () => {
      const net = await cp.app.services.networks.create(cp.admin, { name: 'busy', ipv4: '10.20.0.0/24', ipv6: 'auto' });
      const s = cp.app.services.networks.nics;
      const started = performance.now();
      const results = await Promise.allSettled(
        Array.from({ length: 100 }, (_, i) =>
          transaction(cp.store, async (trx) => {
            const [nic] = await s.attach(trx, cp.admin, { id: newId('instance'), project: 'default' }, ['busy']);
            // Every tenth transaction fails after taking its address: the address must come back.
            if (i % 10 === 9) throw new Error('rolled back on purpose');
            return nic!;
          }),
        ),
      );
      const ms = performance.now() - started;
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : []));
      expect(
        failed.every((m) => m === 'rolled back on purpose'),
        failed.join('; '),
      ).toBe(true);
      expect(ok.length).toBe(90);
      const v4 = ok.map((n) => n.ipv4!);
      expect(new Set(v4).size).toBe(90);
      // The lowest 90 host addresses after the host's own .1: rolled-back addresses were reused.
      expect(v4.map((a) => parseIpv4(a)).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 90 }, (_, i) => parseIpv4('10.20.0.2') + i),
      );
      expect(new Set(ok.map((n) => n.mac)).size).toBe(90);
      expect(new Set(ok.map((n) => n.ipv6)).size).toBe(90);
      const rows = await cp.store.db
        .selectFrom('ip_addresses')
        .select(['address', 'nic_id'])
        .where('network_id', '=', net.id)
        .execute();
      expect(rows.length).toBe(180); // one IPv4 and one IPv6 per committed NIC, nothing from the rolled-back ones
      console.log(
        `[floe] IPAM on ${t.name}: 100 concurrent allocations in ${ms.toFixed(0)} ms (${((100 / ms) * 1000).toFixed(0)}/s)`,
      );
    });

    it('a full network is network_full; a taken address is address_in_use', async () => {
      await cp.app.services.networks.create(cp.admin, { name: 'tiny', ipv4: '10.30.0.0/29' });
      const s = cp.app.services.networks.nics;
      const attach = (req: Parameters<typeof s.attach>[3][number]) =>
        transaction(cp.store, (trx) => s.attach(trx, cp.admin, { id: newId('instance'), project: 'default' }, [req]));
      const got = await Promise.all(Array.from({ length: 5 }, () => attach('tiny')));
      expect(got.map(([n]) => n!.ipv4).sort()).toEqual([
        '10.30.0.2',
        '10.30.0.3',
        '10.30.0.4',
        '10.30.0.5',
        '10.30.0.6',
      ]);
      await expect(attach('tiny')).rejects.toMatchObject({ code: 'network_full' });
      await expect(attach({ network: 'tiny', ipv4: '10.30.0.3' })).rejects.toMatchObject({ code: 'address_in_use' });
      // Released addresses go back to the pool.
      await transaction(cp.store, (trx) =>
        s.detach(trx, [got.find(([n]) => n!.ipv4 === '10.30.0.3')![0]!.id], 'system'),
      );
      expect((await attach('tiny'))[0]!.ipv4).toBe('10.30.0.3');
    });
  });
}
