import { describe, expect, it } from 'vitest';
import { FloeError } from '@floe/api';
import { bridgeCommands, gatewayMac, tapCommands } from './builders.js';
import { NET, NIC } from './spec.fixtures.js';
import type { NetSpec, NicSpec } from './types.js';


function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FloeError);
    return (err as FloeError).details?.field as string | undefined;
  }
  throw new Error('expected a validation error');
}

describe('bridgeCommands', () => {
  it('builds bridge, unicast VXLAN, flood entries per peer and the host gateway', () => {
    expect(bridgeCommands(NET, { underlay: '192.0.2.1' })).toEqual([
      ['ip', 'link', 'add', 'flbrad9af9a2ebc', 'address', '02:ad:9a:f9:a2:eb', 'mtu', '1450', 'type', 'bridge'],
      ['ip', 'link', 'add', 'flvxad9af9a2ebc', 'mtu', '1450', 'type', 'vxlan', 'id', '100', 'local', '192.0.2.1', 'dstport', '4789', 'nolearning'],
      ['ip', 'link', 'set', 'flvxad9af9a2ebc', 'master', 'flbrad9af9a2ebc', 'up'],
      ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flvxad9af9a2ebc', 'dst', '192.0.2.2'],
      ['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flvxad9af9a2ebc', 'dst', '192.0.2.3'],
      ['ip', 'addr', 'replace', '10.10.0.1/24', 'dev', 'flbrad9af9a2ebc'],
      ['ip', 'addr', 'replace', 'fd00:10::1/64', 'dev', 'flbrad9af9a2ebc', 'nodad'],
      ['ip', 'link', 'set', 'flbrad9af9a2ebc', 'up'],
    ]);
  });

  it('puts no address on the bridge unless the host is the gateway', () => {
    const cmds = bridgeCommands({ ...NET, gatewayMode: 'vm', peers: [] }, { underlay: 'fd00:ff::1' });
    expect(cmds).toEqual([
      ['ip', 'link', 'add', 'flbrad9af9a2ebc', 'address', '02:ad:9a:f9:a2:eb', 'mtu', '1450', 'type', 'bridge'],
      ['ip', 'link', 'add', 'flvxad9af9a2ebc', 'mtu', '1450', 'type', 'vxlan', 'id', '100', 'local', 'fd00:ff::1', 'dstport', '4789', 'nolearning'],
      ['ip', 'link', 'set', 'flvxad9af9a2ebc', 'master', 'flbrad9af9a2ebc', 'up'],
      ['ip', 'link', 'set', 'flbrad9af9a2ebc', 'up'],
    ]);
  });

  it('validates every value before it reaches ip', () => {
    expect(fieldOf(() => bridgeCommands({ ...NET, vni: 0 }, { underlay: '192.0.2.1' }))).toBe('vni');
    expect(fieldOf(() => bridgeCommands({ ...NET, vni: 1 << 24 }, { underlay: '192.0.2.1' }))).toBe('vni');
    expect(fieldOf(() => bridgeCommands({ ...NET, mtu: 1200 }, { underlay: '192.0.2.1' }))).toBe('mtu');
    expect(fieldOf(() => bridgeCommands({ ...NET, peers: ['192.0.2.2 dev lo'] }, { underlay: '192.0.2.1' }))).toBe('peers[0]');
    expect(fieldOf(() => bridgeCommands(NET, { underlay: 'eth0' }))).toBe('underlay');
    expect(fieldOf(() => bridgeCommands({ ...NET, uplink: 'eth0 x' }, { underlay: '192.0.2.1' }))).toBe('uplink');
    expect(fieldOf(() => bridgeCommands({ ...NET, ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.1/24' } }, { underlay: '192.0.2.1' }))).toBe('ipv4.gateway');
    expect(fieldOf(() => bridgeCommands({ ...NET, ipv4: { cidr: 'fd00::/64', gateway: null } }, { underlay: '192.0.2.1' }))).toBe('ipv4.cidr');
    expect(fieldOf(() => bridgeCommands({ ...NET, ipv4: null, ipv6: null }, { underlay: '192.0.2.1' }))).toBe('gateway');
    expect(fieldOf(() => bridgeCommands({ ...NET, gatewayMode: 'nat' as 'host' }, { underlay: '192.0.2.1' }))).toBe('gateway_mode');
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
