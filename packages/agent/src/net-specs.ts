/**
 * The agent's pure translations of what the control plane sends (networks, their NICs, security
 * groups) into the specs the host network driver builds, and of the host's default route.
 */
import { FloeError, type DesiredNetwork, type DesiredSecurityGroup } from '@floe/api';
import { checkCidr, checkId, checkIfName, checkIp } from './drivers/net/names.js';
import { isIfName } from './host/validate.js';
import type { GatewayMode, NetSpec, NicSpec, SecurityGroupSpec } from './drivers/net/types.js';

/** Options of the adapter: what the agent knows about its host that the control plane does not send. */
export interface NetSpecOptions {
  /** The host interface NATed to for `host` gateways (the default route's device); no NAT without it. */
  natUplink?: string | undefined;
}

// The control plane's gateway is "host", "none" or the address of a VM.
function gatewayMode(gateway: string): GatewayMode {
  return gateway === 'host' || gateway === 'none' ? gateway : 'vm';
}

/**
 * A DesiredNetwork as the host driver builds it. Mismatches between the two
 * shapes, resolved here:
 * - `gateway` is "host", "none" or a VM's address; NetSpec splits it into a
 *   mode and the per-family gateway addresses (`gateway4`/`gateway6`, null in
 *   `none` mode).
 * - `uplink` of a DesiredNetwork is the physical interface a public network's
 *   bridge takes over (NetSpec's `physical`); NetSpec's `natInterface` is the
 *   interface a host gateway NATs to, which only the agent knows (`natUplink`).
 * - A public network's gateway is its LAN's router (mode `vm`: "a router
 *   elsewhere", named to guests by DHCP) or `none`; it has no VXLAN peers.
 * - The host's own address on the bridge (`host_ipv4`/`host_ipv6`, where
 *   dnsmasq answers DHCP and DNS) is the gateway in `host` mode; in
 *   `none`/`vm` mode it goes into NetSpec's `hostAddrs`.
 * - `vpn_routes` (what the host routes as a VPN gateway) become `vpnRoutes`, `vpn_port` `vpnPort`.
 */
export function toNetSpec(net: DesiredNetwork, opts: NetSpecOptions = {}): NetSpec {
  checkId('network_id', net.id);
  if (net.kind !== 'private' && net.kind !== 'public')
    throw new FloeError('validation_failed', `network ${net.name}: unknown network kind ${JSON.stringify(net.kind)}`, {
      field: 'kind',
    });
  const mode = gatewayMode(net.gateway);
  const family = (cidr: string | null, gateway: string | null): NetSpec['ipv4'] =>
    cidr === null ? null : { cidr, gateway: mode === 'none' ? null : gateway };
  const common = {
    id: net.id,
    vni: net.vni,
    ipv4: family(net.ipv4, net.gateway4),
    ipv6: family(net.ipv6, net.gateway6),
    mtu: net.mtu,
    gatewayMode: mode,
    dns: net.dns,
  };
  if (net.kind === 'public') {
    if (net.uplink === null)
      throw new FloeError('validation_failed', `public network ${net.name} names no host interface to take over`, {
        field: 'uplink',
      });
    if (mode === 'host')
      throw new FloeError('validation_failed', `public network ${net.name}: its router is on the LAN, not the host`, {
        field: 'gateway',
      });
    return { ...common, kind: 'public', physical: checkIfName('uplink', net.uplink), peers: [] };
  }
  return {
    ...common,
    ...(net.dhcpv6 === true && net.ipv6 !== null ? { dhcpv6: true } : {}),
    peers: [...net.peers],
    ...(mode === 'host' && opts.natUplink !== undefined ? { natInterface: checkIfName('uplink', opts.natUplink) } : {}),
    ...(mode === 'host' ? {} : { hostAddrs: hostAddrs(net) }),
    ...(net.vpn_routes === undefined || net.vpn_routes.length === 0 ? {} : { vpnRoutes: [...net.vpn_routes] }),
    ...(net.vpn_port === undefined
      ? {}
      : {
          vpnPort: {
            mac: net.vpn_port.mac,
            ipv4: net.vpn_port.ipv4,
            gateways: net.vpn_port.gateways.map((g) => ({ mac: g.mac, ipv4: g.ipv4, routes: [...g.routes] })),
          },
        }),
  };
}

/**
 * The host's DHCP/DNS addresses on the bridge of a private network in `none`
 * and `vm` mode (in `host` mode the gateway address is the same and serves).
 * dnsmasq needs an address of the subnet on its interface to serve DHCPv4 there.
 */
function hostAddrs(net: DesiredNetwork): string[] {
  const out: string[] = [];
  if (net.ipv4 !== null && net.host_ipv4 !== null)
    out.push(`${checkIp('host_ipv4', net.host_ipv4, 4)}/${checkCidr('ipv4', net.ipv4, 4).prefix}`);
  if (net.ipv6 !== null && net.host_ipv6 !== null)
    out.push(`${checkIp('host_ipv6', net.host_ipv6, 6)}/${checkCidr('ipv6', net.ipv6, 6).prefix}`);
  return out;
}

/** Every NIC of the network (on any host) from its leases. */
export function toNicSpecs(net: DesiredNetwork): NicSpec[] {
  return net.leases.map((l) => ({
    id: l.nic_id,
    instanceId: l.instance_id,
    networkId: net.id,
    mac: l.mac,
    ipv4: l.ipv4,
    ipv6: l.ipv6,
    hostname: l.hostname,
  }));
}

/** The interface of the default IPv4 route, from `ip -j route show default` output; null when there is none. */
export function parseDefaultRoute(json: string): string | null {
  try {
    const routes = JSON.parse(json || '[]') as { dst?: string; dev?: string }[];
    const dev = routes.find((r) => r.dst === 'default' && typeof r.dev === 'string')?.dev ?? null;
    return isIfName(dev) ? dev : null;
  } catch {
    return null;
  }
}

/** A DesiredSecurityGroup as the firewall builder takes it (the builder checks every value). */
export function toGroupSpec(g: DesiredSecurityGroup): SecurityGroupSpec {
  return {
    id: g.id,
    ingressDefault: g.ingress_default,
    egressDefault: g.egress_default,
    rules: g.rules.map((r) => ({
      direction: r.direction,
      protocol: r.protocol,
      portMin: r.port_min,
      portMax: r.port_max,
      remoteCidr: r.remote_cidr,
      remoteGroup: r.remote_group,
    })),
    members: g.members,
  };
}
