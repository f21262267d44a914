import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Nic, VpnNetwork, VpnPeerCreated } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { dnsmasqRunDir } from '../../packages/agent/src/drivers/net/dnsmasq.js';
import { detectWireguard } from '../../packages/agent/src/drivers/vpn/linux.js';
import type { TestControlPlane } from '../../packages/server/src/testing.js';
import { eventually, kill } from './helpers.js';
import { GuestShell, Namespaces, startAgentIn } from './netns.js';
import { routesByDhcp } from './wireguard.js';
import { startVmHost } from './vm-host.js';

const have = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const mode = await detectWireguard();
const skip =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces)'
    : !have('qemu-system-x86_64', '--version')
      ? 'qemu-system-x86_64 is not installed'
      : mode === null
        ? 'neither the wireguard module nor wireguard-go is installed'
        : !have('sh', '-c', 'command -v wg-quick && command -v curl')
          ? 'wg-quick (wireguard-tools) or curl is not installed'
          : null;
if (skip && !process.env.CI) console.warn(`skipping the WireGuard end-to-end tests with real VMs: ${skip}`);

/**
 * WireGuard into private networks with real VMs (QEMU, TCG): one agent in a namespace standing in for
 * the host is the VPN gateway of a pool and runs the VMs; clients in namespaces of their own, on the
 * host's WAN, bring up the wg-quick files floe printed with stock wg-quick.
 *
 *   root ── cp link ── h1 ── wan0 (198.51.100.1, the pool's endpoint) ── clients a1, b1
 *                        └── lan (host gateway): VM a · iso (no gateway): VM n
 *
 * Tenant A (the default project) connects its VPN network to both networks; tenant B (project vpb)
 * has its own VPN network on the same gateway, connected to a network of its own.
 */
