import { describe, expect, it } from 'vitest';
import { poolSpecFrom } from './vpn-plan.js';
import { vpnRoutesByNetwork } from './vpn-routes.js';

describe('VPN routes of connected networks', () => {
  const pool = poolSpecFrom({
    ipv6: 'fd50::/40',
    network_prefix: 48,
    ipv4: '10.250.0.0/16',
    ipv4_prefix: 24,
    endpoint: 'vpn.example.org',
    hosts: ['host_1'],
  });
  const v6only = { ...pool, ipv4: null, ipv4_prefix: null };

  it("gives each connected network its VPN networks' prefixes and their peers' subnets, once each", () => {
    const routes = vpnRoutesByNetwork([
      { pool, slot: 3, networks: ['net_a', 'net_b'], subnets: ['192.168.77.0/24', 'fd77::/48'] },
      { pool: v6only, slot: 5, networks: ['net_b'], subnets: ['192.168.77.0/24'] },
      { pool, slot: 7, networks: [], subnets: ['172.16.0.0/12'] },
    ]);
    expect(Object.fromEntries(routes)).toEqual({
      net_a: ['fd50:0:3::/48', '10.250.3.0/24', '192.168.77.0/24', 'fd77::/48'],
      net_b: ['fd50:0:3::/48', '10.250.3.0/24', '192.168.77.0/24', 'fd77::/48', 'fd50:0:5::/48'],
    });
  });

  it('has nothing for no VPN network', () => {
    expect(vpnRoutesByNetwork([]).size).toBe(0);
  });
});
