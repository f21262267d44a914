import { createHash } from 'node:crypto';
import {
  checkCidr,
  checkHostname,
  checkId,
  checkIfName,
  checkInt,
  checkIp,
  checkMac,
  checkPrefix,
  invalid,
} from '../../host/validate.js';
import { bridgeName, vxlanName } from './names.js';
import type { NetSpec, NicSpec } from './types.js';

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
  if (net.natInterface !== undefined) checkIfName('nat_interface', net.natInterface);
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
  if (net.vpnRoutes !== undefined) {
    if (!Array.isArray(net.vpnRoutes) || pub) throw invalid('vpn_routes', 'VPN routes are for private networks');
    net.vpnRoutes.forEach((r, i) => checkPrefix(`vpn_routes[${i}]`, r, r.includes(':') ? 6 : 4));
  }
  if (net.vpnPort !== undefined) {
    const port = net.vpnPort;
    if (pub || typeof port !== 'object' || port === null || !Array.isArray(port.gateways))
      throw invalid('vpn_port', 'a VPN port is for private networks and lists its gateways');
    checkMac('vpn_port.mac', port.mac);
    if (port.ipv4 !== null) checkIp('vpn_port.ipv4', port.ipv4, 4);
    port.gateways.forEach((g, i) => {
      checkMac(`vpn_port.gateways[${i}].mac`, g.mac);
      if (g.ipv4 !== null) checkIp(`vpn_port.gateways[${i}].ipv4`, g.ipv4, 4);
      if (!Array.isArray(g.routes)) throw invalid(`vpn_port.gateways[${i}].routes`, 'routes must be a list');
      g.routes.forEach((r, j) => checkPrefix(`vpn_port.gateways[${i}].routes[${j}]`, r, r.includes(':') ? 6 : 4));
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
