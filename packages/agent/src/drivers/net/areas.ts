import type { RateLimit } from '@floe/api';
import type { NatNic } from './nat-rules.js';
import type { NetSpec, NicSpec, SecurityGroupSpec } from './types.js';

/*
 * The three host areas of floe networking, each an interface with a real
 * driver (Linux: iproute2, dnsmasq, nftables) and a fake (fake.ts), and each
 * with a contract suite in @floe/testkit that both pass. HostNetworkDriver
 * (driver.ts) composes the real ones for the network reconciler.
 */

/**
 * Layer 2 and 3 of a host: bridges, VXLAN devices and their flood entries,
 * the takeover of a physical interface by a public network's bridge, the
 * host's addresses on bridges, forwarding sysctls, and the NICs' taps. Every
 * method compares with what the host has first and is safe to call again.
 */
export interface NetworkDriver {
  /** Make the network's bridge (and VXLAN device, flood entries, addresses) match `net`; plug the taps of `nics` that exist back in. Returns the bridge name. */
  ensureNetwork(net: NetSpec, nics?: readonly NicSpec[]): Promise<string>;
  /** Remove the network's links and state from the host (a public network gives its addresses back first); missing pieces are fine. */
  removeNetwork(netId: string): Promise<void>;
  /** Create the NIC's tap unless it exists and plug it into its network's bridge, up. Returns the tap name. */
  ensureTap(nic: NicSpec, net: NetSpec): Promise<string>;
  /** Plug an existing interface into the network's bridge. */
  attachPort(ifname: string, net: NetSpec): Promise<void>;
  /** Delete a NIC's tap; a missing tap is fine. */
  removeTap(nicId: string): Promise<void>;
}

/** What ensureDhcp did. */
export interface DhcpState {
  pid: number | null;
  /** True when dnsmasq was started (first time, config change, or it had died). */
  started: boolean;
  /** True when a running dnsmasq was told to re-read its leases and names (SIGHUP). */
  reloaded?: boolean;
  /** Why no dnsmasq runs (a public network without a host address in its subnet); guests rely on static network-config. */
  skipped?: string;
}

/** DHCP and DNS of a host's networks: one dnsmasq per network, configured by the pure builder in dnsmasq.ts. */
export interface DhcpDriver {
  /** Run the network's DHCP/DNS server for `nics` (this host's, leases and names) and `remoteNics` (names only). */
  ensureDhcp(net: NetSpec, nics: readonly NicSpec[], remoteNics?: readonly NicSpec[]): Promise<DhcpState>;
  /** The pid of the network's running server, null if none. */
  dhcpPid(netId: string): Promise<number | null>;
  /** Stop the network's server. */
  stopDhcp(netId: string): Promise<void>;
  /** Stop the network's server and delete its files. */
  removeDhcp(netId: string): Promise<void>;
}

/**
 * The host's floe firewall (isolation of networks, anti-spoofing per NIC, NAT
 * of host gateways, security groups of the NICs that have them), built whole
 * by the pure builder in ruleset.ts and replaced atomically: after a failed
 * apply the previous ruleset stands. Members of groups coming and going only
 * refill their named sets.
 */
export interface FirewallDriver {
  /** Replace the ruleset; `groups` are the security groups the NICs use or name as remotes. */
  applyFirewall(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups?: readonly SecurityGroupSpec[],
  ): Promise<void>;
  /**
   * Put the current members of the groups into their named sets in place, when that is all that
   * differs from the ruleset this driver last applied (same networks, NICs and rules), in one
   * transaction. False, with nothing done, when the whole ruleset is needed; throws when the host
   * refused the update (the sets are as they were: apply the whole ruleset).
   */
  updateFirewallMembers(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups?: readonly SecurityGroupSpec[],
  ): Promise<boolean>;
}

/**
 * Rate limits of the NICs' taps (tc token buckets, an IFB device per NIC for
 * what its instance sends, nftables packet rates), built by the pure builders
 * in tc.ts. Every method is safe to call again.
 */
export interface RateLimitDriver {
  /** Make the NIC's tap carry `limit` (null or `{}`: none). False when the tap does not exist: nothing was done. */
  applyRateLimit(nicId: string, limit: RateLimit | null): Promise<boolean>;
  /** The limits the NIC's tap carries now (`{}`: none, or no tap). */
  observeRateLimit(nicId: string): Promise<RateLimit>;
  /** Remove what the limits left beside a NIC's tap (its IFB device, its table) once the tap is gone or going. */
  clearRateLimit(nicId: string): Promise<void>;
}

/**
 * NAT of public traffic to the NICs of this host (floating IPs one to one,
 * forwarded ports), built whole by the pure builder in nat-rules.ts and
 * replaced in one transaction, with the public addresses the host answers for.
 */
export interface NatDriver {
  /** Make this host's NAT exactly that of `nics`. */
  applyNat(nics: readonly NatNic[]): Promise<void>;
  /** The public addresses the host holds for NAT, as `address@interface`. */
  heldAddresses(): Promise<string[]>;
}
