import { FloeError, type VpnPoolSpec } from '@floe/api';
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from './ip.js';

/*
 * The address plan of VPN pools, networks and peers (pure): how a pool's prefixes are carved into
 * networks, which addresses a peer gets, whether two prefixes overlap, and the wg-quick file a peer
 * runs. The services read and write rows; every decision about addresses is made here.
 */

/** A CIDR of either family as numbers: `bits` is 32 or 128. */
export interface Range {
  readonly family: 4 | 6;
  readonly network: bigint;
  readonly prefix: number;
}

const bitsOf = (r: { family: 4 | 6 }) => (r.family === 4 ? 32 : 128);

/** Parse any IPv4 or IPv6 CIDR (host bits must be clear); `validation_failed` on `field` otherwise. */
export function parseRange(text: string, field: string, family?: 4 | 6): Range {
  const m = /^([^/]+)\/([0-9]{1,3})$/.exec(text);
  const isV6 = m !== null && m[1]!.includes(':');
  const fam: 4 | 6 = isV6 ? 6 : 4;
  const prefix = m === null ? NaN : Number(m[2]);
  if (m === null || (family !== undefined && family !== fam) || !(prefix >= 0 && prefix <= (isV6 ? 128 : 32)))
    throw new FloeError('validation_failed', `"${text}" is not an ${family === 4 ? 'IPv4' : 'IPv6'} CIDR`, { field });
  const network = isV6 ? parseIpv6(m[1]!, field) : BigInt(parseIpv4(m[1]!, field));
  const bits = isV6 ? 128 : 32;
  if (network & ((1n << BigInt(bits - prefix)) - 1n))
    throw new FloeError('validation_failed', `"${text}" has host bits set`, { field });
  return { family: fam, network, prefix };
}

/** Canonical text of an address of the range's family. */
function addressText(family: 4 | 6, n: bigint): string {
  return family === 4 ? formatIpv4(Number(n)) : formatIpv6(n);
}

/** Canonical CIDR text. */
export function rangeText(r: Range): string {
  return `${addressText(r.family, r.network)}/${r.prefix}`;
}

/** Whether two ranges share an address (never across families). */
function overlaps(a: Range, b: Range): boolean {
  if (a.family !== b.family) return false;
  const p = BigInt(bitsOf(a) - Math.min(a.prefix, b.prefix));
  return a.network >> p === b.network >> p;
}

/** The first pair of `a` × `b` that overlaps, or null. */
export function firstOverlap(a: readonly Range[], b: readonly Range[]): [Range, Range] | null {
  for (const x of a) for (const y of b) if (overlaps(x, y)) return [x, y];
  return null;
}

/** Throws vpn_prefix_overlap naming both ranges. */
export function overlapError(mine: Range, theirs: Range, what: string): FloeError {
  return new FloeError('vpn_prefix_overlap', `${rangeText(mine)} overlaps ${rangeText(theirs)} (${what})`, {
    prefix: rangeText(mine),
    overlaps: rangeText(theirs),
    with: what,
  });
}

/** Most networks a pool counts (a /40 cut into /64s has 16M: far more than listen ports anyway). */
const MAX_SLOTS = 65_535;
/** Most peers a VPN network holds. */
const MAX_PEERS = 65_533;

/** The normalised spec of a new pool, checked (pure). */
export function poolSpecFrom(body: {
  ipv6: string;
  network_prefix?: number;
  ipv4?: string | null;
  ipv4_prefix?: number;
  listen_port?: number;
  endpoint: string;
  hosts: string[];
}): VpnPoolSpec {
  const v6 = parseRange(body.ipv6, 'ipv6', 6);
  const network_prefix = body.network_prefix ?? 64;
  if (network_prefix < v6.prefix || network_prefix > 120)
    throw new FloeError('validation_failed', `network_prefix must be from /${v6.prefix} (the pool) to /120`, {
      field: 'network_prefix',
    });
  const v4 = body.ipv4 === undefined || body.ipv4 === null ? null : parseRange(body.ipv4, 'ipv4', 4);
  const ipv4_prefix = v4 === null ? null : (body.ipv4_prefix ?? 24);
  if (v4 !== null && (ipv4_prefix! < v4.prefix || ipv4_prefix! > 30))
    throw new FloeError('validation_failed', `ipv4_prefix must be from /${v4.prefix} (the pool) to /30`, {
      field: 'ipv4_prefix',
    });
  return {
    ipv6: rangeText(v6),
    network_prefix,
    ipv4: v4 === null ? null : rangeText(v4),
    ipv4_prefix,
    hosts: body.hosts,
    listen_port: body.listen_port ?? 51820,
    endpoint: body.endpoint,
  };
}

/** How many VPN networks a pool holds: prefixes of each family, and listen ports from its first. */
export function poolCapacity(spec: VpnPoolSpec): number {
  const v6 = parseRange(spec.ipv6, 'ipv6');
  const fit = (from: number, to: number) => (to - from >= 17 ? MAX_SLOTS : 2 ** (to - from));
  let n = Math.min(fit(v6.prefix, spec.network_prefix), MAX_SLOTS, 65_536 - spec.listen_port);
  if (spec.ipv4 !== null && spec.ipv4_prefix !== null)
    n = Math.min(n, fit(parseRange(spec.ipv4, 'ipv4').prefix, spec.ipv4_prefix));
  return n;
}

