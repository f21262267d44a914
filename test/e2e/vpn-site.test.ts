import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VpnNetwork } from '@floe/api';
import { detectWireguard, LinuxVpnDriver } from '../../packages/agent/src/drivers/vpn/linux.js';
import { hostExec } from '../../packages/agent/src/drivers/net/host-exec.js';
import { VpnReconciler } from '../../packages/agent/src/vpn.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import {
  injectJson,
  onlineTestHost,
  startTestControlPlane,
  type TestControlPlane,
} from '../../packages/server/src/testing.js';
import { eventually } from './helpers.js';
import { Namespaces } from './netns.js';

/*
 * Site-to-site between two floe installations: each has its own control plane and gateway (a
 * namespace each), and each adds the other's gateway as a peer carrying the networks behind it, with
 * the other's endpoint to dial. A "VM" namespace on each side then reaches the other side's.
 */

const mode = await detectWireguard();
const missing =
  process.getuid?.() !== 0 ? 'needs root' : mode === null ? 'no WireGuard (module or wireguard-go)' : null;
if (missing !== null) console.log(`skipping the site-to-site test: ${missing}`);

interface Site {
  cp: TestControlPlane;
  host: string;
  gw: string;
  vm: string;
  reconciler: VpnReconciler;
  vpn: VpnNetwork;
}

describe.skipIf(missing !== null)(`site-to-site over WireGuard (${mode})`, () => {
  const ns = new Namespaces();
  const sites: Record<'a' | 'b', Site> = {} as Record<'a' | 'b', Site>;
  const call = async (cp: TestControlPlane, method: 'GET' | 'POST', url: string, body?: unknown) => {
    const res = await injectJson(cp, method, url, body);
    if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const push = async (s: Site) => {
    s.reconciler.setDesired(await s.cp.app.services.vpn.desiredForHost(s.host), { full: true });
    await s.reconciler.whenIdle();
  };
  const ping = async (from: string, to: string) =>
    (await ns.exec(from, ['ping', '-c', '1', '-W', '1', to], { allowFail: true, timeoutMs: 5000 })).code === 0;

  beforeAll(async () => {
    const wan = { a: '203.0.113.1', b: '203.0.113.2' };
    const gws = { a: await ns.add('sa'), b: await ns.add('sb') };
    await ns.link({ ns: gws.a, name: 'wan', addr: `${wan.a}/24` }, { ns: gws.b, name: 'wan', addr: `${wan.b}/24` });
    for (const [side, n, pool6, pool4] of [
      ['a', 41, 'fd60::/40', '10.60.0.0/16'],
      ['b', 42, 'fd61::/40', '10.61.0.0/16'],
    ] as const) {
      const cp = await startTestControlPlane(await storeTargets()[0]!.open());
      const host = await onlineTestHost(cp.app, `gw-${side}`);
      const gw = gws[side];
      const vm = await ns.add(`m${side}`);
      await ns.link({ ns: vm, name: 'eth0', addr: `10.${n}.0.10/24` }, { ns: gw, name: 'lan', addr: `10.${n}.0.1/24` });
      await ns.exec(vm, ['ip', '-6', 'addr', 'add', `fd${n}::10/64`, 'dev', 'eth0', 'nodad']);
      await ns.exec(gw, ['ip', '-6', 'addr', 'add', `fd${n}::1/64`, 'dev', 'lan', 'nodad']);
      await ns.exec(vm, ['ip', 'route', 'add', 'default', 'via', `10.${n}.0.1`]);
      await ns.exec(vm, ['ip', '-6', 'route', 'add', 'default', 'via', `fd${n}::1`]);
      await call(cp, 'POST', '/v1/networks', { name: 'lan', ipv4: `10.${n}.0.0/24`, ipv6: `fd${n}::/64` });
      await call(cp, 'POST', '/v1/vpn-pools', {
        name: 'wan',
        ipv6: pool6,
        network_prefix: 64,
        ipv4: pool4,
        hosts: [`gw-${side}`],
        endpoint: wan[side],
      });
      const vpn = await call(cp, 'POST', '/v1/vpn-networks', { name: 'link', pool: 'wan', networks: ['lan'] });
      const reconciler = new VpnReconciler({ driver: new LinuxVpnDriver(mode!, hostExec(gw)) });
      sites[side] = { cp, host, gw, vm, reconciler, vpn };
    }
    // Each side adds the other's gateway: its key, the networks behind it, and where to dial it.
    for (const [me, other, n] of [
      ['a', 'b', 42],
      ['b', 'a', 41],
    ] as const) {
      await call(sites[me].cp, 'POST', '/v1/vpn-peers', {
        name: `site-${other}`,
        vpn_network: 'link',
        public_key: sites[other].vpn.public_key,
        subnets: [`10.${n}.0.0/24`, `fd${n}::/64`],
        endpoint: sites[other].vpn.endpoint,
      });
    }
    await push(sites.a);
    await push(sites.b);
  }, 120_000);

  afterAll(async () => {
    for (const s of Object.values(sites)) {
      await s.reconciler.stop();
      // Interfaces go first, so that wireguard-go daemons exit and remove their sockets.
      const driver = new LinuxVpnDriver(mode!, hostExec(s.gw));
      for (const name of await driver.list()) await driver.remove(name);
      await s.cp.close();
    }
    await ns.cleanup();
  });

  it('routes each side to the other: the VMs reach each other over IPv4 and IPv6', async () => {
    const routes = (await ns.exec(sites.a.gw, ['ip', 'route', 'show', '10.42.0.0/24'])).stdout;
    expect(routes).toContain('proto static');
    await eventually(() => ping(sites.a.vm, '10.42.0.10'), 'site A reaches site B', 20_000);
    // A first packet waits for neighbour discovery on every hop, which a loaded machine can stretch
    // past one ping's timeout: each direction gets a few tries, a missing route still fails them all.
    await eventually(() => ping(sites.b.vm, '10.41.0.10'), 'site B reaches site A', 10_000);
    await eventually(() => ping(sites.a.vm, 'fd42::10'), 'site A reaches site B over IPv6', 10_000);
    await eventually(() => ping(sites.b.vm, 'fd41::10'), 'site B reaches site A over IPv6', 10_000);
    // Not more than was given: a network nobody announced stays unreachable.
    expect(await ping(sites.a.vm, '10.43.0.10')).toBe(false);
  }, 60_000);
});
