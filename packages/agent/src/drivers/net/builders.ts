import { createHash } from 'node:crypto';
import { FloeError } from '@floe/api';
import {
  bridgeName,
  checkCidr,
  checkHostname,
  checkId,
  checkIfName,
  checkInt,
  checkIp,
  checkMac,
  tapName,
  vxlanName,
} from './names.js';
import type { NetSpec, NicSpec, ObservedNet } from './types.js';

/** One command as an argument array, the program first (`ip`, `bridge`). */
export type Argv = readonly string[];

/** The UDP port of VXLAN (IANA). */
export const VXLAN_PORT = 4789;
/** Bytes VXLAN adds over IPv4 (outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14); the underlay MTU must be this much larger. */
export const VXLAN_OVERHEAD = 50;

function invalid(field: string, message: string): FloeError {
  return new FloeError('validation_failed', message, { field });
}

/** A NetSpec with every value that reaches `ip`, `nft` or dnsmasq checked, and the derived names. */
export interface CheckedNet {
  net: NetSpec;
  bridge: string;
  vxlan: string;
  /** Public networks: the host interface the bridge takes over; null for private ones. */
  physical: string | null;
  /** The MAC of the bridge of a private network, the same on every host, so the gateway answers with one MAC wherever a guest runs. */
  gatewayMac: string;
  v4: { cidr: string; address: string; prefix: number; gateway: string | null } | null;
  v6: { cidr: string; address: string; prefix: number; gateway: string | null } | null;
}

/** The locally administered MAC of a network's bridge: 02 + 5 bytes of sha256(id). */
export function gatewayMac(netId: string): string {
  const h = createHash('sha256').update(checkId('network_id', netId)).digest('hex');
  return ['02', h.slice(0, 2), h.slice(2, 4), h.slice(4, 6), h.slice(6, 8), h.slice(8, 10)].join(':');
}

/** Validate a NetSpec once; every builder starts here. */
export function checkNet(net: NetSpec): CheckedNet {
  checkId('network_id', net.id);
  if (net.kind !== undefined && net.kind !== 'private' && net.kind !== 'public')
    throw invalid('kind', `unknown network kind ${JSON.stringify(net.kind)}`);
  const pub = net.kind === 'public';
  checkInt('vni', net.vni, 1, 0xffffff);
  checkInt('mtu', net.mtu, net.ipv6 ? 1280 : 576, 9000);
  if (!['host', 'none', 'vm'].includes(net.gatewayMode))
    throw invalid('gateway_mode', `unknown gateway mode ${JSON.stringify(net.gatewayMode)}`);
  if (!Array.isArray(net.peers)) throw invalid('peers', 'peers must be a list of addresses');
  net.peers.forEach((p, i) => checkIp(`peers[${i}]`, p));
  if (net.uplink !== undefined) checkIfName('uplink', net.uplink);
  if (net.dhcpv6 !== undefined && typeof net.dhcpv6 !== 'boolean')
    throw invalid('dhcpv6', 'dhcpv6 must be true or false');
  if (net.dhcpv6 === true && (net.ipv6 === null || pub))
    throw invalid('dhcpv6', 'DHCPv6 needs the IPv6 range of a private network');
  if (pub) {
    if (net.physical === undefined)
      throw invalid('physical', 'a public network needs the host interface its bridge takes over');
    checkIfName('physical', net.physical);
    if (/^fl(br|vx|tp)/.test(net.physical))
      throw invalid('physical', `${net.physical} is an interface of floe, not a physical one`);
    if (net.gatewayMode === 'host')
      throw invalid('gateway_mode', 'the router of a public network is on its LAN, not the host');
    if (net.ipv4 === null) throw invalid('ipv4', 'a public network needs an IPv4 range');
  } else if (net.physical !== undefined) {
    throw invalid('physical', 'only public networks take over a physical interface');
  }
  const fam = (f: NetSpec['ipv4'], v: 4 | 6, field: string): CheckedNet['v4'] => {
    if (f === null) return null;
    const c = checkCidr(`${field}.cidr`, f.cidr, v);
    if (f.gateway !== null) checkIp(`${field}.gateway`, f.gateway, v);
    return { cidr: f.cidr, address: c.address, prefix: c.prefix, gateway: f.gateway };
  };
  const v4 = fam(net.ipv4, 4, 'ipv4');
  const v6 = fam(net.ipv6, 6, 'ipv6');
  if (net.hostAddrs !== undefined) {
    if (!Array.isArray(net.hostAddrs) || pub || net.gatewayMode === 'host')
      throw invalid('host_addrs', 'host addresses are for private networks in none or vm mode');
    net.hostAddrs.forEach((a, i) => {
      const m = /^([^/]+)\/(\d{1,3})$/.exec(a);
      const fam = m === null ? null : m[1]!.includes(':') ? v6 : v4;
      if (m === null || fam === null || Number(m[2]) !== fam.prefix)
        throw invalid(`host_addrs[${i}]`, `${JSON.stringify(a)} is not an address/prefix of the network`);
      checkIp(`host_addrs[${i}]`, m[1]!, m[1]!.includes(':') ? 6 : 4);
    });
  }
  if (net.gatewayMode === 'host' && (v4?.gateway ?? v6?.gateway ?? null) === null) {
    throw invalid('gateway', 'a host gateway needs a gateway address');
  }
  return {
    net,
    bridge: bridgeName(net.id),
    vxlan: vxlanName(net.id),
    physical: pub ? net.physical! : null,
    gatewayMac: gatewayMac(net.id),
    v4,
    v6,
  };
}

