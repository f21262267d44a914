import { createHash } from 'node:crypto';
import { FloeError, type NetworkSpec } from '@floe/api';
import { nowIso, type Db } from '../db/index.js';
import {
  eui64,
  formatIpv4,
  formatIpv6,
  parseCidr4,
  parseCidr6,
  parseIpv4,
  parseIpv6,
  type Cidr4,
  type Cidr6,
} from './ip.js';

/*
 * IP address management. The pure half works out which addresses of a network
 * may be handed out (address text is ip.ts's); the store half takes one
 * by inserting it into `ip_addresses`, whose unique (network_id, address) index
 * is the single authority: two transactions racing for one address cannot both
 * insert it, the loser moves on to the next candidate.
 */

// ---------------------------------------------------------------- MACs

/**
 * The MAC of a NIC: locally administered, unicast (`02:` prefix), the other 40
 * bits from sha256 of the NIC id (and `attempt`, bumped on the rare clash on a
 * network). Stable: the same NIC always gets the same MAC.
 */
export function macFor(nicId: string, attempt = 0): string {
  const h = createHash('sha256')
    .update(attempt === 0 ? nicId : `${nicId}#${attempt}`)
    .digest();
  return ['02', ...[...h.subarray(0, 5)].map((x) => x.toString(16).padStart(2, '0'))].join(':');
}

// ---------------------------------------------------------------- plans

/** Everything IPAM derives from a network's spec. */
export interface AddressPlan {
  v4: Cidr4 | null;
  v6: Cidr6 | null;
  /** First and last IPv4 that may go to NICs (the pool of a public network). */
  first4: number | null;
  last4: number | null;
  gateway4: string | null;
  gateway6: string | null;
  /** The host's address on the bridge: DHCP/DNS server, and router with gateway "host". */
  host4: string | null;
  host6: string | null;
  /** Addresses never handed out, canonical text. */
  reserved: Set<string>;
  dnsServers: string[];
}

/**
 * Work out a network's addresses from its spec (pure; validates). Private
 * networks give the host the first usable address (DHCP and DNS need one on the
 * bridge even when isolated); `gateway: <address>` names a VM that routes, which
 * must request that address.
 */
export function addressPlan(
  spec: Pick<NetworkSpec, 'kind' | 'ipv4' | 'ipv6' | 'gateway' | 'dns' | 'reserved' | 'pool'>,
): AddressPlan {
  const v4 = spec.ipv4 === null ? null : parseCidr4(spec.ipv4, 'ipv4');
  const v6 = spec.ipv6 === null ? null : parseCidr6(spec.ipv6, 'ipv6');
  const reserved = new Set<string>();
  for (const [i, r] of spec.reserved.entries()) {
    if (r.includes(':')) {
      const a = parseIpv6(r, `reserved[${i}]`);
      if (v6 === null || a < v6.network || a > v6.last)
        throw new FloeError('validation_failed', `reserved address ${r} is not in the network's IPv6 range`, {
          field: `reserved[${i}]`,
        });
      reserved.add(formatIpv6(a));
    } else {
      const a = parseIpv4(r, `reserved[${i}]`);
      if (v4 === null || a <= v4.network || a >= v4.broadcast)
        throw new FloeError(
          'validation_failed',
          `reserved address ${r} is not a host address of the network's IPv4 range`,
          { field: `reserved[${i}]` },
        );
      reserved.add(formatIpv4(a));
    }
  }
  let first4 = v4 === null ? null : v4.network + 1;
  let last4 = v4 === null ? null : v4.broadcast - 1;
  let host4: string | null = null;
  let host6: string | null = null;
  let gateway4: string | null = null;
  let gateway6: string | null = null;
  if (spec.kind === 'public') {
    if (v4 === null)
      throw new FloeError('validation_failed', 'a public network needs an IPv4 range', { field: 'ipv4' });
    if (spec.pool !== null) {
      const start = parseIpv4(spec.pool.start, 'pool.start');
      const end = parseIpv4(spec.pool.end, 'pool.end');
      if (start > end || start <= v4.network || end >= v4.broadcast) {
        throw new FloeError(
          'validation_failed',
          `the pool ${spec.pool.start}-${spec.pool.end} must be an ascending range of host addresses of ${spec.ipv4}`,
          { field: 'pool' },
        );
      }
      first4 = start;
      last4 = end;
    }
    if (spec.gateway === 'host')
      throw new FloeError(
        'validation_failed',
        'a public network\'s gateway is its upstream router\'s address, or "none"',
        { field: 'gateway' },
      );
  } else if (v4 !== null) {
    host4 = formatIpv4(v4.network + 1);
    reserved.add(host4);
  }
  if (v6 !== null && spec.kind === 'private') {
    host6 = formatIpv6(v6.network + 1n);
    reserved.add(host6);
  }
  if (spec.gateway === 'host') {
    gateway4 = host4;
    gateway6 = host6;
  } else if (spec.gateway !== 'none') {
    const g = parseIpv4(spec.gateway, 'gateway');
    if (v4 === null || g <= v4.network || g >= v4.broadcast)
      throw new FloeError(
        'validation_failed',
        `gateway ${spec.gateway} is not a host address of the network's IPv4 range`,
        { field: 'gateway' },
      );
    gateway4 = formatIpv4(g);
    if (gateway4 === host4)
      throw new FloeError(
        'validation_failed',
        `gateway ${spec.gateway} is the host's own address on the network; pick another, or "host"`,
        { field: 'gateway' },
      );
    // On a public network the router is outside floe: never hand its address out.
    if (spec.kind === 'public') reserved.add(gateway4);
  }
  const dnsServers = spec.dns ? [host4, host6].filter((a): a is string => a !== null) : [];
  return { v4, v6, first4, last4, gateway4, gateway6, host4, host6, reserved, dnsServers };
}

