import { decodeAgentMessage, type DesiredVpn } from '@floe/api';
import { describe, expect, it } from 'vitest';
import { vpnIfName } from './drivers/vpn/commands.js';
import { FakeVpnDriver } from './drivers/vpn/fake.js';
import { countersOf, VpnReconciler } from './vpn.js';

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

  it('answers vpn.stats.get with checked counters, and says why it cannot', async () => {
    const driver = new FakeVpnDriver();
    const r = new VpnReconciler({ driver });
    r.setDesired([vpn('vnet_a', [K('A'), K('E')])], { full: true });
    await r.whenIdle();
    const answer = await r.answerStats('rq1', 'vnet_a');
    expect(answer).toEqual({
      type: 'vpn.stats',
      request_id: 'rq1',
      vpn_network_id: 'vnet_a',
      peers: [K('A'), K('E')].map((k) => ({
        public_key: k,
        endpoint: null,
        latest_handshake: 0,
        rx_bytes: 0,
        tx_bytes: 0,
      })),
    });
    // What the agent sends passes the schema the control plane checks it with.
    expect(decodeAgentMessage(JSON.stringify(answer))).toEqual({ ok: true, value: answer });
    expect((await r.answerStats('rq2', 'vnet_b')).error?.code).toBe('invalid_state');
    expect((await r.answerStats('rq3', '../etc')).error?.code).toBe('validation_failed');
    await r.stop();
  });

  it('turns driver counters into wire counters', () => {
    expect(
      countersOf({
        publicKey: K('A'),
        endpoint: '198.51.100.7:40001',
        allowedIps: ['fd50::2/128'],
        latestHandshake: 1764000000,
        rxBytes: 1240,
        txBytes: 980,
      }),
    ).toEqual({
      public_key: K('A'),
      endpoint: '198.51.100.7:40001',
      latest_handshake: 1764000000,
      rx_bytes: 1240,
      tx_bytes: 980,
    });
  });

  it('changes what peers reach in place: every session goes on', async () => {
    const driver = new FakeVpnDriver();
    const r = new VpnReconciler({ driver });
    r.setDesired([vpn('vnet_a', [K('A'), K('E')])], { full: true });
    await r.whenIdle();
    const a = vpnIfName('vnet_a');
    const before = new Map(driver.sessions.get(a));
    r.setDesired([{ ...vpn('vnet_a', [K('A'), K('E')]), reach: ['fd50::/64', '10.250.0.0/24', '10.40.0.0/24'] }], {
      full: true,
    });
    await r.whenIdle();
    expect(driver.interfaces.get(a)!.reach).toContain('10.40.0.0/24');
    expect(driver.sessions.get(a)).toEqual(before);
    await r.stop();
  });
});