/** The lowest slot not in `taken` below `capacity`, or vpn_pool_exhausted. */
export function freeSlot(taken: readonly number[], capacity: number, pool: string): number {
  const used = new Set(taken);
  for (let i = 0; i < capacity; i++) if (!used.has(i)) return i;
  throw new FloeError('vpn_pool_exhausted', `VPN pool "${pool}" has no free prefix: all ${capacity} are taken`, {
    pool,
    capacity,
  });
}

/** What VPN network `slot` of a pool has: its prefixes, the gateway's addresses and its listen port. */
export interface NetworkPlan {
  readonly ipv6: Range;
  readonly ipv4: Range | null;
  /** The gateway's addresses with the network's prefix length (`fd00::1/64`). */
  readonly gatewayAddresses: string[];
  readonly listenPort: number;
  readonly endpoint: string;
}

/** The plan of VPN network `slot` of a pool. */
export function networkPlan(spec: VpnPoolSpec, slot: number): NetworkPlan {
  const pool6 = parseRange(spec.ipv6, 'ipv6');
  const ipv6: Range = {
    family: 6,
    network: pool6.network + (BigInt(slot) << BigInt(128 - spec.network_prefix)),
    prefix: spec.network_prefix,
  };
  let ipv4: Range | null = null;
  if (spec.ipv4 !== null && spec.ipv4_prefix !== null) {
    const pool4 = parseRange(spec.ipv4, 'ipv4');
    ipv4 = {
      family: 4,
      network: pool4.network + (BigInt(slot) << BigInt(32 - spec.ipv4_prefix)),
      prefix: spec.ipv4_prefix,
    };
  }
  const gatewayAddresses = [`${addressText(6, ipv6.network + 1n)}/${ipv6.prefix}`];
  if (ipv4 !== null) gatewayAddresses.push(`${addressText(4, ipv4.network + 1n)}/${ipv4.prefix}`);
  const listenPort = spec.listen_port + slot;
  const host = spec.endpoint.includes(':') ? `[${spec.endpoint}]` : spec.endpoint;
  return { ipv6, ipv4, gatewayAddresses, listenPort, endpoint: `${host}:${listenPort}` };
}

/** How many peers a network holds (its IPv4 subnet less network, gateway and broadcast). */
function peerCapacity(plan: NetworkPlan): number {
  const v6 = plan.ipv6.prefix >= 112 ? 2 ** (128 - plan.ipv6.prefix) - 2 : MAX_PEERS;
  const v4 = plan.ipv4 === null ? MAX_PEERS : 2 ** (32 - plan.ipv4.prefix) - 3;
  return Math.min(v6, v4, MAX_PEERS);
}

/** The lowest free peer index (from 2: 1 is the gateway), or vpn_pool_exhausted. */
export function freePeerIndex(taken: readonly number[], plan: NetworkPlan, network: string): number {
  const used = new Set(taken);
  const capacity = peerCapacity(plan);
  for (let i = 2; i < capacity + 2; i++) if (!used.has(i)) return i;
  throw new FloeError(
    'vpn_pool_exhausted',
    `VPN network "${network}" has no free peer address: ${capacity} are taken`,
    {
      vpn_network: network,
      capacity,
    },
  );
}

/** A peer's own addresses, as single-address CIDRs: IPv6 first. */
export function peerAddresses(plan: NetworkPlan, index: number): { ipv6: string; ipv4: string | null } {
  return {
    ipv6: `${addressText(6, plan.ipv6.network + BigInt(index))}/128`,
    ipv4: plan.ipv4 === null ? null : `${addressText(4, plan.ipv4.network + BigInt(index))}/32`,
  };
}

/** Canonical subnets behind a site-to-site peer (`subnets[i]` names a malformed one). */
export function canonicalSubnets(subnets: readonly string[]): Range[] {
  return subnets.map((s, i) => parseRange(s, `subnets[${i}]`));
}

/** What a wg-quick file for a peer says. */
export interface PeerConfigInput {
  /** The peer's private key, or null when floe never had it (a placeholder line then). */
  privateKey: string | null;
  addresses: readonly string[];
  gatewayPublicKey: string;
  endpoint: string;
  /** What the peer routes into the tunnel: the VPN network's prefixes and the connected networks. */
  allowedIps: readonly string[];
}

/** Placeholder for a private key floe does not have. */
const PRIVATE_KEY_PLACEHOLDER = '<your private key>';

/**
 * A wg-quick configuration file. No DNS line (wg-quick would need resolvconf); a keepalive so that
 * peers behind NAT stay reachable.
 */
export function wgQuickConfig(c: PeerConfigInput): string {
  return [
    '[Interface]',
    `PrivateKey = ${c.privateKey ?? PRIVATE_KEY_PLACEHOLDER}`,
    `Address = ${c.addresses.join(', ')}`,
    '',
    '[Peer]',
    `PublicKey = ${c.gatewayPublicKey}`,
    `Endpoint = ${c.endpoint}`,
    `AllowedIPs = ${c.allowedIps.join(', ')}`,
    'PersistentKeepalive = 25',
    '',
  ].join('\n');
}
