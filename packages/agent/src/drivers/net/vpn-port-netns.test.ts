import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../host/exec.js';
import { vpnIfName } from '../vpn/commands.js';
import { HostNetworkDriver } from './driver.js';
import { tapName, vpnPortName } from './names.js';
import { ipIn, netnsUnavailable, ping, waitFor } from './testing.js';
import type { NetSpec, NicSpec } from './types.js';
import { checkNet } from './checked-spec.js';
import { hostExec } from './host-exec.js';
import { observeVpnPort } from './vpn-port-apply.js';
import { vpnPortCommands, vpnTable } from './vpn-port.js';

/*
 * VPN router ports on real links: a gateway host G and a second host H of one private network
 * (bridges joined by VXLAN over an underlay veth), a guest on each (veths named as their NICs' taps),
 * and a VPN client behind G on a veth named as a VPN network's WireGuard interface. The client reaches
 * the guest on H over IPv4 and IPv6 only through the ports; without them it does not.
 *
 *   C (10.250.0.2, fd50::2) ── fv… ── G ══ underlay ══ H
 *                                     └ guest g       └ guest h
 */

const reason = await netnsUnavailable('VPN router port tests');

const id = randomBytes(3).toString('hex');
const NET_ID = `net_vport${id}`;
const GW_MAC = '02:aa:00:00:00:01';
const H_MAC = '02:bb:00:00:00:02';
const GW_V4 = '10.41.0.250';
const VPN = ['fd50::/64', '10.250.0.0/24'];

const base: NetSpec = {
  id: NET_ID,
  vni: 4100 + (randomBytes(1)[0]! % 100),
  ipv4: { cidr: '10.41.0.0/24', gateway: '10.41.0.1' },
  ipv6: { cidr: 'fd41::/64', gateway: 'fd41::1' },
  mtu: 1450,
  gatewayMode: 'host',
  dns: false,
  peers: [],
};
const nic = (n: string, ip: number): NicSpec => ({
  id: `nic_vport${id}${n}`,
  instanceId: `ins_vport${id}${n}`,
  networkId: NET_ID,
  mac: `02:cc:00:00:00:0${ip % 10}`,
  ipv4: `10.41.0.${ip}`,
  ipv6: `fd41::${ip}`,
  hostname: n,
});
const guestG = nic('g', 11);
const guestH = nic('h', 12);

const gatewaySpec = (port: boolean): NetSpec => ({
  ...base,
  peers: ['192.0.2.2'],
  vpnRoutes: VPN,
  ...(port ? { vpnPort: { mac: GW_MAC, ipv4: GW_V4, gateways: [] } } : {}),
});
const memberSpec = (port: boolean): NetSpec => ({
  ...base,
  peers: ['192.0.2.1'],
  ...(port ? { vpnPort: { mac: H_MAC, ipv4: null, gateways: [{ mac: GW_MAC, ipv4: GW_V4, routes: VPN }] } } : {}),
});

