import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { run, which } from '../../host/exec.js';
import { firewallTables, memberSetUpdate, nftRuleset } from './ruleset.js';
import { GROUPS, NET, SG_ADMIN, SG_DEFAULT, SG_NICS, SG_WEB } from './sg-ruleset.fixtures.js';
import { sgTables } from './sg-ruleset.js';
import { renderTables } from './nft-tables.js';
import { tapName } from './names.js';
import { fieldOf } from './testing.js';

/** The whole firewall of a host with three NICs: one in `web`, one in `admin` and `default`, one unfiltered. */
const GOLDEN = `table bridge floe
delete table bridge floe
table bridge floe {
	set sgm4_sg_01JB8X0Q3E6M2T9K4V7W5YB1D2 {
		type ipv4_addr
		flags interval
		elements = { 10.10.0.6, 10.10.0.9 }
	}
	set sgm6_sg_01JB8X0Q3E6M2T9K4V7W5YB1D2 {
		type ipv6_addr
		flags interval
		elements = { fd00:10::6 }
	}
	set sgm4_sg_01JB8X0Q3E6M2T9K4V7W5YB1D3 {
		type ipv4_addr
		flags interval
	}
	set sgm6_sg_01JB8X0Q3E6M2T9K4V7W5YB1D3 {
		type ipv6_addr
		flags interval
	}
	chain prerouting {
		type filter hook prerouting priority -200; policy accept;
		iifname vmap { "fltp2b9227216a2" : jump tap_fltp2b9227216a2, "fltpf3f90968c74" : jump tap_fltpf3f90968c74, "fltp935612b1607" : jump tap_fltp935612b1607 }
		iifname "flvxad9af9a2ebc" ether saddr 02:ad:9a:f9:a2:eb drop
	}
	chain output {
		type filter hook output priority 0; policy accept;
		oifname "flvxad9af9a2ebc" ether saddr 02:ad:9a:f9:a2:eb drop
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
	chain tap_fltpf3f90968c74 {
		ether saddr != 52:54:00:12:34:57 drop
		ether type != { ip, ip6, arp } drop
		udp sport { 67, 547 } drop
		arp saddr ether != 52:54:00:12:34:57 drop
		icmpv6 type { nd-router-advert, nd-redirect } drop
		arp saddr ip != { 0.0.0.0, 10.10.0.6 } drop
		ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept
		ip saddr != 10.10.0.6 drop
		ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report, mld-listener-report } accept
		ip6 saddr != { fe80::/10, fd00:10::6 } drop
	}
	chain tap_fltp935612b1607 {
		ether saddr != 52:54:00:12:34:58 drop
		ether type != { ip, ip6, arp } drop
		udp sport { 67, 547 } drop
		arp saddr ether != 52:54:00:12:34:58 drop
		icmpv6 type { nd-router-advert, nd-redirect } drop
		arp saddr ip != { 0.0.0.0, 10.10.0.7 } drop
		ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept
		ip saddr != 10.10.0.7 drop
		ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report, mld-listener-report } accept
		ip6 saddr != { fe80::/10 } drop
	}
	chain sg_forward {
		type filter hook forward priority 0; policy accept;
		meta mark & 0x00100000 == 0x00100000 accept
		iifname vmap { "fltp2b9227216a2" : jump sgo_d50712bd8667c3b0, "fltpf3f90968c74" : jump sgo_da150a94e449b9e6 }
		oifname vmap { "fltp2b9227216a2" : jump sgi_d50712bd8667c3b0, "fltpf3f90968c74" : jump sgi_da150a94e449b9e6 }
	}
	chain sg_input {
		type filter hook input priority 0; policy accept;
		meta mark & 0x00100000 == 0x00100000 meta mark set meta mark & 0xffefffff accept
		iifname vmap { "fltp2b9227216a2" : jump sgo_d50712bd8667c3b0, "fltpf3f90968c74" : jump sgo_da150a94e449b9e6 }
	}
	chain sg_output {
		type filter hook output priority 100; policy accept;
		meta mark & 0x00100000 == 0x00100000 accept
		oifname vmap { "fltp2b9227216a2" : jump sgi_d50712bd8667c3b0, "fltpf3f90968c74" : jump sgi_da150a94e449b9e6 }
	}
	chain sgi_d50712bd8667c3b0 {
		ether type != { ip, ip6 } accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, mld-listener-query } accept
		udp sport { 67, 547 } udp dport { 68, 546 } accept
		jump sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D1_in
		drop
	}
	chain sgo_d50712bd8667c3b0 {
		ether type != { ip, ip6 } accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld-listener-report, mld2-listener-report } accept
		udp sport { 68, 546 } udp dport { 67, 547 } accept
		jump sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D1_out
	}
	chain sgi_da150a94e449b9e6 {
		ether type != { ip, ip6 } accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, mld-listener-query } accept
		udp sport { 67, 547 } udp dport { 68, 546 } accept
		jump sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D2_in
		jump sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D3_in
		drop
	}
	chain sgo_da150a94e449b9e6 {
		ether type != { ip, ip6 } accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld-listener-report, mld2-listener-report } accept
		udp sport { 68, 546 } udp dport { 67, 547 } accept
		jump sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D2_out
		jump sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D3_out
	}
	chain sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D1_in {
		ip saddr @sgm4_sg_01JB8X0Q3E6M2T9K4V7W5YB1D2 tcp dport 22 accept
		ip6 saddr @sgm6_sg_01JB8X0Q3E6M2T9K4V7W5YB1D2 tcp dport 22 accept
		ip saddr 192.0.2.0/24 tcp dport 80-89 accept
		ip6 saddr fd00:99::/48 meta l4proto udp accept
	}
	chain sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D1_out {
	}
	chain sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D2_in {
	}
	chain sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D2_out {
		meta l4proto icmp accept
	}
	chain sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D3_in {
		ip saddr @sgm4_sg_01JB8X0Q3E6M2T9K4V7W5YB1D3 accept
		ip6 saddr @sgm6_sg_01JB8X0Q3E6M2T9K4V7W5YB1D3 accept
		tcp dport 22 accept
		meta l4proto icmp accept
		meta l4proto ipv6-icmp accept
	}
	chain sg_sg_01JB8X0Q3E6M2T9K4V7W5YB1D3_out {
	}
}
table inet floe_nat
delete table inet floe_nat
table inet floe_nat {
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname "flbrad9af9a2ebc" oifname "flbrad9af9a2ebc" accept
		iifname "flbrad9af9a2ebc" oifname "eth0" accept
		iifname "eth0" oifname "flbrad9af9a2ebc" ct state established,related accept
		iifname "eth0" oifname "flbrad9af9a2ebc" ct status dnat accept
		iifname "fv*" oifname "flbr*" accept
		iifname "flbr*" oifname "fv*" accept
		iifname "flbr*" oifname "flbr*" drop
		iifname "flbrad9af9a2ebc" drop
		oifname "flbrad9af9a2ebc" drop
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.10.0.0/24 oifname "eth0" masquerade
		ip6 saddr fd00:10::/64 oifname "eth0" masquerade
	}
}
table inet floe_sg
delete table inet floe_sg
table inet floe_sg {
	chain prerouting {
		type filter hook prerouting priority -150; policy accept;
		ct state established,related meta mark set meta mark | 0x00100000
	}
	chain output {
		type filter hook output priority -150; policy accept;
		ct state established,related meta mark set meta mark | 0x00100000
	}
}
`;

