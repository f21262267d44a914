import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Nic, VpnNetwork, VpnPeerCreated } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { ensureTestImage } from '@floe/testkit/guest-image';
import { dnsmasqRunDir } from '../../packages/agent/src/drivers/net/dnsmasq.js';
import { vpnPortName } from '../../packages/agent/src/drivers/net/names.js';
import type { TestControlPlane } from '../../packages/server/src/testing.js';
import { eventually, kill } from './helpers.js';
import { GuestShell, Namespaces, type startAgentIn } from './netns.js';
import { startTwoHosts } from './vm-host.js';
import { routesByDhcp, wireguardForTests } from './wireguard.js';

const { mode, missing } = await wireguardForTests('the WireGuard end-to-end test across hosts');

/**
 * A VPN reaches VMs on hosts other than its gateway. Two agents in namespaces: h1 is the pool's
 * gateway and runs no VM; h2 runs the VMs. A stock wg-quick client on h1's WAN reaches them through
 * h1's router port on each network and the VXLAN between the hosts.
 *
 *   root ── cp links ── h1 ══ underlay ══ h2
 *                        │                 ├ lan (host gateway): VM r
 *               wan0 (198.51.100.1)        └ iso (no gateway):   VM s
 *                        └ client c
 */
describe.skipIf(missing !== null)(`a VPN into VMs on other hosts than its gateway (${mode})`, () => {
  const ns = new Namespaces();
  const base = `10.${200 + (randomBytes(1)[0]! % 50)}`;
  const tag = randomBytes(2).toString('hex');
  let h1 = '';
  let h2 = '';
  let c = '';
  let dir = '';
  let cp: TestControlPlane;
  let client: FloeClient;
  let office: VpnNetwork;
  let agents: ReturnType<typeof startAgentIn>[] = [];
  let agentDirs: string[] = [];
  const nics: Record<string, Nic> = {};
  const shells: Record<string, GuestShell> = {};
  let output = () => '';

  const ping = async (to: string) =>
    (await ns.exec(c, ['ping', '-c', '1', '-W', '2', to], { allowFail: true, timeoutMs: 8000 })).code === 0;
  const web = async (addr: string) => {
    const host = addr.includes(':') ? `[${addr}]` : addr;
    const r = await ns.exec(c, ['curl', '-s', '-g', '--max-time', '3', `http://${host}:7001/who`], {
      allowFail: true,
      timeoutMs: 10_000,
    });
    return r.code === 0 ? r.stdout.trim() : null;
  };
  const logsOf = async (name: string) => {
    const parts: Buffer[] = [];
    for await (const chunk of client.instances.logs(name)) parts.push(chunk);
    return Buffer.concat(parts).toString('utf8');
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-vpn-hosts-'));
    const hosts = await startTwoHosts(ns, base, {
      prepare: async (one) => {
        c = await ns.add('c');
        await ns.exec(one, ['ip', 'link', 'add', 'wan0', 'type', 'bridge']);
        await ns.exec(one, ['ip', 'addr', 'add', '198.51.100.1/24', 'dev', 'wan0']);
        await ns.exec(one, ['ip', 'link', 'set', 'wan0', 'up']);
        await ns.link({ ns: c, name: 'eth0', addr: '198.51.100.11/24' }, { ns: one, name: 'wc' });
        await ns.exec(one, ['ip', 'link', 'set', 'wc', 'master', 'wan0']);
      },
    });
    ({ h1, h2, cp, client } = hosts);
    agents = hosts.agents;
    output = hosts.output;
    agentDirs = Object.values(hosts.agentDirs);
    const hostIds = [hosts.hostIds.h1, hosts.hostIds.h2];
    // VMs only on h2.
    await client.hosts.update(hostIds[0]!, { spec: { schedulable: false } });
    await client.hosts.update(hostIds[1]!, { spec: { schedulable: true } });
    const image = await ensureTestImage();
    await client.images.create({ name: 'floe-test' });
    await client.images.upload('floe-test', image.path);
    await client.networks.create({ name: 'lan', ipv4: '10.44.0.0/24', ipv6: 'fd44::/64', gateway: 'host' });
    await client.networks.create({ name: 'iso', ipv4: '10.45.0.0/24', ipv6: 'fd45::/64', gateway: 'none' });
    await client.vpnPools.create({
      name: 'edge',
      ipv6: 'fd51::/40',
      network_prefix: 64,
      ipv4: '10.251.0.0/16',
      ipv4_prefix: 24,
      hosts: ['h1'],
      listen_port: 51820,
      endpoint: '198.51.100.1',
    });
    office = await client.vpnNetworks.create({ name: 'office', pool: 'edge', networks: ['lan', 'iso'] });
    const ops = [];
    for (const [name, net] of [
      ['r', 'lan'],
      ['s', 'iso'],
    ] as const) {
      const { operation } = await client.instances.create({
        name,
        image: 'floe-test',
        machine_type: 'nano',
        networks: [net],
      });
      ops.push(operation);
    }
    for (const op of ops)
      expect((await client.operations.wait(op.id, { timeoutMs: 180_000 })).status, output()).toBe('succeeded');
    for (const name of ['r', 's']) {
      nics[name] = (await client.instances.nics(name))[0]!;
      shells[name] = new GuestShell(client, name);
    }
    for (const name of ['r', 's']) {
      await eventually(
        async () => {
          const log = await logsOf(name);
          return log.includes('FLOE-TEST READY') && log.includes(`FLOE-TEST IP eth0 ${nics[name]!.ipv4}/24`);
        },
        `${name} booted with its address\n${output()}`,
        240_000,
      );
      const r = await shells[name]!.sh(
        `mkdir -p /tmp/w && echo vm-${name} > /tmp/w/who && busybox httpd -p 7001 -h /tmp/w`,
      );
      expect(r.code, r.out).toBe(0);
    }
  }, 600_000);

  afterAll(async () => {
    for (const s of Object.values(shells)) s.close();
    if (c !== '') {
      const links = await ns.exec(c, ['ip', '-j', 'link', 'show'], { allowFail: true });
      for (const l of JSON.parse(links.stdout || '[]') as { ifname: string }[])
        if (l.ifname.startsWith(`wg${tag}`)) await ns.exec(c, ['ip', 'link', 'del', l.ifname], { allowFail: true });
    }
    if (client)
      await Promise.all(['r', 's'].map((n) => client.instances.delete(n, { wait: 30 }).catch(() => undefined)));
    for (const a of agents) await kill(a);
    if (h1 !== '') {
      const links = await ns.exec(h1, ['ip', '-j', 'link', 'show'], { allowFail: true });
      for (const l of JSON.parse(links.stdout || '[]') as { ifname: string }[])
        if (/^fv[0-9a-f]{11}$/.test(l.ifname)) await ns.exec(h1, ['ip', 'link', 'del', l.ifname], { allowFail: true });
    }
    await cp?.close();
    await ns.cleanup();
    for (const d of agentDirs) await rm(dnsmasqRunDir(path.resolve(d)), { recursive: true, force: true });
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it('a stock wg-quick client reaches VMs on the other host over IPv4 and IPv6, through their security groups', async () => {
    const created: VpnPeerCreated = await client.vpnPeers.create({ name: 'laptop', vpn_network: 'office' });
    const file = path.join(dir, `wg${tag}c.conf`);
    await writeFile(file, created.config, { mode: 0o600 });
    const up = await ns.exec(c, ['wg-quick', 'up', file], { allowFail: true, timeoutMs: 20_000 });
    expect(up.code, up.stderr).toBe(0);
    // The gateway host has no VM, yet a port of its own on both networks; h2 has one on lan, routing to it.
    for (const net of ['lan', 'iso']) {
      const id = (await client.networks.get(net)).id;
      await eventually(
        async () => (await ns.exec(h1, ['ip', 'link', 'show', 'dev', vpnPortName(id)], { allowFail: true })).code === 0,
        `h1's port on ${net}\n${output()}`,
        30_000,
      );
    }
    const t0 = Date.now();
    await eventually(() => ping(nics.r!.ipv4!), `ping to r on h2 over IPv4\n${output()}`, 60_000);
    console.log(`first ping to a VM on the other host ${Date.now() - t0} ms after wg-quick up (${mode}, TCG guest)`);
    await eventually(() => ping(nics.r!.ipv6!), 'ping to r on h2 over IPv6', 30_000);
    // s routes nothing through its host: DHCP named the gateway's port on iso to it (option 121).
    // s routes nothing through its host: DHCP names the gateway's port on iso to it (option 121), not h2.
    const iso = await client.networks.get('iso');
    const answer = await routesByDhcp(shells.s!, office.ipv4!);
    const via = new RegExp(`${office.ipv4!.replace(/\./g, '\\.')} (\\S+)`).exec(answer)?.[1];
    expect(via).toMatch(/^10\.45\.0\./);
    expect(via).not.toBe(iso.status.host_ipv4);
    await eventually(() => ping(nics.s!.ipv4!), 'ping to s on iso over IPv4', 30_000);
    const routes = await shells.s!.sh('ip -4 route');
    expect(routes.out).toContain(office.ipv4!);

    // The VMs' security groups apply on their own host: 7001 is closed until a rule opens it to the VPN.
    expect(await web(nics.r!.ipv4!)).toBeNull();
    await client.securityGroups.addRule('default', {
      direction: 'ingress',
      protocol: 'tcp',
      port: '7001',
      remote_cidr: office.ipv4!,
    });
    await eventually(async () => (await web(nics.r!.ipv4!)) === 'vm-r', 'TCP to r after the rule', 30_000);
    await client.securityGroups.addRule('default', {
      direction: 'ingress',
      protocol: 'tcp',
      port: '7001',
      remote_cidr: office.ipv6,
    });
    await eventually(async () => (await web(nics.r!.ipv6!)) === 'vm-r', 'TCP to r over IPv6', 30_000);
    expect(await web(nics.s!.ipv4!)).toBe('vm-s');
  }, 300_000);

  it('disconnecting a network takes the route away on the other host', async () => {
    await client.vpnNetworks.update('office', { spec: { networks: ['iso'] } });
    const lanId = (await client.networks.get('lan')).id;
    await eventually(
      async () =>
        (await ns.exec(h2, ['ip', 'link', 'show', 'dev', vpnPortName(lanId)], { allowFail: true })).code !== 0,
      `h2's port on lan gone\n${output()}`,
      30_000,
    );
    expect(await ping(nics.r!.ipv4!)).toBe(false);
    expect(await ping(nics.s!.ipv4!)).toBe(true);
  }, 120_000);
});
