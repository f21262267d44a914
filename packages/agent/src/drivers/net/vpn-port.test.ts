import { describe, expect, it } from 'vitest';
import { checkNet } from './checked-spec.js';
import { dnsmasqFiles, dnsmasqPaths } from './dnsmasq.js';
import { nftRuleset } from './ruleset.js';
import { NET } from './spec.fixtures.js';
import { fieldOf } from './testing.js';
import type { NetSpec } from './types.js';
import { linkLocal, vpnPortCommands, vpnTable, type ObservedVpnPort } from './vpn-port.js';

const PORT = 'flgwad9af9a2ebc';
const TABLE = String(vpnTable(NET.id));
const VPN = ['fd50::/64', '10.250.0.0/24'];
const GATEWAY: NetSpec = {
  ...NET,
  vpnRoutes: VPN,
  vpnPort: { mac: '02:aa:00:00:00:01', ipv4: '10.10.0.250', gateways: [] },
};
const MEMBER: NetSpec = {
  ...NET,
  vpnPort: {
    mac: '02:bb:00:00:00:02',
    ipv4: null,
    gateways: [{ mac: '02:aa:00:00:00:01', ipv4: '10.10.0.250', routes: [...VPN, '192.168.7.0/24'] }],
  },
};
const NOTHING: ObservedVpnPort = { addrs: [], neighbours: [], routes: [], tableRoutes: [], rules: [] };
const link = (mac: string) => ({ kind: 'macvlan', address: mac, up: true, lower: 'flbrad9af9a2ebc' });