describe('security groups in the ruleset', () => {
  it('builds per-tap chains, per-group rule chains and member sets, with the marking table', () => {
    expect(nftRuleset([NET], SG_NICS, GROUPS)).toBe(GOLDEN);
    // Same text whatever the order of NICs, groups and a NIC's groups.
    const shuffled = [SG_NICS[2]!, { ...SG_NICS[1]!, securityGroups: [SG_ADMIN, SG_DEFAULT] }, SG_NICS[0]!];
    expect(nftRuleset([NET], shuffled, [...GROUPS].reverse())).toBe(GOLDEN);
  });

  it('does not grow with members: a member more is one set element, the rules stay', () => {
    const more = GROUPS.map((g) => (g.id === SG_ADMIN ? { ...g, members: [...g.members, '10.10.0.50'] } : g));
    const a = nftRuleset([NET], SG_NICS, GROUPS).split('\n');
    const b = nftRuleset([NET], SG_NICS, more).split('\n');
    expect(b.length).toBe(a.length);
    expect(b).toContain('\t\telements = { 10.10.0.50, 10.10.0.6, 10.10.0.9 }');
  });

  it('gives NICs with the same groups the same chains: a NIC more is one map element per hook', () => {
    const twin = { ...SG_NICS[1]!, id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1D6', securityGroups: [SG_ADMIN, SG_DEFAULT] };
    const a = nftRuleset([NET], SG_NICS, GROUPS);
    const b = nftRuleset([NET], [...SG_NICS, twin], GROUPS);
    const chains = (t: string) => [...t.matchAll(/^\tchain (\S+) \{$/gm)].map((m) => m[1]!);
    expect(chains(b).filter((c) => c.startsWith('sg'))).toEqual(chains(a).filter((c) => c.startsWith('sg')));
    expect(chains(b).filter((c) => c.startsWith('sg') && !c.startsWith('sg_'))).toHaveLength(4);
    const tap = tapName(twin.id);
    expect(b).toContain(`"${tap}" : jump sgi_da150a94e449b9e6`);
    expect(b).toContain(`"${tap}" : jump sgo_da150a94e449b9e6`);
  });

  it('adds nothing and removes the marking table when no NIC is filtered', () => {
    const text = nftRuleset(
      [NET],
      SG_NICS.map((n) => ({ ...n, filtering: false })),
      GROUPS,
    );
    expect(text).not.toContain('sg_');
    expect(text.endsWith('table inet floe_sg\ndelete table inet floe_sg\n')).toBe(true);
    // Older control planes send no groups: the NIC is not filtered.
    expect(sgTables([{ ...SG_NICS[0]!, securityGroups: undefined }], []).marks).toBeNull();
  });

  it('lets everything in when one of the groups of a NIC allows ingress by default', () => {
    const open = GROUPS.map((g) => (g.id === SG_DEFAULT ? { ...g, ingressDefault: 'allow' as const } : g));
    const t = renderTables([{ family: 'bridge', name: 'x', chains: sgTables([SG_NICS[1]!], open).chains }]);
    expect(t).toContain(`\t\tjump sg_${SG_DEFAULT}_in\n\t}`);
    expect(t).not.toContain('\t\tdrop\n');
  });

  it('matches nothing for a remote group the host does not know, and refuses a NIC naming an unknown group', () => {
    const lone = [{ ...GROUPS[0]!, rules: [GROUPS[0]!.rules[0]!] }];
    const t = renderTables([{ family: 'bridge', name: 'x', chains: sgTables([SG_NICS[0]!], lone).chains }]);
    expect(t).toContain(`\tchain sg_${SG_WEB}_in {\n\t}`);
    expect(fieldOf(() => sgTables([SG_NICS[1]!], lone))).toBe('security_groups');
  });

  it('refuses unsafe values', () => {
    const bad = (rule: Partial<(typeof GROUPS)[0]['rules'][0]>) =>
      fieldOf(() => sgTables([SG_NICS[0]!], [{ ...GROUPS[0]!, rules: [{ ...GROUPS[0]!.rules[1]!, ...rule }] }]));
    expect(bad({ remoteCidr: '192.0.2.0/24 accept' })).toBe(`security_groups.${SG_WEB}.rules[0].remote_cidr`);
    expect(bad({ portMin: 0 })).toBe(`security_groups.${SG_WEB}.rules[0].port_min`);
    expect(bad({ portMin: 90, portMax: 80 })).toBe(`security_groups.${SG_WEB}.rules[0].port_max`);
    expect(bad({ remoteCidr: null, remoteGroup: 'sg_x"' })).toBe(`security_groups.${SG_WEB}.rules[0].remote_group`);
    expect(fieldOf(() => sgTables([{ ...SG_NICS[0]!, securityGroups: ['x y'] }], GROUPS))).toMatch(/security_groups/);
    const member = [{ ...GROUPS[1]!, members: ['10.0.0.1, 0.0.0.0/0'] }, GROUPS[0]!];
    expect(fieldOf(() => sgTables([SG_NICS[0]!], member))).toMatch(/members/);
  });

  it('is accepted by nft in check mode and applied twice', async (ctx) => {
    if (process.getuid?.() !== 0 || (await which('nft')) === null) {
      if (process.env.CI) throw new Error('nft check needs root and nft under CI');
      console.log('skipped: nft check mode needs root and nft');
      ctx.skip();
    }
    const ns = `floe-sg-${randomBytes(4).toString('hex')}`;
    await run('ip', ['netns', 'add', ns]);
    try {
      await run('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: GOLDEN });
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: GOLDEN });
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: GOLDEN });
      const { stdout } = await run('ip', [
        'netns',
        'exec',
        ns,
        'nft',
        'list',
        'set',
        'bridge',
        'floe',
        `sgm4_${SG_ADMIN}`,
      ]);
      expect(stdout).toContain('10.10.0.6');
      // Back to no filtered NIC: the marking table goes.
      await run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: nftRuleset([NET], [], []) });
      const tables = await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'tables']);
      expect(tables.stdout).not.toContain('floe_sg');
    } finally {
      await run('ip', ['netns', 'del', ns]);
    }
  });
});

