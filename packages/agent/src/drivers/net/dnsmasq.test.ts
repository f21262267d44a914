import { describe, expect, it } from 'vitest';
import { dnsmasqConfig, dnsmasqPaths } from './dnsmasq.js';
import { NET, NIC } from './spec.fixtures.js';
import type { NetSpec, NicSpec } from './types.js';


const REMOTE: NicSpec = { ...NIC, id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C7', mac: '52:54:00:00:00:07', ipv4: '10.10.0.7', ipv6: null, hostname: 'db-1' };
const PATHS = dnsmasqPaths('/var/lib/floe/agent', NET.id);

describe('dnsmasqConfig', () => {
  it('serves pinned DHCPv4, SLAAC with stateless DHCPv6 and DNS names on the bridge only', () => {
    expect(dnsmasqConfig(NET, [NIC], PATHS, [REMOTE])).toBe(`# floe network net_01JB8X0Q3E6M2T9K4V7W5YB1C3; generated, do not edit
interface=flbrad9af9a2ebc
bind-interfaces
except-interface=lo
pid-file=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1C3/dnsmasq.pid
dhcp-leasefile=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1C3/dnsmasq.leases
no-hosts
dhcp-authoritative
log-facility=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1C3/dnsmasq.log
domain-needed
bogus-priv
no-poll
dhcp-range=set:v4,10.10.0.0,static,255.255.255.0,12h
dhcp-option=tag:v4,option:router,10.10.0.1
dhcp-option=tag:v4,option:mtu,1450
enable-ra
dhcp-range=set:v6,::,constructor:flbrad9af9a2ebc,ra-stateless,64,12h
ra-param=flbrad9af9a2ebc,mtu:1450,60
dhcp-host=52:54:00:12:34:56,set:v4,10.10.0.5,web-1
host-record=web-1,10.10.0.5,fd00:10::5054:ff:fe12:3456
host-record=db-1,10.10.0.7
`);
  });

  it('without DNS and without a router: no DNS port, no resolv.conf, no router option, RA with lifetime 0', () => {
    const net: NetSpec = { ...NET, dns: false, gatewayMode: 'none', ipv6: { cidr: 'fd00:10::/64', gateway: null } };
    expect(dnsmasqConfig(net, [NIC], PATHS)).toBe(`# floe network net_01JB8X0Q3E6M2T9K4V7W5YB1C3; generated, do not edit
interface=flbrad9af9a2ebc
bind-interfaces
except-interface=lo
pid-file=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1C3/dnsmasq.pid
dhcp-leasefile=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1C3/dnsmasq.leases
no-hosts
dhcp-authoritative
log-facility=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1C3/dnsmasq.log
port=0
no-resolv
dhcp-range=set:v4,10.10.0.0,static,255.255.255.0,12h
dhcp-option=tag:v4,option:router
dhcp-option=tag:v4,option:mtu,1450
dhcp-option=tag:v4,option:dns-server
enable-ra
dhcp-range=set:v6,::,constructor:flbrad9af9a2ebc,ra-only,64,12h
ra-param=flbrad9af9a2ebc,mtu:1450,60,0
dhcp-host=52:54:00:12:34:56,set:v4,10.10.0.5,web-1
`);
  });

  it('with DHCPv6: managed RAs without SLAAC, and the NIC\'s pinned IPv6 address beside its IPv4 one', () => {
    const conf = dnsmasqConfig({ ...NET, dhcpv6: true }, [NIC], PATHS, [REMOTE]);
    const base = dnsmasqConfig(NET, [NIC], PATHS, [REMOTE]).split('\n');
    const lines = conf.split('\n');
    expect(lines.filter((l) => !base.includes(l))).toEqual([
      'dhcp-range=set:v6,::,constructor:flbrad9af9a2ebc,static,64,12h',
      'dhcp-host=52:54:00:12:34:56,set:v4,10.10.0.5,[fd00:10::5054:ff:fe12:3456],web-1',
    ]);
    expect(base.filter((l) => !lines.includes(l))).toEqual([
      'dhcp-range=set:v6,::,constructor:flbrad9af9a2ebc,ra-stateless,64,12h',
      'dhcp-host=52:54:00:12:34:56,set:v4,10.10.0.5,web-1',
    ]);
    // Without DNS the guests are told of no DNS server over DHCPv6 either.
    expect(dnsmasqConfig({ ...NET, dhcpv6: true, dns: false }, [NIC], PATHS)).toContain('\ndhcp-option=option6:dns-server\n');
    // An IPv6-only NIC gets a line of its own.
    expect(dnsmasqConfig({ ...NET, dhcpv6: true }, [{ ...NIC, ipv4: null }], PATHS)).toContain('\ndhcp-host=52:54:00:12:34:56,[fd00:10::5054:ff:fe12:3456],web-1\n');
  });

  it('refuses DHCPv6 without IPv6 or on a public network', () => {
    expect(() => dnsmasqConfig({ ...NET, dhcpv6: true, ipv6: null }, [NIC], PATHS)).toThrow(/DHCPv6/);
    expect(() => dnsmasqConfig({ ...NET, dhcpv6: 'yes' as unknown as boolean }, [NIC], PATHS)).toThrow(/true or false/);
  });

  it('on a public network: floe\'s NICs only, not authoritative, the LAN\'s router, no RAs, no DNS unless asked', () => {
    const pub: NetSpec = {
      id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1CB', kind: 'public', physical: 'eth1', vni: 102, ipv4: { cidr: '203.0.113.0/24', gateway: '203.0.113.1' },
      ipv6: { cidr: '2001:db8::/64', gateway: null }, mtu: 1500, gatewayMode: 'vm', dns: false, peers: [],
    };
    const nic: NicSpec = { ...NIC, networkId: pub.id, ipv4: '203.0.113.50', ipv6: null, hostname: 'pub-1' };
    const paths = dnsmasqPaths('/var/lib/floe/agent', pub.id);
    expect(dnsmasqConfig(pub, [nic], paths)).toBe(`# floe network net_01JB8X0Q3E6M2T9K4V7W5YB1CB; generated, do not edit
interface=flbr079b079bcba
bind-interfaces
except-interface=lo
pid-file=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1CB/dnsmasq.pid
dhcp-leasefile=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1CB/dnsmasq.leases
no-hosts
dhcp-ignore=tag:!known
log-facility=/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1CB/dnsmasq.log
port=0
no-resolv
dhcp-range=set:v4,203.0.113.0,static,255.255.255.0,12h
dhcp-option=tag:v4,option:router,203.0.113.1
dhcp-option=tag:v4,option:mtu,1500
dhcp-option=tag:v4,option:dns-server
dhcp-host=52:54:00:12:34:56,set:v4,203.0.113.50,pub-1
`);
    const withDns = dnsmasqConfig({ ...pub, dns: true }, [nic], paths);
    expect(withDns).not.toContain('port=0');
    expect(withDns).toContain('host-record=pub-1,203.0.113.50\n');
  });

  it('refuses values that would inject config lines or escape the state directory', () => {
    expect(() => dnsmasqConfig(NET, [{ ...NIC, hostname: 'web\nserver=1.1.1.1' }], PATHS)).toThrow(/not a DNS label/);
    expect(() => dnsmasqConfig({ ...NET, ipv4: { cidr: '10.10.0.0/24\nx', gateway: null } }, [], PATHS)).toThrow(/prefix/);
    expect(() => dnsmasqPaths('/var/lib/floe', '../x')).toThrow(/malformed/);
    expect(() => dnsmasqPaths('relative', NET.id)).toThrow(/absolute/);
  });
});
