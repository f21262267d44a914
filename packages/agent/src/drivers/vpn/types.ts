/** How WireGuard runs on a host: the kernel module, or the wireguard-go userspace daemon. */
export type WireguardMode = 'kernel' | 'wireguard-go';

/** One peer of a gateway interface. */
export interface VpnPeerSpec {
  readonly publicKey: string;
  /** Its own addresses and the subnets behind it; routed into the interface. */
  readonly allowedIps: readonly string[];
  /** Where the gateway dials it (site-to-site), or absent/null: the peer dials in. */
  readonly endpoint?: string | null;
}

/** One WireGuard interface of a gateway: a VPN network. */
export interface VpnInterfaceSpec {
  /** Interface name (`fv` + 11 hex, see names.ts). */
  readonly name: string;
  readonly listenPort: number;
  readonly privateKey: string;
  /** The gateway's addresses with prefix length (`fd00::1/64`). */
  readonly addresses: readonly string[];
  /** The only destinations its peers may reach (and the only sources that may open connections to them). */
  readonly reach: readonly string[];
  readonly peers: readonly VpnPeerSpec[];
}

/** What one peer of an interface has done, as `wg show dump` reports it. */
export interface VpnPeerStats {
  readonly publicKey: string;
  readonly endpoint: string | null;
  readonly allowedIps: readonly string[];
  /** Seconds since the epoch of the latest handshake, 0 for none yet. */
  readonly latestHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
}

/** What an interface has, read back. */
export interface ObservedInterface {
  readonly publicKey: string;
  readonly listenPort: number;
  readonly peers: readonly VpnPeerStats[];
}

/**
 * The VPN area of a host: WireGuard interfaces with their peers, addresses, routes, and the nftables
 * table that keeps each VPN network's peers to what they may reach.
 */
export interface VpnDriver {
  readonly mode: WireguardMode;
  /** Make the interface match (peers changed in place: the others keep their sessions). */
  ensure(spec: VpnInterfaceSpec): Promise<void>;
  /** Remove an interface. */
  remove(name: string): Promise<void>;
  /** The floe interfaces that exist. */
  list(): Promise<string[]>;
  /** Write the filter for exactly these interfaces (none: the table goes). */
  applyFilter(specs: readonly VpnInterfaceSpec[]): Promise<void>;
  /** Handshakes and transfer counters of an interface's peers; null when it does not exist. */
  stats(name: string): Promise<VpnPeerStats[] | null>;
}
