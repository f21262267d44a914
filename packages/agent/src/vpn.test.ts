import type { DesiredVpn } from '@floe/api';
import { describe, expect, it } from 'vitest';
import { vpnIfName } from './drivers/vpn/commands.js';
import { FakeVpnDriver } from './drivers/vpn/fake.js';
import { VpnReconciler } from './vpn.js';

const K = (c: string) => `${c.repeat(43)}=`;
const vpn = (id: string, keys: string[]): DesiredVpn => ({
  id,
  project: 'p',
  listen_port: 51820,
  private_key: K('Q'),
  addresses: ['fd50::1/64', '10.250.0.1/24'],
  reach: ['fd50::/64', '10.250.0.0/24'],
  peers: keys.map((k, i) => ({ id: `vpeer_${i}`, public_key: k, allowed_ips: [`fd50::${i + 2}/128`] })),
});

describe('VPN reconciler', () => {
  it('builds one interface per VPN network, changes peers in place and removes what went', async () => {
    const driver = new FakeVpnDriver();
    const r = new VpnReconciler({ driver });
    r.setDesired([vpn('vnet_a', [K('A'), K('E')]), vpn('vnet_b', [])], { full: true });
    await r.whenIdle();
    const a = vpnIfName('vnet_a');
    expect(await driver.list()).toEqual([a, vpnIfName('vnet_b')].sort());
    expect(driver.filtered).toEqual([a, vpnIfName('vnet_b')].sort());
    const session = driver.sessions.get(a)!.get(K('A'));
    r.setDesired([vpn('vnet_a', [K('A'), K('I')])], { full: true });
    await r.whenIdle();
    expect(await driver.list()).toEqual([a]);
    expect([...driver.sessions.get(a)!.keys()].sort()).toEqual([K('A'), K('I')].sort());
    expect(driver.sessions.get(a)!.get(K('A'))).toBe(session);
    expect((await r.stats('vnet_a'))!.map((p) => p.publicKey).sort()).toEqual([K('A'), K('I')].sort());
    expect(await r.stats('vnet_b')).toBeNull();
    await r.stop();
  });
});