/**
 * The IPv4 addresses of a plan that may go to NICs, lowest first, skipping
 * `taken`. A router VM's address is skipped too: it goes only to the NIC that
 * asks for it, never to whichever VM happens to come next.
 */
export function* freeIpv4(plan: AddressPlan, taken: ReadonlySet<string>): Generator<string> {
  if (plan.first4 === null || plan.last4 === null) return;
  for (let a = plan.first4; a <= plan.last4; a++) {
    const text = formatIpv4(a);
    if (!plan.reserved.has(text) && !taken.has(text) && text !== plan.gateway4) yield text;
  }
}

/** Most IPv6 candidates tried on a network that is not a /64 (which uses EUI-64 instead). */
const V6_SCAN_LIMIT = 65536n;

/** The IPv6 addresses of a plan that may go to NICs, lowest first (from ::2), skipping `taken`. */
function* freeIpv6(plan: AddressPlan, taken: ReadonlySet<string>): Generator<string> {
  if (plan.v6 === null) return;
  const end = plan.v6.last < plan.v6.network + V6_SCAN_LIMIT ? plan.v6.last : plan.v6.network + V6_SCAN_LIMIT;
  for (let a = plan.v6.network + 1n; a <= end; a++) {
    const text = formatIpv6(a);
    if (!plan.reserved.has(text) && !taken.has(text)) yield text;
  }
}

/** Check a requested IPv4 against the plan; returns its canonical text. */
export function checkRequested4(plan: AddressPlan, text: string, field: string): string {
  if (plan.v4 === null) throw new FloeError('validation_failed', 'the network has no IPv4 range', { field });
  const a = parseIpv4(text, field);
  const canonical = formatIpv4(a);
  if (a < plan.first4! || a > plan.last4!)
    throw new FloeError('validation_failed', `${text} is not an address the network hands out`, { field });
  if (plan.reserved.has(canonical))
    throw new FloeError('address_in_use', `${canonical} is reserved on the network`, { field, address: canonical });
  return canonical;
}

/** Check a requested IPv6 against the plan; returns its canonical text. */
function checkRequested6(plan: AddressPlan, text: string, field: string): string {
  if (plan.v6 === null) throw new FloeError('validation_failed', 'the network has no IPv6 range', { field });
  const a = parseIpv6(text, field);
  const canonical = formatIpv6(a);
  if (a <= plan.v6.network || a > plan.v6.last)
    throw new FloeError('validation_failed', `${text} is not in the network's IPv6 range`, { field });
  if (plan.reserved.has(canonical))
    throw new FloeError('address_in_use', `${canonical} is reserved on the network`, { field, address: canonical });
  return canonical;
}

// ---------------------------------------------------------------- store

/** What a NIC asks IPAM for: a family may be given an address, or left to IPAM. */
export interface AddressRequest {
  ipv4?: string | undefined;
  ipv6?: string | undefined;
}

/** The addresses a NIC got. */
export interface Allocation {
  ipv4: string | null;
  ipv6: string | null;
}

/** Take `address` on a network for a NIC; false when someone has it (or is taking it in a transaction still open). */
async function claimAddress(
  db: Db,
  networkId: string,
  family: 4 | 6,
  address: string,
  nicId: string,
): Promise<boolean> {
  const res = await db
    .insertInto('ip_addresses')
    .values({ network_id: networkId, address, family, nic_id: nicId, created_at: nowIso() })
    .onConflict((oc) => oc.columns(['network_id', 'address']).doNothing())
    .executeTakeFirst();
  return Number(res.numInsertedOrUpdatedRows ?? 0n) === 1;
}

