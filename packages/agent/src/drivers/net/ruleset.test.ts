import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { run, which } from '../../host/exec.js';
import { bridgeName } from './names.js';
import { nftRuleset } from './ruleset.js';
import { NET, NIC } from './spec.fixtures.js';
import type { NetSpec, NicSpec } from './types.js';

/** A second network with a VM as gateway; its router NIC keeps only its MAC pinned. */
const VMNET: NetSpec = {
  id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C8',
  vni: 101,
  ipv4: { cidr: '10.20.0.0/24', gateway: '10.20.0.1' },
  ipv6: null,
  mtu: 1450,
  gatewayMode: 'vm',
  dns: false,
  peers: [],
};
const ROUTER: NicSpec = {
  id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C9',
  instanceId: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1CA',
  networkId: VMNET.id,
  mac: '52:54:00:00:00:01',
  ipv4: '10.20.0.1',
  ipv6: null,
  hostname: 'fw',
};

const GOLDEN = `table bridge floe
delete table bridge floe
table bridge floe {
	chain prerouting {
		type filter hook prerouting priority -200; policy accept;
		iifname vmap { "fltp2b9227216a2" : jump tap_fltp2b9227216a2, "fltp0b8fc36fdb9" : jump tap_fltp0b8fc36fdb9 }
		iifname "flvxad9af9a2ebc" ether saddr 02:ad:9a:f9:a2:eb drop
		iifname "flvxf8d0e2ef27d" ether saddr 02:f8:d0:e2:ef:27 drop
	}
	chain output {
		type filter hook output priority 0; policy accept;
		oifname "flvxad9af9a2ebc" ether saddr 02:ad:9a:f9:a2:eb drop
		oifname "flvxf8d0e2ef27d" ether saddr 02:f8:d0:e2:ef:27 drop
	}
	chain tap_fltp2b9227216a2 {
		ether saddr != 52:54:00:12:34:56 drop
		ether type != { ip, ip6, arp } drop
		udp sport { 67, 547 } drop
		arp saddr ether != 52:54:00:12:34:56 drop
		icmpv6 type { nd-router-advert, nd-redirect } drop
		arp saddr ip != { 0.0.0.0, 10.10.0.5 } drop
		ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept
		ip saddr != 10.10.0.5 drop
		ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report, mld-listener-report } accept
		ip6 saddr != { fe80::/10, fd00:10::5054:ff:fe12:3456 } drop
	}
	chain tap_fltp0b8fc36fdb9 {
		ether saddr != 52:54:00:00:00:01 drop
		ether type != { ip, ip6, arp } drop
		udp sport { 67, 547 } drop
		arp saddr ether != 52:54:00:00:00:01 drop
	}
}
table inet floe_nat
delete table inet floe_nat
table inet floe_nat {
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname "flbrad9af9a2ebc" oifname "flbrad9af9a2ebc" accept
		iifname "flbrf8d0e2ef27d" oifname "flbrf8d0e2ef27d" accept
		iifname "flbrad9af9a2ebc" oifname "eth0" accept
		iifname "eth0" oifname "flbrad9af9a2ebc" ct state established,related accept
		iifname "eth0" oifname "flbrad9af9a2ebc" ct status dnat accept
		iifname "fv*" oifname "flbr*" accept
		iifname "flbr*" oifname "fv*" accept
		iifname "flbr*" oifname "flbr*" drop
		iifname "flbrad9af9a2ebc" drop
		oifname "flbrad9af9a2ebc" drop
		iifname "flbrf8d0e2ef27d" drop
		oifname "flbrf8d0e2ef27d" drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.10.0.0/24 oifname "eth0" masquerade
		ip6 saddr fd00:10::/64 oifname "eth0" masquerade
	}
}
table inet floe_sg
delete table inet floe_sg
`;

/** A public network over eth1 whose router 203.0.113.1 is on the LAN, and a guest on it. */
const PUBNET: NetSpec = {
  id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1CB',
  kind: 'public',
  physical: 'eth1',
  vni: 102,
  ipv4: { cidr: '203.0.113.0/24', gateway: '203.0.113.1' },
  ipv6: null,
  mtu: 1500,
  gatewayMode: 'vm',
  dns: false,
  peers: [],
};
const PUBNIC: NicSpec = {
  id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1CC',
  instanceId: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1CD',
  networkId: PUBNET.id,
  mac: '52:54:00:00:00:0b',
  ipv4: '203.0.113.50',
  ipv6: null,
  hostname: 'pub-1',
};