describe('member sets updated in place', () => {
  const tables = (nics = SG_NICS, groups = GROUPS) => firewallTables({ nets: [NET], nics, groups });
  const withMembers = (members: Record<string, string[]>) =>
    GROUPS.map((g) => (members[g.id] === undefined ? g : { ...g, members: members[g.id]! }));
  /** admin loses 10.10.0.9 and gains 10.10.0.50; default gets its first member; web (no rule names it) gains one. */
  const MOVED = withMembers({
    [SG_ADMIN]: ['10.10.0.6', '10.10.0.50', 'fd00:10::6'],
    [SG_DEFAULT]: ['10.10.0.7'],
    [SG_WEB]: ['10.10.0.5', '10.10.0.8', 'fd00:10::5054:ff:fe12:3456'],
  });
  const UPDATE = `flush set bridge floe sgm4_${SG_ADMIN}
add element bridge floe sgm4_${SG_ADMIN} { 10.10.0.50, 10.10.0.6 }
flush set bridge floe sgm4_${SG_DEFAULT}
add element bridge floe sgm4_${SG_DEFAULT} { 10.10.0.7 }
`;

  it('refills just the sets whose members changed, in one script', () => {
    expect(memberSetUpdate(tables(), tables(SG_NICS, MOVED))).toBe(UPDATE);
    // A set emptied is flushed only; nothing changed is nothing to do.
    expect(memberSetUpdate(tables(), tables(SG_NICS, withMembers({ [SG_ADMIN]: ['fd00:10::6'] })))).toBe(
      `flush set bridge floe sgm4_${SG_ADMIN}\n`,
    );
    expect(memberSetUpdate(tables(), tables(SG_NICS, [...GROUPS].reverse()))).toBe('');
  });

  it('needs the whole ruleset for anything but members: a rule, a default, a NIC, its groups or filtering', () => {
    const ruled = GROUPS.map((g, i) => (i === 0 ? { ...g, rules: g.rules.slice(1) } : g));
    const opened = GROUPS.map((g, i) => (i === 0 ? { ...g, ingressDefault: 'allow' as const } : g));
    expect(memberSetUpdate(tables(), tables(SG_NICS, ruled))).toBeNull();
    expect(memberSetUpdate(tables(), tables(SG_NICS, opened))).toBeNull();
    expect(memberSetUpdate(tables(), tables(SG_NICS.slice(0, 2)))).toBeNull();
    expect(
      memberSetUpdate(tables(), tables([{ ...SG_NICS[0]!, securityGroups: [SG_DEFAULT] }, ...SG_NICS.slice(1)])),
    ).toBeNull();
    expect(memberSetUpdate(tables(), tables([{ ...SG_NICS[0]!, filtering: false }, ...SG_NICS.slice(1)]))).toBeNull();
  });

  it('leaves nftables as the whole new ruleset would, in one transaction', async (ctx) => {
    if (process.getuid?.() !== 0 || (await which('nft')) === null) {
      if (process.env.CI) throw new Error('nft check needs root and nft under CI');
      console.log('skipped: nft check mode needs root and nft');
      ctx.skip();
    }
    const ns = `floe-sgm-${randomBytes(4).toString('hex')}`;
    const nft = (input: string) => run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input });
    const list = async () => (await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset'])).stdout;
    await run('ip', ['netns', 'add', ns]);
    try {
      await nft(GOLDEN);
      await run('ip', ['netns', 'exec', ns, 'nft', '-c', '-f', '-'], { input: UPDATE });
      await nft(UPDATE);
      const inPlace = await list();
      expect(inPlace).toContain('10.10.0.50');
      expect(inPlace).not.toContain('10.10.0.9');
      await nft(nftRuleset([NET], SG_NICS, MOVED));
      expect(await list()).toBe(inPlace);
      // One transaction: a script naming a set the host lacks changes nothing, not even the sets before it.
      await expect(
        nft(`${UPDATE}flush set bridge floe sgm4_sg_01JB8X0Q3E6M2T9K4V7W5YB1DX\n`.replace('10.10.0.7', '10.10.0.77')),
      ).rejects.toThrow();
      expect(await list()).toBe(inPlace);
    } finally {
      await run('ip', ['netns', 'del', ns]);
    }
  });
});
