import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DesiredVpn, VpnNetwork, VpnNetworkStats, VpnPeerCreated } from '@floe/api';
import { hostExec } from '../../packages/agent/src/drivers/net/host-exec.js';
import { vpnIfName } from '../../packages/agent/src/drivers/vpn/commands.js';
import { LinuxVpnDriver } from '../../packages/agent/src/drivers/vpn/linux.js';
import { VpnReconciler } from '../../packages/agent/src/vpn.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { FakeAgent } from '../../packages/server/src/testing-agent.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { eventually } from './helpers.js';
import { Namespaces } from './netns.js';
import { wireguardForTests } from './wireguard.js';

/*
 * Peer stats and connected-network changes with real WireGuard, through a real agent link: the gateway
 * namespace's interface is built from the `desired` messages the control plane sends on the link, and
 * `GET /v1/vpn-networks/{id}/stats` is answered by the agent's VPN reconciler reading `wg show dump`
 * there. A stock wg-quick client dials in with the file floe printed.
 */

const { mode, missing } = await wireguardForTests('the VPN stats end-to-end test');

describe.skipIf(missing !== null)(`VPN peer stats and connected networks (${mode})`, () => {
  const ns = new Namespaces();
  const tag = randomBytes(2).toString('hex');
  let cp: TestControlPlane;
  let agent: FakeAgent;
  let reconciler: VpnReconciler;
  let dir: string;
  let gw: string;
  let client: string;
  let vpn: VpnNetwork;
  let laptop: VpnPeerCreated;
  const clientIf = `wg${tag}s`;

  const call = async (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
    injectJson(cp, method, url, body);
  const ok = async (method: 'GET' | 'POST' | 'PATCH', url: string, body?: unknown) => {
    const res = await call(method, url, body);
    if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  /** What the agent does with the `desired` VPN list it was sent: one pass of the reconciler. */
  const sync = async (check: (items: DesiredVpn[]) => boolean) => {
    reconciler.setDesired(await agent.latest('vpn', check, 10_000), { full: true });
    await reconciler.whenIdle();
  };
  /** The stats route, with the gateway's agent answering on the link as the agent's dispatcher does. */
  const stats = async (): Promise<{ body: VpnNetworkStats; ms: number }> => {
    const from = agent.messages.length;
    const t0 = Date.now();
    const pending = call('GET', `/v1/vpn-networks/${vpn.id}/stats`);
    const req = await agent.next('vpn.stats.get', from);
    agent.send(await reconciler.answerStats(req.request_id, req.vpn_network_id));
    const res = await pending;
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return { body: res.body as VpnNetworkStats, ms: Date.now() - t0 };
  };
  const ping = async (to: string) =>
    (await ns.exec(client, ['ping', '-c', '1', '-W', '1', to], { allowFail: true, timeoutMs: 5000 })).code === 0;
  const gatewayHandshake = async () => {
    const out = (await ns.exec(gw, ['wg', 'show', vpnIfName(vpn.id), 'latest-handshakes'])).stdout;
    return new Map(
      out
        .trim()
        .split('\n')
        .map((l) => l.split('\t') as [string, string]),
    ).get(laptop.peer.public_key);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-vpn-stats-'));
    cp = await startTestControlPlane(await storeTargets()[0]!.open());
    agent = await FakeAgent.connect(cp, 'gw', '198.51.100.1');
    gw = await ns.add('g');
    client = await ns.add('c');
    await ns.link(
      { ns: client, name: 'eth0', addr: '198.51.100.2/24' },
      { ns: gw, name: 'wan', addr: '198.51.100.1/24' },
    );
    // A "VM" on each of two private networks, the gateway their router.
    for (const [name, v4, n] of [
      ['lan', '10.31.0', 'a'],
      ['lab', '10.35.0', 'b'],
    ] as const) {
      await ok('POST', '/v1/networks', { name, ipv4: `${v4}.0/24`, ipv6: 'auto' });
      const vm = await ns.add(`v${n}`);
      await ns.link({ ns: vm, name: 'eth0', addr: `${v4}.10/24` }, { ns: gw, name: name, addr: `${v4}.1/24` });
      await ns.exec(vm, ['ip', 'route', 'add', 'default', 'via', `${v4}.1`]);
    }
    await ok('POST', '/v1/vpn-pools', {
      name: 'edge',
      ipv6: 'fd50::/40',
      network_prefix: 64,
      ipv4: '10.250.0.0/16',
      ipv4_prefix: 24,
      hosts: ['gw'],
      listen_port: 51820,
      endpoint: '198.51.100.1',
    });
    vpn = (await ok('POST', '/v1/vpn-networks', { name: 'office', pool: 'edge', networks: ['lan'] })) as VpnNetwork;
    laptop = (await ok('POST', '/v1/vpn-peers', { name: 'laptop', vpn_network: 'office' })) as VpnPeerCreated;
    await ok('POST', '/v1/vpn-peers', { name: 'idle', vpn_network: 'office' });
    reconciler = new VpnReconciler({ driver: new LinuxVpnDriver(mode!, hostExec(gw)) });
    await sync((items) => items.some((v) => v.id === vpn.id && v.peers.length === 2));
  }, 120_000);

  afterAll(async () => {
    await reconciler?.stop();
    if (client !== undefined) await ns.exec(client, ['ip', 'link', 'del', clientIf], { allowFail: true });
    if (gw !== undefined) {
      const driver = new LinuxVpnDriver(mode!, hostExec(gw));
      for (const name of await driver.list()) await driver.remove(name);
    }
    await new Promise((r) => setTimeout(r, 300));
    agent?.close();
    await ns.cleanup();
    await cp?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("reports a peer's handshake, endpoint and transfer from the gateway, and none for a peer that never came", async () => {
    const before = await stats();
    expect(before.body.peers.map((p) => [p.name, p.latest_handshake, p.rx_bytes])).toEqual([
      ['laptop', null, 0],
      ['idle', null, 0],
    ]);
    // The client comes in with the file floe printed.
    const file = path.join(dir, `${clientIf}.conf`);
    await writeFile(file, laptop.config, { mode: 0o600 });
    const t0 = Date.now();
    const up = await ns.exec(client, ['wg-quick', 'up', file], { allowFail: true, timeoutMs: 20_000 });
    expect(up.code, up.stderr).toBe(0);
    await eventually(() => ping('10.31.0.10'), 'the client reaches the VM on lan', 20_000);
    console.log(`wg-quick up to first ping through the gateway: ${Date.now() - t0} ms (${mode})`);
    const first = await stats();
    const [l, idle] = first.body.peers;
    expect(first.body.gateways).toEqual({ total: 1, answered: 1 });
    expect(l!.name).toBe('laptop');
    expect(l!.latest_handshake).not.toBeNull();
    expect(l!.handshake_age_seconds).toBeLessThan(30);
    expect(l!.endpoint).toMatch(/^198\.51\.100\.2:[0-9]+$/);
    expect(l!.rx_bytes).toBeGreaterThan(0);
    expect(l!.tx_bytes).toBeGreaterThan(0);
    expect(idle).toMatchObject({ name: 'idle', latest_handshake: null, endpoint: null, rx_bytes: 0, tx_bytes: 0 });
    // More traffic, more bytes: 20 pings of 1000 bytes each way.
    const burst = await ns.exec(client, ['ping', '-c', '20', '-i', '0.01', '-s', '1000', '-W', '1', '10.31.0.10'], {
      allowFail: true,
      timeoutMs: 15_000,
    });
    expect(burst.code, burst.stdout).toBe(0);
    const second = await stats();
    const l2 = second.body.peers[0]!;
    expect(l2.rx_bytes - l!.rx_bytes).toBeGreaterThanOrEqual(20 * 1000);
    expect(l2.tx_bytes - l!.tx_bytes).toBeGreaterThanOrEqual(20 * 1000);
    console.log(
      `stats through the control plane and the agent link: ${first.ms} ms, ${second.ms} ms; laptop rx ${l2.rx_bytes} B, tx ${l2.tx_bytes} B`,
    );
  }, 60_000);

  it('connects another network in place: the session goes on, and the new network is reached', async () => {
    await eventually(() => ping('10.31.0.10'), 'the client is in', 20_000);
    // The client routes lab into its tunnel already; the gateway does not let it through yet.
    const { stdout: gwKey } = await ns.exec(client, ['wg', 'show', clientIf, 'peers']);
    const allowed = (await ns.exec(client, ['wg', 'show', clientIf, 'allowed-ips'])).stdout.trim().split('\t')[1]!;
    await ns.exec(client, [
      'wg',
      'set',
      clientIf,
      'peer',
      gwKey.trim(),
      'allowed-ips',
      `${allowed.split(' ').join(',')},10.35.0.0/24`,
    ]);
    await ns.exec(client, ['ip', 'route', 'add', '10.35.0.0/24', 'dev', clientIf]);
    expect(await ping('10.35.0.10')).toBe(false);
    const handshake = await gatewayHandshake();
    expect(Number(handshake)).toBeGreaterThan(0);

    const t0 = Date.now();
    const patched = (await ok('PATCH', `/v1/vpn-networks/${vpn.id}`, {
      spec: { networks: ['lan', 'lab'] },
    })) as VpnNetwork;
    expect(patched.spec.networks).toHaveLength(2);
    await sync((items) => items.some((v) => v.id === vpn.id && v.reach.includes('10.35.0.0/24')));
    await eventually(() => ping('10.35.0.10'), 'the client reaches the VM on lab', 10_000);
    console.log(`connected network reachable ${Date.now() - t0} ms after the PATCH (${mode})`);
    // The same session: no new handshake was needed, and lan is still there.
    expect(await gatewayHandshake()).toBe(handshake);
    expect(await ping('10.31.0.10')).toBe(true);
    // The peer's file now routes lab too.
    const config = await cp.app.http.inject({
      method: 'GET',
      url: `/v1/vpn-peers/${laptop.peer.id}/config`,
      headers: { authorization: `Bearer ${cp.adminToken}` },
    });
    expect(config.body).toContain('10.35.0.0/24');
    // While connected, lab cannot be deleted.
    const del = await call('DELETE', '/v1/networks/lab');
    expect(del.body.error?.code).toBe('in_use');
  }, 60_000);
});
