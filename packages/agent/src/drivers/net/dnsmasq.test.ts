import { describe, expect, it } from 'vitest';
import { dnsmasqFiles, dnsmasqPaths, dnsmasqRunDir } from './dnsmasq.js';
import { NET, NIC } from './spec.fixtures.js';
import type { NetSpec, NicSpec } from './types.js';

const REMOTE: NicSpec = {
  ...NIC,
  id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C7',
  mac: '52:54:00:00:00:07',
  ipv4: '10.10.0.7',
  ipv6: null,
  hostname: 'db-1',
};
const PATHS = dnsmasqPaths('/var/lib/floe/agent', NET.id, '/run/floe/dnsmasq-test');
const DIR = '/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1C3';
const RUN = '/run/floe/dnsmasq-test/net_01JB8X0Q3E6M2T9K4V7W5YB1C3';

describe('dnsmasqFiles', () => {
  it('serves pinned DHCPv4, SLAAC with stateless DHCPv6 and DNS names on the bridge only; leases and names in files of their own', () => {
    expect(dnsmasqFiles(NET, [NIC], PATHS, [REMOTE])).toEqual({
      conf: `# floe network net_01JB8X0Q3E6M2T9K4V7W5YB1C3; generated, do not edit
interface=flbrad9af9a2ebc
bind-dynamic
except-interface=lo
pid-file=${DIR}/dnsmasq.pid
dhcp-leasefile=${DIR}/dnsmasq.leases
no-hosts
dhcp-authoritative
log-facility=${DIR}/dnsmasq.log
domain-needed
bogus-priv
no-poll
dhcp-range=set:v4,10.10.0.0,static,255.255.255.0,12h
dhcp-option=tag:v4,option:router,10.10.0.1
dhcp-option=tag:v4,option:mtu,1450
enable-ra
dhcp-range=set:v6,::,constructor:flbrad9af9a2ebc,ra-stateless,64,12h
ra-param=flbrad9af9a2ebc,mtu:1450,60
dhcp-hostsfile=${RUN}/dhcp-hosts
addn-hosts=${RUN}/names
`,
      hosts: '52:54:00:12:34:56,10.10.0.5,web-1\n',
      names: '10.10.0.5 web-1\nfd00:10::5054:ff:fe12:3456 web-1\n10.10.0.7 db-1\n',
    });
  });

  it('keeps the configuration when only NICs change, so a VM joining is a reload, not a restart', () => {
    const one = dnsmasqFiles(NET, [NIC], PATHS);
    const two = dnsmasqFiles(NET, [NIC, { ...REMOTE, ipv6: 'fd00:10::7' }], PATHS);
    expect(two.conf).toBe(one.conf);
    expect(two.hosts).toBe('52:54:00:12:34:56,10.10.0.5,web-1\n52:54:00:00:00:07,10.10.0.7,db-1\n');
    expect(dnsmasqFiles(NET, [], PATHS)).toEqual({ conf: one.conf, hosts: '', names: '' });
  });

  it('without DNS and without a router: no DNS port, no resolv.conf, no router option, RA with lifetime 0, no names', () => {
    const net: NetSpec = { ...NET, dns: false, gatewayMode: 'none', ipv6: { cidr: 'fd00:10::/64', gateway: null } };
    expect(dnsmasqFiles(net, [NIC], PATHS, [REMOTE])).toEqual({
      conf: `# floe network net_01JB8X0Q3E6M2T9K4V7W5YB1C3; generated, do not edit
interface=flbrad9af9a2ebc
bind-dynamic
except-interface=lo
pid-file=${DIR}/dnsmasq.pid
dhcp-leasefile=${DIR}/dnsmasq.leases
no-hosts
dhcp-authoritative
log-facility=${DIR}/dnsmasq.log
port=0
no-resolv
dhcp-range=set:v4,10.10.0.0,static,255.255.255.0,12h
dhcp-option=tag:v4,option:router
dhcp-option=tag:v4,option:mtu,1450
dhcp-option=tag:v4,option:dns-server
enable-ra
dhcp-range=set:v6,::,constructor:flbrad9af9a2ebc,ra-only,64,12h
ra-param=flbrad9af9a2ebc,mtu:1450,60,0
dhcp-hostsfile=${RUN}/dhcp-hosts
`,
      hosts: '52:54:00:12:34:56,10.10.0.5,web-1\n',
      names: '',
    });
  });

  it("with DHCPv6: managed RAs without SLAAC, and the NIC's pinned IPv6 address beside its IPv4 one", () => {
    const files = dnsmasqFiles({ ...NET, dhcpv6: true }, [NIC], PATHS, [REMOTE]);
    const base = dnsmasqFiles(NET, [NIC], PATHS, [REMOTE]);
    const lines = files.conf.split('\n');
    const baseLines = base.conf.split('\n');
    expect(lines.filter((l) => !baseLines.includes(l))).toEqual([
      'dhcp-range=set:v6,::,constructor:flbrad9af9a2ebc,static,64,12h',
    ]);
    expect(baseLines.filter((l) => !lines.includes(l))).toEqual([
      'dhcp-range=set:v6,::,constructor:flbrad9af9a2ebc,ra-stateless,64,12h',
    ]);
    expect(files.hosts).toBe('52:54:00:12:34:56,10.10.0.5,[fd00:10::5054:ff:fe12:3456],web-1\n');
    // Without DNS the guests are told of no DNS server over DHCPv6 either.
    expect(dnsmasqFiles({ ...NET, dhcpv6: true, dns: false }, [NIC], PATHS).conf).toContain(
      '\ndhcp-option=option6:dns-server\n',
    );
    // An IPv6-only NIC gets a line of its own.
    expect(dnsmasqFiles({ ...NET, dhcpv6: true }, [{ ...NIC, ipv4: null }], PATHS).hosts).toBe(
      '52:54:00:12:34:56,[fd00:10::5054:ff:fe12:3456],web-1\n',
    );
  });

  it('refuses DHCPv6 without IPv6 or on a public network', () => {
    expect(() => dnsmasqFiles({ ...NET, dhcpv6: true, ipv6: null }, [NIC], PATHS)).toThrow(/DHCPv6/);
    expect(() => dnsmasqFiles({ ...NET, dhcpv6: 'yes' as unknown as boolean }, [NIC], PATHS)).toThrow(/true or false/);
  });

  it("on a public network: floe's NICs only, not authoritative, the LAN's router, no RAs, no DNS unless asked", () => {
    const pub: NetSpec = {
      id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1CB',
      kind: 'public',
      physical: 'eth1',
      vni: 102,
      ipv4: { cidr: '203.0.113.0/24', gateway: '203.0.113.1' },
      ipv6: { cidr: '2001:db8::/64', gateway: null },
      mtu: 1500,
      gatewayMode: 'vm',
      dns: false,
      peers: [],
    };
    const nic: NicSpec = { ...NIC, networkId: pub.id, ipv4: '203.0.113.50', ipv6: null, hostname: 'pub-1' };
    const paths = dnsmasqPaths('/var/lib/floe/agent', pub.id, '/run/floe/dnsmasq-test');
    const dir = '/var/lib/floe/agent/net/net_01JB8X0Q3E6M2T9K4V7W5YB1CB';
    const run = '/run/floe/dnsmasq-test/net_01JB8X0Q3E6M2T9K4V7W5YB1CB';
    expect(dnsmasqFiles(pub, [nic], paths)).toEqual({
      conf: `# floe network net_01JB8X0Q3E6M2T9K4V7W5YB1CB; generated, do not edit
interface=flbr079b079bcba
bind-dynamic
except-interface=lo
pid-file=${dir}/dnsmasq.pid
dhcp-leasefile=${dir}/dnsmasq.leases
no-hosts
dhcp-ignore=tag:!known
log-facility=${dir}/dnsmasq.log
port=0
no-resolv
dhcp-range=set:v4,203.0.113.0,static,255.255.255.0,12h
dhcp-option=tag:v4,option:router,203.0.113.1
dhcp-option=tag:v4,option:mtu,1500
dhcp-option=tag:v4,option:dns-server
dhcp-hostsfile=${run}/dhcp-hosts
`,
      hosts: '52:54:00:12:34:56,203.0.113.50,pub-1\n',
      names: '',
    });
    const withDns = dnsmasqFiles({ ...pub, dns: true }, [nic], paths);
    expect(withDns.conf).not.toContain('port=0');
    expect(withDns.conf).toContain(`\naddn-hosts=${run}/names\n`);
    expect(withDns.names).toBe('203.0.113.50 pub-1\n');
  });

  it('refuses values that would inject config lines or escape the state directory', () => {
    expect(() => dnsmasqFiles(NET, [{ ...NIC, hostname: 'web\nserver=1.1.1.1' }], PATHS)).toThrow(/not a DNS label/);
    expect(() => dnsmasqFiles(NET, [], PATHS, [{ ...REMOTE, ipv4: '10.10.0.7\n10.0.0.1 evil' }])).toThrow();
    expect(() => dnsmasqFiles({ ...NET, ipv4: { cidr: '10.10.0.0/24\nx', gateway: null } }, [], PATHS)).toThrow(
      /prefix/,
    );
    expect(() => dnsmasqPaths('/var/lib/floe', '../x')).toThrow(/malformed/);
    expect(() => dnsmasqPaths('relative', NET.id)).toThrow(/absolute/);
    expect(() => dnsmasqPaths('/var/lib/floe', NET.id, '/run/a b')).toThrow(/without spaces/);
  });

  it('keeps what dnsmasq re-reads unprivileged under /run, one directory per agent', () => {
    expect(dnsmasqPaths('/var/lib/floe/agent', NET.id).hostsFile).toBe(
      `${dnsmasqRunDir('/var/lib/floe/agent')}/${NET.id}/dhcp-hosts`,
    );
    expect(dnsmasqRunDir('/var/lib/floe/agent')).toMatch(/^\/run\/floe\/dnsmasq-[0-9a-f]{12}$/);
    expect(dnsmasqRunDir('/var/lib/floe/agent')).not.toBe(dnsmasqRunDir('/srv/floe/agent'));
  });
});

