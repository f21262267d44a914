import { describe, expect, it } from 'vitest';
import { desiredInstance } from '@floe/testkit';
import { gatewayMac } from '../drivers/net/checked-spec.js';
import { fieldOf } from '../drivers/net/testing.js';
import { metadataMark, metadataRuleset, parsePortRange } from './nft.js';
import { planMetadata } from './service.js';

const NIC_A = 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C4';
const NIC_B = 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C5';
const RANGE = { first: 20000, last: 20999 };

describe('metadataRuleset', () => {
  it('marks and hands up requests per tap, redirects each mark to its port, and lets only redirected connections in', () => {
    const text = metadataRuleset(
      [
        { nicId: NIC_B, port: 20001 },
        { nicId: NIC_A, port: 20000, bridgeMac: '02:ad:9a:f9:a2:eb' },
      ],
      RANGE,
    );
    expect(text).toBe(`table bridge floe_meta
delete table bridge floe_meta
table bridge floe_meta {
	chain prerouting {
		type filter hook prerouting priority -150; policy accept;
		iifname "fltp2b9227216a2" ip daddr 169.254.169.254 tcp dport 80 meta mark set 0x666c4e20 ether daddr set 02:ad:9a:f9:a2:eb meta pkttype set host
		iifname "fltp2b9227216a2" ip6 daddr fd00:ec2::254 tcp dport 80 meta mark set 0x666c4e20 ether daddr set 02:ad:9a:f9:a2:eb meta pkttype set host
		iifname "fltpb2ad5b4aa50" ip daddr 169.254.169.254 tcp dport 80 meta mark set 0x666c4e21 meta pkttype set host
		iifname "fltpb2ad5b4aa50" ip6 daddr fd00:ec2::254 tcp dport 80 meta mark set 0x666c4e21 meta pkttype set host
		iifname "fltp*" ip daddr 169.254.169.254 meta mark & 0xffff0000 != 0x666c0000 drop
		iifname "fltp*" ip6 daddr fd00:ec2::254 meta mark & 0xffff0000 != 0x666c0000 drop
	}
}
table inet floe_meta
delete table inet floe_meta
table inet floe_meta {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		meta mark 0x666c4e20 ip daddr 169.254.169.254 tcp dport 80 redirect to :20000
		meta mark 0x666c4e20 ip6 daddr fd00:ec2::254 tcp dport 80 redirect to :20000
		meta mark 0x666c4e21 ip daddr 169.254.169.254 tcp dport 80 redirect to :20001
		meta mark 0x666c4e21 ip6 daddr fd00:ec2::254 tcp dport 80 redirect to :20001
	}
	chain input {
		type filter hook input priority filter; policy accept;
		meta mark 0x666c4e20 tcp dport 20000 ct status dnat accept
		meta mark 0x666c4e21 tcp dport 20001 ct status dnat accept
		tcp dport 20000-20999 ct state new drop
	}
}
`);
  });

  it('keeps the ports closed with no NICs', () => {
    expect(metadataRuleset([], { first: 30000, last: 30009 })).toContain(
      '\t\ttcp dport 30000-30009 ct state new drop\n',
    );
  });

  it('refuses ports outside the range, twice the same port, bad MACs and ranges', () => {
    expect(fieldOf(() => metadataRuleset([{ nicId: NIC_A, port: 19999 }], RANGE))).toBe('nics[0].port');
    expect(
      fieldOf(() =>
        metadataRuleset(
          [
            { nicId: NIC_A, port: 20000 },
            { nicId: NIC_B, port: 20000 },
          ],
          RANGE,
        ),
      ),
    ).toBe('nics[1].port');
    expect(fieldOf(() => metadataRuleset([{ nicId: NIC_A, port: 20000, bridgeMac: '02:00:00:00:00:0G' }], RANGE))).toBe(
      'nics[0].bridge_mac',
    );
    expect(fieldOf(() => metadataRuleset([{ nicId: 'nic_a";drop', port: 20000 }], RANGE))).toBe('nic_id');
    expect(fieldOf(() => metadataRuleset([], { first: 80, last: 90 }))).toBe('metadata_ports.first');
    expect(fieldOf(() => metadataRuleset([], { first: 20000, last: 19000 }))).toBe('metadata_ports.last');
    expect(metadataMark(65535)).toBe('0x666cffff');
  });

  it('parses the --metadata-ports flag', () => {
    expect(parsePortRange('20000-20999')).toEqual(RANGE);
    for (const bad of ['20000', '20000-', 'a-b', '1000-2000', '20000-90000'])
      expect(() => parsePortRange(bad)).toThrow();
  });
});

describe('planMetadata', () => {
  const nic = (id: string, network_id: string, index = 0) => ({
    id,
    network_id,
    vni: 7,
    index,
    mac: '02:00:00:00:00:01',
    ipv4: null,
    ipv4_prefix: null,
    ipv6: null,
    ipv6_prefix: null,
    gateway4: null,
    gateway6: null,
    mtu: 1450,
    dns_servers: [],
  });
  const NET = 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3';
  const PUB = 'net_01JB8X0Q3E6M2T9K4V7W5YB1C9';

  it("gives each NIC the lowest free port and keeps it while the NIC stays; public NICs keep their frames' MAC", () => {
    const ports = new Map<string, number>();
    const vmA = desiredInstance({ id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C1', name: 'a', nics: [nic(NIC_B, NET)] });
    const vmB = desiredInstance({ id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C2', name: 'b', nics: [nic(NIC_A, PUB)] });
    expect(planMetadata([vmA, vmB], new Set([PUB]), ports, RANGE).nics).toEqual([
      { nicId: NIC_A, port: 20000 },
      { nicId: NIC_B, port: 20001, bridgeMac: gatewayMac(NET) },
    ]);
    // A goes; B keeps its port, and a new NIC takes the one that freed up.
    const C = 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C6';
    const vmC = desiredInstance({ id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C7', name: 'c', nics: [nic(C, NET)] });
    expect(planMetadata([vmA, vmC], new Set([PUB]), ports, RANGE).nics.map((n) => [n.nicId, n.port])).toEqual([
      [NIC_B, 20001],
      [C, 20000],
    ]);
    // Ports another process holds are skipped; when the range is full the rest wait.
    const fresh = new Map<string, number>();
    expect(
      planMetadata([vmA, vmB, vmC], new Set(), fresh, { first: 20000, last: 20001 }, new Set([20000])).nics.map(
        (n) => n.port,
      ),
    ).toEqual([20001]);
  });
});