async function taken(db: Db, networkId: string, family: 4 | 6): Promise<Set<string>> {
  const rows = await db
    .selectFrom('ip_addresses')
    .select('address')
    .where('network_id', '=', networkId)
    .where('family', '=', family)
    .execute();
  return new Set(rows.map((r) => r.address));
}

async function claimNext(
  db: Db,
  networkId: string,
  family: 4 | 6,
  candidates: Iterable<string>,
  nicId: string,
  networkName: string,
): Promise<string> {
  // Another transaction may take a candidate between our read and our insert: the unique index refuses
  // ours (ON CONFLICT DO NOTHING), and we go on with the next one.
  for (const address of candidates) {
    if (await claimAddress(db, networkId, family, address, nicId)) return address;
  }
  throw new FloeError('network_full', `network "${networkName}" has no free IPv${family} address left`, {
    network: networkName,
    family,
  });
}

/**
 * Give a NIC its addresses on a network, inside the caller's transaction:
 * requested ones if free (`address_in_use` otherwise), else the lowest free
 * IPv4, and for IPv6 the EUI-64 address of `mac` on a /64 or the lowest free one.
 */
export async function allocate(
  db: Db,
  network: { id: string; name: string },
  plan: AddressPlan,
  nicId: string,
  mac: string,
  req: AddressRequest,
  field = 'networks',
): Promise<Allocation> {
  let ipv4: string | null = null;
  let ipv6: string | null = null;
  if (req.ipv4 !== undefined) {
    ipv4 = checkRequested4(plan, req.ipv4, `${field}.ipv4`);
    if (!(await claimAddress(db, network.id, 4, ipv4, nicId))) {
      throw new FloeError('address_in_use', `${ipv4} is already used on network "${network.name}"`, {
        field: `${field}.ipv4`,
        address: ipv4,
      });
    }
  } else if (plan.v4 !== null) {
    ipv4 = await claimNext(db, network.id, 4, freeIpv4(plan, await taken(db, network.id, 4)), nicId, network.name);
  }
  if (req.ipv6 !== undefined) {
    ipv6 = checkRequested6(plan, req.ipv6, `${field}.ipv6`);
    if (!(await claimAddress(db, network.id, 6, ipv6, nicId))) {
      throw new FloeError('address_in_use', `${ipv6} is already used on network "${network.name}"`, {
        field: `${field}.ipv6`,
        address: ipv6,
      });
    }
  } else if (plan.v6 !== null) {
    if (plan.v6.prefix === 64) {
      ipv6 = formatIpv6(eui64(plan.v6.network, mac));
      if (!(await claimAddress(db, network.id, 6, ipv6, nicId))) {
        throw new FloeError(
          'address_in_use',
          `the SLAAC address ${ipv6} of MAC ${mac} is taken on network "${network.name}"`,
          { address: ipv6 },
        );
      }
    } else {
      ipv6 = await claimNext(db, network.id, 6, freeIpv6(plan, await taken(db, network.id, 6)), nicId, network.name);
    }
  }
  return { ipv4, ipv6 };
}

/**
 * Take one IPv4 address of a network for `ownerId` (a floating IP) inside the caller's transaction: the
 * one requested if free (`address_in_use` otherwise), else the lowest free one of the range or pool.
 */
export async function allocateIpv4(
  db: Db,
  network: { id: string; name: string },
  plan: AddressPlan,
  ownerId: string,
  requested: string | undefined,
  field: string,
): Promise<string> {
  if (plan.v4 === null)
    throw new FloeError('validation_failed', `network "${network.name}" has no IPv4 range`, { field });
  if (requested === undefined)
    return claimNext(db, network.id, 4, freeIpv4(plan, await taken(db, network.id, 4)), ownerId, network.name);
  const address = checkRequested4(plan, requested, field);
  if (!(await claimAddress(db, network.id, 4, address, ownerId)))
    throw new FloeError('address_in_use', `${address} is already used on network "${network.name}"`, {
      field,
      address,
    });
  return address;
}

/** Give back every address of these NICs. */
export async function release(db: Db, nicIds: readonly string[]): Promise<void> {
  if (nicIds.length === 0) return;
  await db
    .deleteFrom('ip_addresses')
    .where('nic_id', 'in', [...nicIds])
    .execute();
}

/** One of `addresses` some NIC of the network holds, or undefined. */
export async function firstHeld(db: Db, networkId: string, addresses: readonly string[]): Promise<string | undefined> {
  if (addresses.length === 0) return undefined;
  const row = await db
    .selectFrom('ip_addresses')
    .select('address')
    .where('network_id', '=', networkId)
    .where('address', 'in', [...addresses])
    .executeTakeFirst();
  return row?.address;
}

/** Forget every address of a network (it is being deleted). */
export async function releaseNetwork(db: Db, networkId: string): Promise<void> {
  await db.deleteFrom('ip_addresses').where('network_id', '=', networkId).execute();
}
