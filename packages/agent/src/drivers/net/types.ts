/** What the control plane sends a host about one network and its NICs (agent side of the network contract). */

/** Who routes a network: the host (NAT to its uplink), nobody, or a VM whose address is the gateway. */
export type GatewayMode = 'host' | 'none' | 'vm';
// Public networks use `vm` for "a router elsewhere on the LAN" (its address is the gateway) or `none`; never `host`.

/** One IP family of a network: its prefix and the gateway address in it (null: no router for this family). */
export interface NetFamily {
  /** e.g. `10.10.0.0/24` or `fd00:10::/64`. */
  cidr: string;
  gateway: string | null;
}

/** `private`: a bridge per host joined by VXLAN; `public`: a bridge that takes over a physical interface of the host. */
export type NetKind = 'private' | 'public';

/**
 * One layer-2 network as a host builds it: bridge + VXLAN + dnsmasq + firewall
 * (private), or bridge over a physical interface + dnsmasq + firewall (public).
 */
export interface NetSpec {
  id: string;
  /** Absent means `private`. */
  kind?: NetKind;
  /**
   * Public networks only: the host interface the bridge takes over. The host's
   * global addresses and routes move from it onto the bridge, and back when the
   * network is removed; the LAN behind it joins the hosts, so there is no VXLAN.
   */
  physical?: string;
  /** VXLAN network identifier, 1..16777215, one per network. */
  vni: number;
  ipv4: NetFamily | null;
  ipv6: NetFamily | null;
  /** The guests' MTU; the bridge and VXLAN device carry it, the underlay needs 50 bytes more. */
  mtu: number;
  gatewayMode: GatewayMode;
  /** Serve DNS names of the network's instances (dnsmasq); without it dnsmasq does DHCP/RA only. */
  dns: boolean;
  /**
   * IPv6 addresses by stateful DHCPv6, pinned like the DHCPv4 leases (router
   * advertisements with the managed flag and no SLAAC); absent or false: SLAAC
   * with stateless DHCPv6 for DNS.
   */
  dhcpv6?: boolean;
  /** Underlay IPs of the other hosts with members (VXLAN head-end replication targets); unused by public networks. */
  peers: string[];
  /**
   * Private networks in `host` mode: the host interface their traffic leaves by,
   * masqueraded (the default route's device, or the bridge of a public network
   * that took it over); no NAT without it. Not to be confused with `physical`,
   * nor with the `uplink` of the wire's DesiredNetwork, which is `physical`.
   */
  natInterface?: string;
  /**
   * Private networks in `none` and `vm` mode: the host's own addresses on the
   * bridge (`address/prefix`), where dnsmasq answers DHCP and DNS without
   * routing anything. In `host` mode the gateway addresses serve.
   */
  hostAddrs?: string[];
  /**
   * What this host routes for the network as a VPN gateway (prefixes of either family, see
   * DesiredNetwork's `vpn_routes`). In `none` and `vm` mode guests do not route through the host, so
   * DHCP names these IPv4 prefixes to them (option 121, via `hostAddrs`).
   */
  vpnRoutes?: string[];
  /** The host's VPN router port on the bridge (vpn-port.ts); absent: none. */
  vpnPort?: VpnPortSpec;
}

/** A VPN gateway host's router port on a network, as the other hosts route through it. */
export interface VpnGatewayPort {
  mac: string;
  /** Its address on the network; null without IPv4 (IPv6 goes to its link-local address). */
  ipv4: string | null;
  /** The VPN prefixes and site subnets routed through it. */
  routes: string[];
}

/** This host's VPN router port on a private network: its MAC, its address (gateway hosts), and the gateways' ports. */
export interface VpnPortSpec {
  mac: string;
  ipv4: string | null;
  gateways: VpnGatewayPort[];
}

/** One NIC of an instance, with its stable MAC and its IPAM addresses. */
export interface NicSpec {
  id: string;
  instanceId: string;
  networkId: string;
  mac: string;
  ipv4: string | null;
  ipv6: string | null;
  /** The instance's DNS label, served by dnsmasq and sent by DHCP. */
  hostname: string;
  // Security groups (filtering of what the NIC may send and receive).
  /** Ids of the security groups applied to the NIC (see SecurityGroupSpec); absent: not filtered (older control planes). */
  securityGroups?: readonly string[];
  /** False turns security-group filtering off for this NIC; anti-spoofing stays. Absent: true. */
  filtering?: boolean;
}

/** Protocols a security group rule can match; `any` matches every IP packet. */
export type SgProtocol = 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'any';

/** One allow rule of a security group. */
export interface SgRule {
  direction: 'ingress' | 'egress';
  protocol: SgProtocol;
  /** tcp/udp only: the destination port range (both null: every port). */
  portMin: number | null;
  portMax: number | null;
  /** The peer: a CIDR (v4 or v6), the members of a security group (by id), or both null for anywhere. */
  remoteCidr: string | null;
  remoteGroup: string | null;
}

/**
 * A security group as a host enforces it: allow rules per direction on top of
 * a default verdict, and the current addresses of its members (on every host),
 * which rules of groups naming it as their remote match as a named set.
 */
export interface SecurityGroupSpec {
  id: string;
  ingressDefault: 'allow' | 'deny';
  egressDefault: 'allow' | 'deny';
  rules: readonly SgRule[];
  /** Addresses of its members' NICs (IPv4 and IPv6 together). */
  members: readonly string[];
}

/** One interface as `ip -j -d addr` reports it, reduced to what floe compares. */
export interface ObservedLink {
  name: string;
  kind: string | null;
  master: string | null;
  mtu: number;
  up: boolean;
  address: string;
  /** VXLAN only: the VNI and the local address. */
  vni: number | null;
  local: string | null;
}

/** What one private network has on a host now: the input of `networkCommands`. */
export interface ObservedNet {
  bridge: ObservedLink | undefined;
  vxlan: ObservedLink | undefined;
  /** `address/prefix` on the bridge. */
  bridgeAddrs: readonly string[];
  /** Destinations of the VXLAN device's all-zero (flood) FDB entries. */
  floods: readonly string[];
  /** Interfaces that belong in the bridge (the local NICs' taps), as far as they exist. */
  ports: readonly ObservedLink[];
}