/** Validate a NicSpec; `field` prefixes the error's field name. */
export function checkNic(nic: NicSpec, field = 'nic'): NicSpec {
  checkId(`${field}.id`, nic.id);
  checkId(`${field}.instance_id`, nic.instanceId);
  checkId(`${field}.network_id`, nic.networkId);
  checkMac(`${field}.mac`, nic.mac);
  if (nic.ipv4 !== null) checkIp(`${field}.ipv4`, nic.ipv4, 4);
  if (nic.ipv6 !== null) checkIp(`${field}.ipv6`, nic.ipv6, 6);
  checkHostname(`${field}.hostname`, nic.hostname);
  return nic;
}

/** Create the network's bridge (down, with its MTU and the shared gateway MAC). */
export function bridgeCreateCommands(c: CheckedNet): Argv[] {
  return [['ip', 'link', 'add', c.bridge, 'address', c.gatewayMac, 'mtu', String(c.net.mtu), 'type', 'bridge']];
}

/** Create the VXLAN device (unicast only: no group, no learning) and enslave it to the bridge. */
export function vxlanCreateCommands(c: CheckedNet, underlay: string): Argv[] {
  checkIp('underlay', underlay);
  return [
    [
      'ip',
      'link',
      'add',
      c.vxlan,
      'mtu',
      String(c.net.mtu),
      'type',
      'vxlan',
      'id',
      String(c.net.vni),
      'local',
      underlay,
      'dstport',
      String(VXLAN_PORT),
      'nolearning',
    ],
    ['ip', 'link', 'set', c.vxlan, 'master', c.bridge, 'up'],
  ];
}

/** One head-end replication target: broadcast/unknown frames go to `peer` too. */
export function fdbCommand(c: CheckedNet, peer: string, action: 'append' | 'del'): Argv {
  checkIp('peer', peer);
  return ['bridge', 'fdb', action, '00:00:00:00:00:00', 'dev', c.vxlan, 'dst', peer];
}

/**
 * The host's addresses on the bridge: the gateway addresses with a host
 * gateway, else the addresses dnsmasq serves from (`hostAddrs`); `replace`
 * keeps it idempotent.
 */
export function addressCommands(c: CheckedNet): Argv[] {
  if (c.net.gatewayMode !== 'host') {
    return (c.net.hostAddrs ?? []).map((a) => [
      'ip',
      'addr',
      'replace',
      a,
      'dev',
      c.bridge,
      ...(a.includes(':') ? ['nodad'] : []),
    ]);
  }
  const out: Argv[] = [];
  if (c.v4?.gateway) out.push(['ip', 'addr', 'replace', `${c.v4.gateway}/${c.v4.prefix}`, 'dev', c.bridge]);
  // Every host carries the same gateway address and MAC; DAD across hosts would only fight itself.
  if (c.v6?.gateway) out.push(['ip', 'addr', 'replace', `${c.v6.gateway}/${c.v6.prefix}`, 'dev', c.bridge, 'nodad']);
  return out;
}

