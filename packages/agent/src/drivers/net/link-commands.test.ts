import { describe, expect, it } from 'vitest';
import { fieldOf } from './testing.js';
import { gatewayMac } from './checked-spec.js';
import { bridgeCommands, networkCommands, tapCommands } from './link-commands.js';
import { NET, NIC } from './spec.fixtures.js';
import type { NetSpec, ObservedLink, ObservedNet } from './types.js';

describe('bridgeCommands', () => {
  it('builds bridge, unicast VXLAN, flood entries per peer and the host gateway', () => {
    expect(bridgeCommands(NET, { underlay: '192.0.2.1' })).toEqual([
      ['ip', 'link', 'add', 'flbrad9af9a2ebc', 'address', '02:ad:9a:f9:a2:eb', 'mtu', '1450', 'type', 'bridge'],
      [
        'ip',
        'link',
        'add',
        'flvxad9af9a2ebc',
        'mtu',
        '1450',
        'type',
        'vxlan',
        'id',
        '100',
        'local',
        '192.0.2.1',
        'dstport',
        '4789',
        'nolearning',
      ],
      ['ip', 'link', 'set', 'flvxad9af9a2ebc', 'master', 'flbrad9af9a2ebc', 'up'],
      ['ip', 'addr', 'replace', '10.10.0.1/24', 'dev', 'flbrad9af9a2ebc'],
      ['ip', 'addr', 'replace', 'fd00:10::1/64', 'dev', 'flbrad9af9a2ebc', 'nodad'],
      ['ip', 'link', 'set', 'flbrad9af9a2ebc', 'up'],
      ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flvxad9af9a2ebc', 'dst', '192.0.2.2'],
      ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flvxad9af9a2ebc', 'dst', '192.0.2.3'],
    ]);
  });

  it('puts no address on the bridge unless the host is the gateway', () => {
    const cmds = bridgeCommands({ ...NET, gatewayMode: 'vm', peers: [] }, { underlay: 'fd00:ff::1' });
    expect(cmds).toEqual([
      ['ip', 'link', 'add', 'flbrad9af9a2ebc', 'address', '02:ad:9a:f9:a2:eb', 'mtu', '1450', 'type', 'bridge'],
      [
        'ip',
        'link',
        'add',
        'flvxad9af9a2ebc',
        'mtu',
        '1450',
        'type',
        'vxlan',
        'id',
        '100',
        'local',
        'fd00:ff::1',
        'dstport',
        '4789',
        'nolearning',
      ],
      ['ip', 'link', 'set', 'flvxad9af9a2ebc', 'master', 'flbrad9af9a2ebc', 'up'],
      ['ip', 'link', 'set', 'flbrad9af9a2ebc', 'up'],
    ]);
  });

  it('validates every value before it reaches ip', () => {
    expect(fieldOf(() => bridgeCommands({ ...NET, vni: 0 }, { underlay: '192.0.2.1' }))).toBe('vni');
    expect(fieldOf(() => bridgeCommands({ ...NET, vni: 1 << 24 }, { underlay: '192.0.2.1' }))).toBe('vni');
    expect(fieldOf(() => bridgeCommands({ ...NET, mtu: 1200 }, { underlay: '192.0.2.1' }))).toBe('mtu');
    expect(fieldOf(() => bridgeCommands({ ...NET, peers: ['192.0.2.2 dev lo'] }, { underlay: '192.0.2.1' }))).toBe(
      'peers[0]',
    );
    expect(fieldOf(() => bridgeCommands(NET, { underlay: 'eth0' }))).toBe('underlay');
    expect(fieldOf(() => bridgeCommands({ ...NET, natInterface: 'eth0 x' }, { underlay: '192.0.2.1' }))).toBe(
      'nat_interface',
    );
    expect(
      fieldOf(() =>
        bridgeCommands({ ...NET, ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.1/24' } }, { underlay: '192.0.2.1' }),
      ),
    ).toBe('ipv4.gateway');
    expect(
      fieldOf(() => bridgeCommands({ ...NET, ipv4: { cidr: 'fd00::/64', gateway: null } }, { underlay: '192.0.2.1' })),
    ).toBe('ipv4.cidr');
    expect(fieldOf(() => bridgeCommands({ ...NET, ipv4: null, ipv6: null }, { underlay: '192.0.2.1' }))).toBe(
      'gateway',
    );
    expect(fieldOf(() => bridgeCommands({ ...NET, gatewayMode: 'nat' as 'host' }, { underlay: '192.0.2.1' }))).toBe(
      'gateway_mode',
    );
  });
});

describe('networkCommands', () => {
  const link = (name: string, kind: string | null, extra: Partial<ObservedLink> = {}): ObservedLink => ({
    name,
    kind,
    master: null,
    mtu: 1450,
    up: true,
    address: '00:00:00:00:00:00',
    vni: null,
    local: null,
    ...extra,
  });
  const healthy: ObservedNet = {
    bridge: link('flbrad9af9a2ebc', 'bridge', { address: '02:ad:9a:f9:a2:eb' }),
    vxlan: link('flvxad9af9a2ebc', 'vxlan', { master: 'flbrad9af9a2ebc', vni: 100, local: '192.0.2.1' }),
    bridgeAddrs: ['10.10.0.1/24', 'fd00:10::1/64', 'fe80::ad:9aff:fef9:a2eb/64'],
    floods: ['192.0.2.2', '192.0.2.3'],
    ports: [link('fltp2b9227216a2', 'tun', { master: 'flbrad9af9a2ebc' })],
  };

  it('runs nothing when the host already has it all', () => {
    expect(networkCommands(NET, healthy, '192.0.2.1')).toEqual([]);
  });

  it('builds everything on a fresh host, as bridgeCommands', () => {
    expect(
      networkCommands(
        NET,
        { bridge: undefined, vxlan: undefined, bridgeAddrs: [], floods: [], ports: [] },
        '192.0.2.1',
      ),
    ).toEqual(bridgeCommands(NET, { underlay: '192.0.2.1' }));
  });

  it('repairs only what drifted: a lost address, a peer that left, a stale flood entry, a port out of its bridge, a bridge that went down', () => {
    const drifted: ObservedNet = {
      ...healthy,
      bridge: { ...healthy.bridge!, up: false },
      bridgeAddrs: ['fd00:10::1/64'],
      floods: ['192.0.2.2', '192.0.2.9'],
      ports: [{ ...healthy.ports[0]!, master: null }],
    };
    expect(networkCommands({ ...NET, peers: ['192.0.2.2', '192.0.2.3'] }, drifted, '192.0.2.1')).toEqual([
      ['ip', 'addr', 'replace', '10.10.0.1/24', 'dev', 'flbrad9af9a2ebc'],
      ['ip', 'link', 'set', 'flbrad9af9a2ebc', 'up'],
      ['ip', 'link', 'set', 'fltp2b9227216a2', 'mtu', '1450', 'master', 'flbrad9af9a2ebc', 'up'],
      ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flvxad9af9a2ebc', 'dst', '192.0.2.3'],
      ['bridge', 'fdb', 'del', '00:00:00:00:00:00', 'dev', 'flvxad9af9a2ebc', 'dst', '192.0.2.9'],
    ]);
  });

  it('rebuilds a bridge deleted by hand, with its VXLAN device, entries and ports', () => {
    const gone: ObservedNet = {
      bridge: undefined,
      vxlan: undefined,
      bridgeAddrs: [],
      floods: [],
      ports: [{ ...healthy.ports[0]!, master: null, up: false }],
    };
    expect(networkCommands(NET, gone, '192.0.2.1')).toEqual([
      ...bridgeCommands(NET, { underlay: '192.0.2.1' }).filter((c) => c[0] === 'ip'),
      ['ip', 'link', 'set', 'fltp2b9227216a2', 'mtu', '1450', 'master', 'flbrad9af9a2ebc', 'up'],
      ...bridgeCommands(NET, { underlay: '192.0.2.1' }).filter((c) => c[0] === 'bridge'),
    ]);
  });

  it("replaces a VXLAN device with another VNI or source; fixes the bridge's MAC and MTU in place", () => {
    const other: ObservedNet = {
      ...healthy,
      bridge: { ...healthy.bridge!, mtu: 1500 },
      vxlan: { ...healthy.vxlan!, vni: 7 },
    };
    expect(networkCommands(NET, other, '192.0.2.1')).toEqual([
      ['ip', 'link', 'set', 'flbrad9af9a2ebc', 'address', '02:ad:9a:f9:a2:eb', 'mtu', '1450'],
      ['ip', 'link', 'del', 'flvxad9af9a2ebc'],
      [
        'ip',
        'link',
        'add',
        'flvxad9af9a2ebc',
        'mtu',
        '1450',
        'type',
        'vxlan',
        'id',
        '100',
        'local',
        '192.0.2.1',
        'dstport',
        '4789',
        'nolearning',
      ],
      ['ip', 'link', 'set', 'flvxad9af9a2ebc', 'master', 'flbrad9af9a2ebc', 'up'],
      // The new device starts without entries.
      ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flvxad9af9a2ebc', 'dst', '192.0.2.2'],
      ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flvxad9af9a2ebc', 'dst', '192.0.2.3'],
    ]);
  });

  it("puts the host's DHCP addresses on the bridge in none and vm mode, checked against the network", () => {
    const none: NetSpec = {
      ...NET,
      gatewayMode: 'none',
      ipv4: { cidr: '10.10.0.0/24', gateway: null },
      ipv6: { cidr: 'fd00:10::/64', gateway: null },
      hostAddrs: ['10.10.0.1/24', 'fd00:10::1/64'],
    };
    expect(networkCommands(none, { ...healthy, bridgeAddrs: [] }, '192.0.2.1')).toEqual([
      ['ip', 'addr', 'replace', '10.10.0.1/24', 'dev', 'flbrad9af9a2ebc'],
      ['ip', 'addr', 'replace', 'fd00:10::1/64', 'dev', 'flbrad9af9a2ebc', 'nodad'],
    ]);
    expect(networkCommands(none, healthy, '192.0.2.1')).toEqual([]);
    expect(fieldOf(() => networkCommands({ ...none, hostAddrs: ['10.10.0.1/16'] }, healthy, '192.0.2.1'))).toBe(
      'host_addrs[0]',
    );
    expect(fieldOf(() => networkCommands({ ...none, hostAddrs: ['10.10.0.1 dev lo/24'] }, healthy, '192.0.2.1'))).toBe(
      'host_addrs[0]',
    );
    expect(fieldOf(() => networkCommands({ ...NET, hostAddrs: ['10.10.0.1/24'] }, healthy, '192.0.2.1'))).toBe(
      'host_addrs',
    );
  });

  it('refuses to take over an interface of that name that is no bridge', () => {
    expect(() => networkCommands(NET, { ...healthy, bridge: link('flbrad9af9a2ebc', 'dummy') }, '192.0.2.1')).toThrow(
      /not a bridge/,
    );
  });
});

describe('tapCommands', () => {
  it('creates a persistent tap and plugs it into the bridge with the network MTU', () => {
    expect(tapCommands(NIC, NET)).toEqual([
      ['ip', 'tuntap', 'add', 'dev', 'fltp2b9227216a2', 'mode', 'tap'],
      ['ip', 'link', 'set', 'fltp2b9227216a2', 'mtu', '1450', 'master', 'flbrad9af9a2ebc', 'up'],
    ]);
    expect(fieldOf(() => tapCommands({ ...NIC, mac: 'zz:54:00:12:34:56' }, NET))).toBe('nic.mac');
    expect(fieldOf(() => tapCommands({ ...NIC, hostname: 'a,b' }, NET))).toBe('nic.hostname');
  });

  it('derives one locally administered gateway MAC per network', () => {
    expect(gatewayMac(NET.id)).toBe('02:ad:9a:f9:a2:eb');
    expect(gatewayMac('net_other')).not.toBe(gatewayMac(NET.id));
  });
});