describe.skipIf(reason !== null)('VPN router ports on real links', () => {
  const [g, h, c, vg, vh] = ['g', 'h', 'c', 'vg', 'vh'].map((n) => `floe-vp${n}-${id}`) as [
    string,
    string,
    string,
    string,
    string,
  ];
  const fv = vpnIfName(`vpn_vport${id}`);
  let dir = '';
  let gw: HostNetworkDriver;
  let member: HostNetworkDriver;

  const build = async (port: boolean) => {
    await gw.ensureNetwork(gatewaySpec(port), [guestG]);
    await member.ensureNetwork(memberSpec(port), [guestH]);
    await gw.applyFirewall([gatewaySpec(port)], [guestG]);
    await member.applyFirewall([memberSpec(port)], [guestH]);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-vport-'));
    for (const ns of [g, h, c, vg, vh]) {
      await run('ip', ['netns', 'add', ns]);
      await ipIn(ns, 'link', 'set', 'lo', 'up');
    }
    await ipIn(g, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0', 'netns', h);
    await ipIn(g, 'addr', 'add', '192.0.2.1/24', 'dev', 'ul0');
    await ipIn(h, 'addr', 'add', '192.0.2.2/24', 'dev', 'ul0');
    await ipIn(g, 'link', 'set', 'ul0', 'up');
    await ipIn(h, 'link', 'set', 'ul0', 'up');
    // The VPN client: what a WireGuard interface delivers, on a veth of the same name.
    await ipIn(g, 'link', 'add', fv, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c);
    await ipIn(g, 'addr', 'add', '10.250.0.1/24', 'dev', fv);
    await ipIn(g, 'addr', 'add', 'fd50::1/64', 'dev', fv, 'nodad');
    await ipIn(g, 'link', 'set', fv, 'up');
    await ipIn(c, 'addr', 'add', '10.250.0.2/24', 'dev', 'eth0');
    await ipIn(c, 'addr', 'add', 'fd50::2/64', 'dev', 'eth0', 'nodad');
    await ipIn(c, 'link', 'set', 'eth0', 'up');
    await ipIn(c, 'route', 'add', 'default', 'via', '10.250.0.1');
    await ipIn(c, '-6', 'route', 'add', 'default', 'via', 'fd50::1');
    for (const ns of [g, h])
      await run('ip', [
        'netns',
        'exec',
        ns,
        'sysctl',
        '-q',
        '-w',
        'net.ipv4.ip_forward=1',
        'net.ipv6.conf.all.forwarding=1',
      ]);
    gw = new HostNetworkDriver({ stateDir: path.join(dir, 'g'), underlay: '192.0.2.1', netns: g });
    member = new HostNetworkDriver({ stateDir: path.join(dir, 'h'), underlay: '192.0.2.2', netns: h });
    // Guests: a veth named as the NIC's tap on the host, the other end in the guest's namespace.
    for (const [host, guest, n, spec] of [
      [g, vg, guestG, gatewaySpec(false)],
      [h, vh, guestH, memberSpec(false)],
    ] as const) {
      await (host === g ? gw : member).ensureNetwork(spec, []);
      const tap = tapName(n.id);
      await ipIn(host, 'link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guest);
      await (host === g ? gw : member).attachPort(tap, spec);
      await ipIn(guest, 'link', 'set', 'eth0', 'address', n.mac);
      await ipIn(guest, 'addr', 'add', `${n.ipv4}/24`, 'dev', 'eth0');
      await ipIn(guest, 'addr', 'add', `${n.ipv6}/64`, 'dev', 'eth0', 'nodad');
      await ipIn(guest, 'link', 'set', 'eth0', 'up');
      await ipIn(guest, 'route', 'add', 'default', 'via', '10.41.0.1');
      await ipIn(guest, '-6', 'route', 'add', 'default', 'via', 'fd41::1');
    }
  }, 60_000);

  afterAll(async () => {
    for (const ns of [g, h, c, vg, vh]) await run('ip', ['netns', 'del', ns], { allowFail: true });
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('without ports the client reaches only the guest on the gateway host', async () => {
    await build(false);
    await waitFor('the guest on G over IPv4', () => ping(c, guestG.ipv4!));
    expect(await ping(c, guestH.ipv4!)).toBe(false);
    expect(await ping(c, guestH.ipv6!, { v6: true })).toBe(false);
  }, 30_000);

  it('with ports it reaches the guest on the other host over IPv4 and IPv6, and the guest on G still', async () => {
    await build(true);
    await waitFor('the guest on H over IPv4', () => ping(c, guestH.ipv4!));
    await waitFor('the guest on H over IPv6', () => ping(c, guestH.ipv6!, { v6: true }));
    await waitFor('the guest on G over IPv4', () => ping(c, guestG.ipv4!));
    await waitFor('the guest on G over IPv6', () => ping(c, guestG.ipv6!, { v6: true }));
    // What the host has reads back as what the spec asks: the next pass changes nothing.
    expect(
      vpnPortCommands(checkNet(gatewaySpec(true)), await observeVpnPort(hostExec(g), checkNet(gatewaySpec(true)))),
    ).toEqual([]);
    expect(
      vpnPortCommands(checkNet(memberSpec(true)), await observeVpnPort(hostExec(h), checkNet(memberSpec(true)))),
    ).toEqual([]);
    // A port whose MAC changed is rebuilt, with its neighbours and routes.
    const moved = { ...memberSpec(true) };
    await member.ensureNetwork({ ...moved, vpnPort: { ...moved.vpnPort!, mac: '02:bb:00:00:00:03' } }, [guestH]);
    await member.ensureNetwork(moved, [guestH]);
    await waitFor('the guest on H over IPv4 after the rebuild', () => ping(c, guestH.ipv4!));
  }, 60_000);

  it('taking the ports away removes them, their routes and rules, and the guest on H is out of reach again', async () => {
    await build(false);
    for (const ns of [g, h])
      expect((await ipIn(ns, 'link', 'show', 'dev', vpnPortName(NET_ID)).catch(() => null))?.stdout ?? '').toBe('');
    expect((await ipIn(g, 'rule', 'show', 'table', String(vpnTable(NET_ID)))).stdout.trim()).toBe('');
    expect(await ping(c, guestH.ipv4!)).toBe(false);
    await waitFor('the guest on G over IPv4', () => ping(c, guestG.ipv4!));
  }, 30_000);
});