describe('vpnPortCommands', () => {
  it("builds a gateway's port: its own address, the network in its table, rules for the VPN prefixes", () => {
    expect(vpnPortCommands(checkNet(GATEWAY), NOTHING)).toEqual([
      [
        'ip',
        'link',
        'add',
        PORT,
        'link',
        'flbrad9af9a2ebc',
        'address',
        '02:aa:00:00:00:01',
        'type',
        'macvlan',
        'mode',
        'bridge',
      ],
      ['ip', 'link', 'set', PORT, 'up'],
      ['ip', 'addr', 'replace', '10.10.0.250/32', 'dev', PORT],
      ['ip', 'route', 'replace', '10.10.0.0/24', 'dev', PORT, 'table', TABLE, 'src', '10.10.0.250', 'proto', 'static'],
      ['ip', 'route', 'replace', 'fd00:10::/64', 'dev', PORT, 'table', TABLE, 'proto', 'static'],
      ['ip', '-6', 'rule', 'add', 'from', 'fd50::/64', 'lookup', TABLE, 'pref', '20000'],
      ['ip', 'rule', 'add', 'from', '10.250.0.0/24', 'lookup', TABLE, 'pref', '20000'],
    ]);
  });

  it("builds another host's port: permanent neighbours for the gateway's port and routes through it", () => {
    expect(vpnPortCommands(checkNet(MEMBER), NOTHING)).toEqual([
      [
        'ip',
        'link',
        'add',
        PORT,
        'link',
        'flbrad9af9a2ebc',
        'address',
        '02:bb:00:00:00:02',
        'type',
        'macvlan',
        'mode',
        'bridge',
      ],
      ['ip', 'link', 'set', PORT, 'up'],
      ['ip', 'neigh', 'replace', '10.10.0.250', 'lladdr', '02:aa:00:00:00:01', 'dev', PORT, 'nud', 'permanent'],
      ['ip', 'neigh', 'replace', 'fe80::aa:ff:fe00:1', 'lladdr', '02:aa:00:00:00:01', 'dev', PORT, 'nud', 'permanent'],
      ['ip', 'route', 'replace', 'fd50::/64', 'via', 'fe80::aa:ff:fe00:1', 'dev', PORT, 'proto', 'static'],
      ['ip', 'route', 'replace', '10.250.0.0/24', 'via', '10.10.0.250', 'dev', PORT, 'onlink', 'proto', 'static'],
      ['ip', 'route', 'replace', '192.168.7.0/24', 'via', '10.10.0.250', 'dev', PORT, 'onlink', 'proto', 'static'],
    ]);
  });

  it('on a gateway host, routes the prefixes of VPN networks it does not serve to their gateways', () => {
    const both = vpnPortCommands(
      checkNet({
        ...GATEWAY,
        vpnPort: {
          ...GATEWAY.vpnPort!,
          gateways: [{ mac: '02:cc:00:00:00:03', ipv4: '10.10.0.251', routes: ['fd60::/48'] }],
        },
      }),
      NOTHING,
    );
    expect(both).toContainEqual([
      'ip',
      'route',
      'replace',
      'fd60::/48',
      'via',
      'fe80::cc:ff:fe00:3',
      'dev',
      PORT,
      'proto',
      'static',
    ]);
    expect(both).toContainEqual(['ip', 'rule', 'add', 'from', '10.250.0.0/24', 'lookup', TABLE, 'pref', '20000']);
    expect(both.filter((c) => c.includes('rule'))).toHaveLength(2);
  });

  it('changes nothing where the host has it all, as `ip -j` prints it back', () => {
    expect(
      vpnPortCommands(checkNet(GATEWAY), {
        link: link('02:aa:00:00:00:01'),
        addrs: ['10.10.0.250/32'],
        neighbours: [],
        routes: [],
        tableRoutes: ['10.10.0.0/24', 'fd00:10::/64'],
        rules: VPN,
      }),
    ).toEqual([]);
    expect(
      vpnPortCommands(checkNet(MEMBER), {
        link: link('02:bb:00:00:00:02'),
        addrs: [],
        neighbours: ['10.10.0.250', 'fe80::aa:ff:fe00:1'],
        routes: ['fd50::/64 via fe80::aa:ff:fe00:1', '10.250.0.0/24 via 10.10.0.250', '192.168.7.0/24 via 10.10.0.250'],
        tableRoutes: [],
        rules: [],
      }),
    ).toEqual([]);
  });

  it('removes what is no longer wanted: a stale route, neighbour, address and rule', () => {
    expect(
      vpnPortCommands(
        checkNet({
          ...MEMBER,
          vpnPort: { ...MEMBER.vpnPort!, gateways: [{ ...MEMBER.vpnPort!.gateways[0]!, routes: VPN }] },
        }),
        {
          link: link('02:bb:00:00:00:02'),
          addrs: ['10.10.0.9/32'],
          neighbours: ['10.10.0.250', 'fe80::aa:ff:fe00:1', '10.10.0.251'],
          routes: [
            'fd50::/64 via fe80::aa:ff:fe00:1',
            '10.250.0.0/24 via 10.10.0.250',
            '192.168.7.0/24 via 10.10.0.250',
          ],
          tableRoutes: [],
          rules: ['fd51::/64'],
        },
      ),
    ).toEqual([
      ['ip', 'addr', 'del', '10.10.0.9/32', 'dev', PORT],
      ['ip', 'neigh', 'del', '10.10.0.251', 'dev', PORT],
      ['ip', 'route', 'del', '192.168.7.0/24', 'dev', PORT],
      ['ip', '-6', 'rule', 'del', 'from', 'fd51::/64', 'lookup', TABLE, 'pref', '20000'],
    ]);
  });

  it('rebuilds a port with another MAC or lower device, and removes the port and its rules when none is wanted', () => {
    const cmds = vpnPortCommands(checkNet(GATEWAY), { ...NOTHING, link: link('02:aa:00:00:00:09'), rules: VPN });
    expect(cmds.slice(0, 2)).toEqual([
      ['ip', 'link', 'del', PORT],
      [
        'ip',
        'link',
        'add',
        PORT,
        'link',
        'flbrad9af9a2ebc',
        'address',
        '02:aa:00:00:00:01',
        'type',
        'macvlan',
        'mode',
        'bridge',
      ],
    ]);
    expect(cmds.filter((c) => c.includes('rule'))).toEqual([]);
    expect(
      vpnPortCommands(checkNet(NET), { ...NOTHING, link: link('02:aa:00:00:00:01'), rules: ['10.250.0.0/24'] }),
    ).toEqual([
      ['ip', 'link', 'del', PORT],
      ['ip', 'rule', 'del', 'from', '10.250.0.0/24', 'lookup', TABLE, 'pref', '20000'],
    ]);
  });

  it('makes no port where guests do not route through the host, nor for families the network lacks', () => {
    expect(vpnPortCommands(checkNet({ ...MEMBER, gatewayMode: 'none', hostAddrs: ['10.10.0.2/24'] }), NOTHING)).toEqual(
      [],
    );
    const v6only = vpnPortCommands(checkNet({ ...GATEWAY, ipv4: null }), NOTHING);
    expect(v6only.map((c) => c.slice(0, 4).join(' '))).toEqual([
      `ip link add ${PORT}`,
      `ip link set ${PORT}`,
      'ip route replace fd00:10::/64',
      'ip -6 rule add',
    ]);
  });

  it('names the link-local address the kernel gives a MAC (EUI-64), and a table per network', () => {
    expect(linkLocal('02:aa:00:00:00:01')).toBe('fe80::aa:ff:fe00:1');
    expect(linkLocal('52:54:00:12:34:56')).toBe('fe80::5054:ff:fe12:3456');
    expect(vpnTable(NET.id)).toBe(vpnTable(NET.id));
    expect(vpnTable(NET.id)).not.toBe(vpnTable('net_other'));
    expect(vpnTable(NET.id)).toBeGreaterThanOrEqual(0x100000);
  });

  it('refuses a malformed port before any command', () => {
    expect(fieldOf(() => checkNet({ ...MEMBER, vpnPort: { ...MEMBER.vpnPort!, mac: 'ff:ff:ff:ff:ff:ff' } }))).toBe(
      'vpn_port.mac',
    );
    expect(
      fieldOf(() =>
        checkNet({
          ...MEMBER,
          vpnPort: {
            ...MEMBER.vpnPort!,
            gateways: [{ mac: '02:aa:00:00:00:01', ipv4: '10.10.0.250', routes: ['10.250.0.0/24; reboot'] }],
          },
        }),
      ),
    ).toBe('vpn_port.gateways[0].routes[0]');
    expect(fieldOf(() => checkNet({ ...GATEWAY, vpnPort: { ...GATEWAY.vpnPort!, ipv4: 'fd00::1' } }))).toBe(
      'vpn_port.ipv4',
    );
  });
});