describe('dnsmasqFiles: the route to the metadata service', () => {
  const routes = (net: NetSpec) =>
    dnsmasqFiles(net, [NIC], PATHS)
      .conf.split('\n')
      .filter((l) => l.includes('option:router') || l.includes('classless'));

  it('with a host gateway the default route reaches the host: no option 121', () => {
    expect(routes(NET)).toEqual(['dhcp-option=tag:v4,option:router,10.10.0.1']);
  });

  it("without a router: a route to 169.254.169.254 via the host's address on the bridge", () => {
    const net: NetSpec = {
      ...NET,
      gatewayMode: 'none',
      ipv4: { cidr: '10.10.0.0/24', gateway: null },
      ipv6: null,
      hostAddrs: ['10.10.0.1/24'],
    };
    expect(routes(net)).toEqual([
      'dhcp-option=tag:v4,option:router',
      'dhcp-option=tag:v4,option:classless-static-route,169.254.169.254/32,10.10.0.1',
    ]);
  });

  it('with a router VM: the metadata route via the host and the default route via the VM, since option 121 overrides option 3', () => {
    const net: NetSpec = {
      ...NET,
      gatewayMode: 'vm',
      ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.254' },
      ipv6: null,
      hostAddrs: ['10.10.0.1/24'],
    };
    expect(routes(net)).toEqual([
      'dhcp-option=tag:v4,option:router,10.10.0.254',
      'dhcp-option=tag:v4,option:classless-static-route,169.254.169.254/32,10.10.0.1,0.0.0.0/0,10.10.0.254',
    ]);
  });

  it('on a public network the LAN router is the way: requests to it are handed to the host on the bridge', () => {
    const net: NetSpec = {
      ...NET,
      kind: 'public',
      physical: 'eth1',
      gatewayMode: 'vm',
      ipv4: { cidr: '192.0.2.0/24', gateway: '192.0.2.1' },
      ipv6: null,
      peers: [],
    };
    expect(routes(net)).toEqual(['dhcp-option=tag:v4,option:router,192.0.2.1']);
  });
});