/**
 * Every `ip`/`bridge` command that builds a private network on a fresh host: bridge,
 * VXLAN device attached to it, gateway addresses, bridge up, then one
 * all-zero FDB entry per peer (unicast head-end replication, no multicast).
 *
 * @example
 * for (const [cmd, ...args] of bridgeCommands(net, { underlay: '192.0.2.1' })) await run(cmd, args);
 */
export function bridgeCommands(net: NetSpec, host: { underlay: string }): Argv[] {
  return networkCommands(
    net,
    { bridge: undefined, vxlan: undefined, bridgeAddrs: [], floods: [], ports: [] },
    host.underlay,
  );
}

/**
 * The commands that bring a private network on this host from what it has
 * (`o`) to what `net` asks for, and nothing else: on a fresh host all of
 * `bridgeCommands`; on a host where all is well, none. A VXLAN device with
 * another VNI or source is replaced (its flood entries go with it); the
 * bridge's MAC and MTU, the VXLAN device's port, the flood entries, the
 * gateway addresses and ports that left the bridge (`o.ports`) are repaired.
 * `ip` commands come before `bridge` ones in the list, in the order they can
 * run as one `ip -batch` and one `bridge -batch`.
 *
 * @example
 * const { ip, bridge } = splitByTool(networkCommands(net, observed, '192.0.2.1'));
 */
export function networkCommands(net: NetSpec, o: ObservedNet, underlay: string): Argv[] {
  const c = checkNet(net);
  if (c.physical !== null)
    throw invalid('kind', 'a public network is built from what its physical interface has: see takeoverCommands');
  checkIp('underlay', underlay);
  const mtu = String(net.mtu);
  const ip: Argv[] = [];
  const br: Argv[] = [];
  if (o.bridge !== undefined && o.bridge.kind !== 'bridge')
    throw new FloeError('invalid_state', `interface ${c.bridge} exists and is not a bridge`, { interface: c.bridge });
  if (o.bridge === undefined) ip.push(...bridgeCreateCommands(c));
  else if (o.bridge.address !== c.gatewayMac || o.bridge.mtu !== net.mtu)
    ip.push(['ip', 'link', 'set', c.bridge, 'address', c.gatewayMac, 'mtu', mtu]);
  const vx = o.vxlan;
  const vxOk = vx !== undefined && vx.kind === 'vxlan' && vx.vni === net.vni && vx.local === underlay;
  if (vx !== undefined && !vxOk) ip.push(['ip', 'link', 'del', c.vxlan]);
  if (!vxOk) ip.push(...vxlanCreateCommands(c, underlay));
  else if (vx.master !== c.bridge || !vx.up || vx.mtu !== net.mtu)
    ip.push(['ip', 'link', 'set', c.vxlan, 'mtu', mtu, 'master', c.bridge, 'up']);
  // A new VXLAN device has no entries; a kept one may have stale ones.
  const have = vxOk ? o.floods : [];
  for (const p of net.peers) if (!have.includes(p)) br.push(fdbCommand(c, p, 'append'));
  for (const p of have) if (!net.peers.includes(p)) br.push(fdbCommand(c, p, 'del'));
  const addrs = o.bridge === undefined ? [] : o.bridgeAddrs;
  for (const cmd of addressCommands(c)) if (!addrs.includes(cmd[3]!)) ip.push(cmd);
  if (o.bridge === undefined || !o.bridge.up) ip.push(['ip', 'link', 'set', c.bridge, 'up']);
  for (const port of o.ports) {
    if (o.bridge !== undefined && port.master === c.bridge && port.up && port.mtu === net.mtu) continue;
    ip.push(...portCommands(port.name, c));
  }
  return [...ip, ...br];
}

/** Create a persistent tap for QEMU and plug it into the network's bridge. */
export function tapCommands(nic: NicSpec, net: NetSpec): Argv[] {
  const c = checkNet(net);
  checkNic(nic);
  const tap = tapName(nic.id);
  return [['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap'], ...portCommands(tap, c)];
}

/** Attach an existing interface (a tap, or a veth standing in for one) to the bridge with the network's MTU. */
export function portCommands(ifname: string, c: CheckedNet): Argv[] {
  checkIfName('ifname', ifname);
  return [['ip', 'link', 'set', ifname, 'mtu', String(c.net.mtu), 'master', c.bridge, 'up']];
}