describe.skipIf(skip !== null && !process.env.CI)(`WireGuard into private networks with real VMs (${mode})`, () => {
  const ns = new Namespaces();
  const base = `10.${200 + (randomBytes(1)[0]! % 50)}`;
  const tag = randomBytes(2).toString('hex');
  let h1 = '';
  let cp: TestControlPlane;
  let client: FloeClient;
  let agent: ReturnType<typeof startAgentIn> | undefined;
  let agentDir = '';
  let dir = '';
  let office: VpnNetwork;
  const nics: Record<string, Nic> = {};
  const shells: Record<string, GuestShell> = {};
  const clients: Record<string, string> = {};
  const servers: ChildProcess[] = [];

  const logsOf = async (id: string) => {
    const parts: Buffer[] = [];
    for await (const chunk of client.instances.logs(id)) parts.push(chunk);
    return Buffer.concat(parts).toString('utf8');
  };
  const ping = async (from: string, to: string) =>
    (await ns.exec(from, ['ping', '-c', '1', '-W', '2', to], { allowFail: true, timeoutMs: 8000 })).code === 0;
  /** What a VM's web server answers `from` over TCP, on a new connection; null when nothing does. */
  const web = async (from: string, addr: string) => {
    const host = addr.includes(':') ? `[${addr}]` : addr;
    const r = await ns.exec(from, ['curl', '-s', '-g', '--max-time', '3', `http://${host}:7001/who`], {
      allowFail: true,
      timeoutMs: 10_000,
    });
    return r.code === 0 ? r.stdout.trim() : null;
  };
  /** A client namespace on the host's WAN with the wg-quick file it was given, brought up by wg-quick. */
  const wgClient = async (name: string, addr: string, created: VpnPeerCreated) => {
    const c = await ns.add(name);
    await ns.link({ ns: c, name: 'eth0', addr }, { ns: h1, name: `w${name}` });
    await ns.exec(h1, ['ip', 'link', 'set', `w${name}`, 'master', 'wan0']);
    const file = path.join(dir, `wg${tag}${name}.conf`);
    await writeFile(file, created.config, { mode: 0o600 });
    const up = await ns.exec(c, ['wg-quick', 'up', file], { allowFail: true, timeoutMs: 20_000 });
    expect(up.code, up.stderr).toBe(0);
    clients[name] = c;
    return c;
  };
  /** Wait until the guest booted, has its DHCP lease, and serves its name over HTTP on port 7001. */
  const booted = async (name: string) => {
    await eventually(
      async () => {
        const log = await logsOf(name);
        return log.includes('FLOE-TEST READY') && log.includes(`FLOE-TEST IP eth0 ${nics[name]!.ipv4}/24`);
      },
      `${name} booted with its address\n${agent?.output().slice(-3000) ?? ''}`,
      240_000,
    );
    const r = await shells[name]!.sh(
      `mkdir -p /tmp/w && echo vm-${name} > /tmp/w/who && busybox httpd -p 7001 -h /tmp/w`,
    );
    expect(r.code, r.out).toBe(0);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-vpn-vm-'));
    ({
      ns: h1,
      cp,
      client,
      agentDir,
      agent,
    } = await startVmHost(ns, base, {
      name: 'h1',
      prepare: async (h) => {
        await ns.exec(h, ['ip', 'link', 'add', 'wan0', 'type', 'bridge']);
        await ns.exec(h, ['ip', 'addr', 'add', '198.51.100.1/24', 'dev', 'wan0']);
        await ns.exec(h, ['ip', 'link', 'set', 'wan0', 'up']);
      },
    }));
    await client.networks.create({ name: 'lan', ipv4: '10.41.0.0/24', ipv6: 'fd41::/64', gateway: 'host' });
    await client.networks.create({ name: 'iso', ipv4: '10.43.0.0/24', ipv6: 'fd43::/64', gateway: 'none' });
    await client.projects.create({ name: 'vpb' });
    await client.networks.create({ name: 'lan', project: 'vpb', ipv4: '10.42.0.0/24', ipv6: 'fd42::/64' });
    await client.vpnPools.create({
      name: 'edge',
      ipv6: 'fd50::/40',
      network_prefix: 64,
      ipv4: '10.250.0.0/16',
      ipv4_prefix: 24,
      hosts: ['h1'],
      listen_port: 51820,
      endpoint: '198.51.100.1',
    });
    office = await client.vpnNetworks.create({ name: 'office', pool: 'edge', networks: ['lan', 'iso'] });
    await client.vpnNetworks.create({ name: 'office', project: 'vpb', pool: 'edge', networks: ['lan'] });

    const ops = [];
    for (const [name, net] of [
      ['a', 'lan'],
      ['n', 'iso'],
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
      expect((await client.operations.wait(op.id, { timeoutMs: 180_000 })).status).toBe('succeeded');
    for (const name of ['a', 'n']) {
      nics[name] = (await client.instances.nics(name))[0]!;
      shells[name] = new GuestShell(client, name);
    }
    for (const name of ['a', 'n']) await booted(name);
  }, 600_000);

  afterAll(async () => {
    for (const s of Object.values(shells)) s.close();
    // Tunnels go first, so that the wireguard-go daemons exit and remove their sockets.
    for (const c of Object.values(clients)) {
      const links = await ns.exec(c, ['ip', '-j', 'link', 'show'], { allowFail: true });
      for (const l of JSON.parse(links.stdout || '[]') as { ifname: string }[])
        if (l.ifname.startsWith(`wg${tag}`)) await ns.exec(c, ['ip', 'link', 'del', l.ifname], { allowFail: true });
    }
    if (client)
      await Promise.all(['a', 'n'].map((n) => client.instances.delete(n, { wait: 30 }).catch(() => undefined)));
    if (agent) await kill(agent);
    if (h1 !== '') {
      const links = await ns.exec(h1, ['ip', '-j', 'link', 'show'], { allowFail: true });
      for (const l of JSON.parse(links.stdout || '[]') as { ifname: string }[])
        if (/^fv[0-9a-f]{11}$/.test(l.ifname)) await ns.exec(h1, ['ip', 'link', 'del', l.ifname], { allowFail: true });
    }
    await new Promise((r) => setTimeout(r, 300));
    for (const s of servers) s.kill('SIGKILL');
    await cp?.close();
    await ns.cleanup();
    if (agentDir !== '') await rm(dnsmasqRunDir(path.resolve(agentDir)), { recursive: true, force: true });
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  }, 120_000);

  it("a stock wg-quick client pings a VM over IPv6 and IPv4; TCP goes through the VM's security groups", async () => {
    const a1 = await client.vpnPeers.create({ name: 'laptop', vpn_network: 'office' });
    const c = await wgClient('a1', '198.51.100.11/24', a1);
    const t0 = Date.now();
    await eventually(() => ping(c, nics.a!.ipv6!), 'ping to the VM over IPv6 through the tunnel', 60_000);
    console.log(`first ping to the VM ${Date.now() - t0} ms after wg-quick up (${mode}, TCG guest)`);
    expect(await ping(c, nics.a!.ipv4!)).toBe(true);

    // The project's default group lets ICMP and ssh in, not TCP 7001: refused from the VPN as from anywhere.
    expect(await web(c, nics.a!.ipv4!)).toBeNull();
    expect(await web(c, nics.a!.ipv6!)).toBeNull();
    // A rule naming the VPN network's IPv4 prefix opens 7001 to its peers over IPv4 only.
    await client.securityGroups.addRule('default', {
      direction: 'ingress',
      protocol: 'tcp',
      port: '7001',
      remote_cidr: office.ipv4!,
    });
    await eventually(async () => (await web(c, nics.a!.ipv4!)) === 'vm-a', 'TCP over IPv4 after the rule', 30_000);
    expect(await web(c, nics.a!.ipv6!)).toBeNull();
    await client.securityGroups.addRule('default', {
      direction: 'ingress',
      protocol: 'tcp',
      port: '7001',
      remote_cidr: office.ipv6,
    });
    await eventually(async () => (await web(c, nics.a!.ipv6!)) === 'vm-a', 'TCP over IPv6 after the rule', 30_000);
  }, 240_000);

  it('the VM opens TCP to the client: the replies come in as an established connection, on no allowed port', async () => {
    const c = clients.a1!;
    const peer = (await client.vpnPeers.get('laptop')).ipv4!.split('/')[0]!;
    servers.push(
      spawn(
        'ip',
        [
          'netns',
          'exec',
          c,
          process.execPath,
          '-e',
          `require('net').createServer(s=>s.end('hello from the client\\n')).listen(7002,'0.0.0.0')`,
        ],
        { stdio: 'ignore' },
      ),
    );
    const out = await shells.a!.until(
      `timeout 8 nc ${peer} 7002 </dev/null | grep 'hello from the client'`,
      'the VM reaching a server on the VPN client',
      30_000,
    );
    expect(out).toContain('hello from the client');
    // Nothing allows the client to open TCP 7002 on the VM: only the VM's own connection got in.
    const rules = (await client.securityGroups.get('default')).spec.rules;
    expect(
      rules.some(
        (r) =>
          r.direction === 'ingress' && r.port_min !== null && r.port_min <= 7002 && (r.port_max ?? r.port_min) >= 7002,
      ),
    ).toBe(false);
  }, 120_000);

  it('a VM on a network without a gateway answers the VPN by the routes the gateway host gives it by DHCP (option 121)', async () => {
    const c = clients.a1!;
    const host4 = (await client.networks.get('iso')).status.host_ipv4!;
    // A site behind a peer, added now: the gateway host's DHCP answers follow.
    await client.vpnPeers.create({ name: 'site', vpn_network: 'office', subnets: ['192.168.77.0/24'] });
    // The guest's boot-time DHCP hook sets no classless routes: without them it has no way back.
    expect(await ping(c, nics.n!.ipv4!)).toBe(false);
    const want = `${office.ipv4} ${host4}`;
    const out = await routesByDhcp(shells.n!, `192.168.77.0/24 ${host4}`);
    expect(out).toContain(want);
    expect(out).toContain(`169.254.169.254/32 ${host4}`);
    const routes = await shells.n!.sh('ip -4 route show');
    expect(routes.out).toContain(`${office.ipv4} via ${host4} dev eth0`);
    await eventually(
      () => ping(c, nics.n!.ipv4!),
      'the VPN client reaching the VM on the network without a gateway',
      20_000,
    );
    // The rule naming the VPN prefix applies to this VM as well (default group).
    expect(await web(c, nics.n!.ipv4!)).toBe('vm-n');
  }, 180_000);

  it("keeps a second tenant's client on the same gateway away from the first tenant's VMs", async () => {
    const b1 = await client.vpnPeers.create({ name: 'laptop', project: 'vpb', vpn_network: 'office' });
    const c = await wgClient('b1', '198.51.100.21/24', b1);
    const own = await client.vpnNetworks.get('office', { project: 'vpb' });
    const gw4 = own.ipv4!.replace(/\.0\/24$/, '.1');
    // B's tunnel is up: its gateway answers.
    await eventually(() => ping(c, gw4), "tenant B's gateway answering through its tunnel", 60_000);
    // A's VM, by both families, even by routes the client adds itself.
    await ns.exec(c, ['ip', 'route', 'add', '10.41.0.0/24', 'dev', `wg${tag}b1`], { allowFail: true });
    await ns.exec(c, ['ip', '-6', 'route', 'add', 'fd41::/64', 'dev', `wg${tag}b1`], { allowFail: true });
    await ns.exec(c, ['ip', 'route', 'add', '10.43.0.0/24', 'dev', `wg${tag}b1`], { allowFail: true });
    const theirs = [nics.a!.ipv4!, nics.a!.ipv6!, nics.n!.ipv4!];
    for (const to of theirs) expect(await ping(c, to), to).toBe(false);
    for (const to of theirs) expect(await web(c, to), to).toBeNull();
    // While A's client still gets in.
    expect(await web(clients.a1!, nics.a!.ipv4!)).toBe('vm-a');
  }, 120_000);
});