describe('nftRuleset', () => {
  it('pins guests of a public bridge like any tap, with no VXLAN rules, no NAT and the host-gateway NAT out through the public bridge', () => {
    const text = nftRuleset([PUBNET, { ...NET, natInterface: bridgeName(PUBNET.id) }], [PUBNIC]);
    const pubBr = bridgeName(PUBNET.id);
    expect(pubBr).toBe('flbr079b079bcba');
    expect(text).toBe(`table bridge floe
delete table bridge floe
table bridge floe {
	chain prerouting {
		type filter hook prerouting priority -200; policy accept;
		iifname vmap { "fltp66a1d8a6d49" : jump tap_fltp66a1d8a6d49 }
		iifname "flvxad9af9a2ebc" ether saddr 02:ad:9a:f9:a2:eb drop
	}
	chain output {
		type filter hook output priority 0; policy accept;
		oifname "flvxad9af9a2ebc" ether saddr 02:ad:9a:f9:a2:eb drop
	}
	chain tap_fltp66a1d8a6d49 {
		ether saddr != 52:54:00:00:00:0b drop
		ether type != { ip, ip6, arp } drop
		udp sport { 67, 547 } drop
		arp saddr ether != 52:54:00:00:00:0b drop
		icmpv6 type { nd-router-advert, nd-redirect } drop
		arp saddr ip != { 0.0.0.0, 203.0.113.50 } drop
		ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept
		ip saddr != 203.0.113.50 drop
		ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report, mld-listener-report } accept
		ip6 saddr != { fe80::/10 } drop
	}
}
table inet floe_nat
delete table inet floe_nat
table inet floe_nat {
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname "flbrad9af9a2ebc" oifname "flbrad9af9a2ebc" accept
		iifname "flbr079b079bcba" oifname "flbr079b079bcba" accept
		iifname "flbrad9af9a2ebc" oifname "flbr079b079bcba" accept
		iifname "flbr079b079bcba" oifname "flbrad9af9a2ebc" ct state established,related accept
		iifname "flbr079b079bcba" oifname "flbrad9af9a2ebc" ct status dnat accept
		iifname "fv*" oifname "flbr*" accept
		iifname "flbr*" oifname "fv*" accept
		iifname "flbr*" oifname "flbr*" drop
		iifname "flbrad9af9a2ebc" drop
		oifname "flbrad9af9a2ebc" drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.10.0.0/24 oifname "flbr079b079bcba" masquerade
		ip6 saddr fd00:10::/64 oifname "flbr079b079bcba" masquerade
	}
}
table inet floe_sg
delete table inet floe_sg
`);
    expect(text).not.toContain('eth1');
  });

  it("does not exempt a public network's NIC as a router, even with the router's address", () => {
    const text = nftRuleset([PUBNET], [{ ...PUBNIC, ipv4: '203.0.113.1' }]);
    expect(text).toContain('\t\tip saddr != 203.0.113.1 drop\n');
  });

  it('builds the whole floe firewall as one transaction', () => {
    expect(nftRuleset([VMNET, NET], [ROUTER, NIC])).toBe(GOLDEN);
  });

  it('does not depend on input order', () => {
    expect(nftRuleset([NET, VMNET], [NIC, ROUTER])).toBe(GOLDEN);
  });

  it('drops all IPv4 and ARP from a NIC without an IPv4 address', () => {
    const text = nftRuleset([NET], [{ ...NIC, ipv4: null }]);
    expect(text).toContain('\t\tether type { ip, arp } drop\n');
    expect(text).not.toContain('ip saddr != ');
  });

  it('refuses NICs and networks with unsafe values', () => {
    expect(() => nftRuleset([NET], [{ ...NIC, mac: '52:54:00:12:34:56 accept' }])).toThrow(/MAC/);
    expect(() => nftRuleset([{ ...NET, natInterface: 'eth0" accept' }], [])).toThrow(/interface name/);
  });

  it('is accepted by nft in check mode', async (ctx) => {
    if (process.getuid?.() !== 0 || (await which('nft')) === null) {
      if (process.env.CI) throw new Error('nft check needs root and nft under CI');
      console.log('skipped: nft check mode needs root and nft');
      ctx.skip();
    }
    // A scratch namespace: check mode still needs CAP_NET_ADMIN, and nothing of the host is touched.
    const ns = `floe-t-${randomBytes(4).toString('hex')}`;
    await run('ip', ['netns', 'add', ns]);
    try {
      await run('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: GOLDEN });
      // Applied twice: the ruleset replaces itself.
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: GOLDEN });
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: GOLDEN });
      const { stdout } = await run('ip', [
        'netns',
        'exec',
        ns,
        'nft',
        'list',
        'chain',
        'bridge',
        'floe',
        'tap_fltp2b9227216a2',
      ]);
      expect(stdout).toContain('ether saddr != 52:54:00:12:34:56 drop');
      await expect(
        run('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: GOLDEN.replace('drop', 'dorp') }),
      ).rejects.toThrow();
    } finally {
      await run('ip', ['netns', 'del', ns]);
    }
  });
});
