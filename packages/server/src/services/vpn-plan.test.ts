import { FloeError } from '@floe/api';
import { describe, expect, it } from 'vitest';
import {
  canonicalSubnets,
  firstOverlap,
  freePeerIndex,
  freeSlot,
  networkPlan,
  parseRange,
  peerAddresses,
  poolCapacity,
  poolSpecFrom,
  rangeText,
  wgQuickConfig,
} from './vpn-plan.js';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as FloeError).code;
  }
  return null;
};

describe('VPN address plan', () => {
  const pool = poolSpecFrom({
    ipv6: 'FD50:0::/40',
    network_prefix: 48,
    ipv4: '10.250.0.0/16',
    ipv4_prefix: 24,
    endpoint: 'vpn.example.org',
    hosts: ['host_1'],
  });

  it('normalises a pool and counts its networks by the smallest of prefixes and ports', () => {
    expect(pool).toEqual({
      ipv6: 'fd50::/40',
      network_prefix: 48,
      ipv4: '10.250.0.0/16',
      ipv4_prefix: 24,
      hosts: ['host_1'],
      listen_port: 51820,
      endpoint: 'vpn.example.org',
    });
    expect(poolCapacity(pool)).toBe(256);
    expect(poolCapacity({ ...pool, ipv4: null, ipv4_prefix: null })).toBe(256);
    expect(poolCapacity({ ...pool, ipv4: null, ipv4_prefix: null, network_prefix: 64 })).toBe(65536 - 51820);
    expect(code(() => poolSpecFrom({ ipv6: 'fd50::/40', network_prefix: 32, endpoint: 'x', hosts: [] }))).toBe(
      'validation_failed',
    );
    expect(code(() => poolSpecFrom({ ipv6: '10.0.0.0/8', endpoint: 'x', hosts: [] }))).toBe('validation_failed');
  });

  it('gives network i the i-th prefixes, the gateway .1 and ::1, and port listen_port + i', () => {
    const p = networkPlan(pool, 5);
    expect(rangeText(p.ipv6)).toBe('fd50:0:5::/48');
    expect(rangeText(p.ipv4!)).toBe('10.250.5.0/24');
    expect(p.gatewayAddresses).toEqual(['fd50:0:5::1/48', '10.250.5.1/24']);
    expect(p.endpoint).toBe('vpn.example.org:51825');
    expect(networkPlan({ ...pool, endpoint: '2001:db8::1' }, 0).endpoint).toBe('[2001:db8::1]:51820');
    expect(peerAddresses(p, 2)).toEqual({ ipv6: 'fd50:0:5::2/128', ipv4: '10.250.5.2/32' });
  });

  it('takes the lowest free slot and peer index, and says when none is left', () => {
    expect(freeSlot([0, 1, 3], 4, 'edge')).toBe(2);
    expect(code(() => freeSlot([0, 1, 2, 3], 4, 'edge'))).toBe('vpn_pool_exhausted');
    const small = networkPlan({ ...pool, ipv4_prefix: 30 }, 0);
    expect(freePeerIndex([], small, 'office')).toBe(2);
    expect(code(() => freePeerIndex([2], small, 'office'))).toBe('vpn_pool_exhausted');
  });

  it('finds overlaps within a family only', () => {
    const a = [parseRange('fd50::/40', 'x'), parseRange('10.250.0.0/16', 'x')];
    expect(firstOverlap(a, [parseRange('fd50:0:10::/44', 'x')])).not.toBeNull();
    expect(firstOverlap(a, [parseRange('fd51::/40', 'x'), parseRange('10.251.0.0/16', 'x')])).toBeNull();
    expect(firstOverlap(a, [parseRange('10.0.0.0/8', 'x')])).not.toBeNull();
    expect(canonicalSubnets(['192.168.1.0/24', 'FD00::/64']).map(rangeText)).toEqual(['192.168.1.0/24', 'fd00::/64']);
    expect(code(() => canonicalSubnets(['192.168.1.1/24']))).toBe('validation_failed');
  });

  it('writes a wg-quick file without DNS, with a placeholder when floe has no key', () => {
    expect(
      wgQuickConfig({
        privateKey: null,
        addresses: ['fd50::2/128', '10.250.0.2/32'],
        gatewayPublicKey: 'GW=',
        endpoint: 'vpn.example.org:51820',
        allowedIps: ['fd50::/48', '10.250.0.0/24'],
      }),
    ).toBe(`[Interface]
PrivateKey = <your private key>
Address = fd50::2/128, 10.250.0.2/32

[Peer]
PublicKey = GW=
Endpoint = vpn.example.org:51820
AllowedIPs = fd50::/48, 10.250.0.0/24
PersistentKeepalive = 25
`);
  });
});
