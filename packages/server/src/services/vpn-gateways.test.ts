import { describe, expect, it } from 'vitest';
import { gatewayHosts, portFor, portMac, routesServedBy, type VpnLink } from './vpn-gateways.js';

const OFFICE: VpnLink = {
  hosts: ['hst_a', 'hst_b'],
  networks: ['net_lan', 'net_db'],
  routes: ['fd50::/48', '10.250.0.0/24'],
};
const SITE: VpnLink = { hosts: ['hst_c'], networks: ['net_lan'], routes: ['fd60::/48', '192.168.7.0/24'] };
const addresses = new Map([
  ['hst_a', '10.0.0.250'],
  ['hst_b', '10.0.0.251'],
  ['hst_c', '10.0.0.252'],
]);

describe('VPN gateway ports', () => {
  it('puts every host of every pool on the networks its VPN networks connect', () => {
    expect(gatewayHosts([OFFICE, SITE])).toEqual(
      new Map([
        ['net_lan', ['hst_a', 'hst_b', 'hst_c']],
        ['net_db', ['hst_a', 'hst_b']],
      ]),
    );
    expect(gatewayHosts([{ ...OFFICE, networks: [] }])).toEqual(new Map());
  });

  it("gives a gateway its address and another host the pools' first gateways to route through", () => {
    expect(portFor([OFFICE, SITE], 'net_lan', 'hst_x', addresses)).toEqual({
      mac: portMac('net_lan', 'hst_x'),
      ipv4: null,
      gateways: [
        { mac: portMac('net_lan', 'hst_a'), ipv4: '10.0.0.250', routes: OFFICE.routes },
        { mac: portMac('net_lan', 'hst_c'), ipv4: '10.0.0.252', routes: SITE.routes },
      ],
    });
    // hst_b serves OFFICE itself (second host of the pool) and routes SITE through hst_c.
    expect(portFor([OFFICE, SITE], 'net_lan', 'hst_b', addresses)).toEqual({
      mac: portMac('net_lan', 'hst_b'),
      ipv4: '10.0.0.251',
      gateways: [{ mac: portMac('net_lan', 'hst_c'), ipv4: '10.0.0.252', routes: SITE.routes }],
    });
    // No address yet (a network without IPv4): IPv6 only.
    expect(portFor([OFFICE], 'net_db', 'hst_a', new Map())).toEqual({
      mac: portMac('net_db', 'hst_a'),
      ipv4: null,
      gateways: [],
    });
    expect(portFor([OFFICE, SITE], 'net_other', 'hst_x', addresses)).toBeUndefined();
  });

  it('gives each host a MAC of its own on each network, stable and locally administered', () => {
    const macs = new Set(['hst_a', 'hst_b'].flatMap((h) => ['net_lan', 'net_db'].map((n) => portMac(n, h))));
    expect(macs.size).toBe(4);
    expect(portMac('net_lan', 'hst_a')).toBe(portMac('net_lan', 'hst_a'));
    expect(portMac('net_lan', 'hst_a')).toMatch(/^02(:[0-9a-f]{2}){5}$/);
  });

  it('gives a gateway the routes of the VPN networks it serves, by connected network, each once', () => {
    const DB: VpnLink = { hosts: ['hst_a'], networks: ['net_lan'], routes: ['fd52::/48', '10.250.0.0/24'] };
    expect(Object.fromEntries(routesServedBy([OFFICE, SITE, DB], 'hst_a', ['net_lan', 'net_db']))).toEqual({
      net_lan: ['fd50::/48', '10.250.0.0/24', 'fd52::/48'],
      net_db: ['fd50::/48', '10.250.0.0/24'],
    });
    expect(routesServedBy([OFFICE, SITE], 'hst_c', ['net_db']).size).toBe(0);
    expect(Object.fromEntries(routesServedBy([OFFICE, SITE], 'hst_c', ['net_lan']))).toEqual({ net_lan: SITE.routes });
  });
});