describe('what else a VPN port changes', () => {
  it('lets VPN interfaces and the port talk on a gateway, and the bridge reach the port elsewhere', () => {
    const forward = (spec: NetSpec) =>
      nftRuleset([spec], [])
        .split('\n')
        .filter((l) => l.includes(PORT))
        .map((l) => l.trim());
    expect(forward(GATEWAY)).toEqual([
      `iifname "fv*" oifname "${PORT}" accept`,
      `iifname "${PORT}" oifname "fv*" accept`,
    ]);
    expect(forward(MEMBER)).toEqual([`iifname "flbrad9af9a2ebc" oifname "${PORT}" accept`]);
    expect(forward(NET)).toEqual([]);
  });

  it("names the gateways' ports to guests of a network without a host gateway (DHCP option 121)", () => {
    const { conf } = dnsmasqFiles(
      {
        ...MEMBER,
        gatewayMode: 'none',
        ipv4: { cidr: '10.10.0.0/24', gateway: null },
        ipv6: null,
        hostAddrs: ['10.10.0.2/24'],
      },
      [],
      dnsmasqPaths('/var/lib/floe', NET.id, '/run/floe/x'),
    );
    const line = conf.split('\n').find((l) => l.includes('classless-static-route'));
    expect(line).toContain('10.250.0.0/24,10.10.0.250');
    expect(line).toContain('192.168.7.0/24,10.10.0.250');
    expect(line).not.toContain('fd50');
  });
});