describe('dnsmasqFiles: the routes to VPN networks the host serves as their gateway', () => {
  const routes = (net: NetSpec) =>
    dnsmasqFiles(net, [NIC], PATHS)
      .conf.split('\n')
      .filter((l) => l.includes('option:router') || l.includes('classless') || l.startsWith('ra-param'));
  const VPN = ['fd50::/64', '10.250.0.0/24', '192.168.77.0/24', 'fd77:1::/48'];

  it('without a router: each IPv4 prefix via the host, next to the metadata route; IPv6 ones have no RA option', () => {
    const net: NetSpec = {
      ...NET,
      gatewayMode: 'none',
      ipv4: { cidr: '10.10.0.0/24', gateway: null },
      ipv6: { cidr: 'fd00:10::/64', gateway: null },
      hostAddrs: ['10.10.0.1/24', 'fd00:10::1/64'],
      vpnRoutes: VPN,
    };
    expect(routes(net)).toEqual([
      'dhcp-option=tag:v4,option:router',
      'dhcp-option=tag:v4,option:classless-static-route,169.254.169.254/32,10.10.0.1,10.250.0.0/24,10.10.0.1,192.168.77.0/24,10.10.0.1',
      'ra-param=flbrad9af9a2ebc,mtu:1450,60,0',
    ]);
  });

  it('with a router VM: the VPN prefixes via the host, everything else via the VM', () => {
    const net: NetSpec = {
      ...NET,
      gatewayMode: 'vm',
      ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.254' },
      ipv6: null,
      hostAddrs: ['10.10.0.1/24'],
      vpnRoutes: VPN,
    };
    expect(routes(net)).toEqual([
      'dhcp-option=tag:v4,option:router,10.10.0.254',
      'dhcp-option=tag:v4,option:classless-static-route,169.254.169.254/32,10.10.0.1,10.250.0.0/24,10.10.0.1,192.168.77.0/24,10.10.0.1,0.0.0.0/0,10.10.0.254',
    ]);
  });

  it('with the host as the gateway its default route already leads there: nothing more', () => {
    expect(routes({ ...NET, vpnRoutes: VPN })).toEqual(routes(NET));
  });

  it('refuses a route that is not a prefix before anything is written', () => {
    const net: NetSpec = {
      ...NET,
      gatewayMode: 'none',
      hostAddrs: ['10.10.0.1/24'],
      vpnRoutes: ['10.250.0.0/24,1.2.3.4'],
    };
    expect(() => dnsmasqFiles(net, [NIC], PATHS)).toThrow(/vpn_routes\[0\]/);
  });
});
