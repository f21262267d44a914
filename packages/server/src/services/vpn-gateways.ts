import { FloeError, type DesiredVpnPort, type VpnPoolSpec } from '@floe/api';
import { fromJson, type Db } from '../db/index.js';
import { allocateIpv4, addressPlan, macFor } from './ipam.js';
import { networkSpecOf } from './network-spec.js';
import { networkPlan, rangeText } from './vpn-plan.js';

/*
 * VPN traffic to VMs on hosts other than the gateway. Every host of a private network answers as its
 * gateway with the same MAC and address, which never cross the VXLAN; so each gateway host gets a
 * router port of its own on every network its VPN networks connect (own MAC, own address from the
 * network's IPAM), and the other hosts of the network route the VPN prefixes to that port over the
 * VXLAN. A gateway host is on the network's VXLAN even without VMs there.
 */

/** One VPN network as the planner reads it: who serves it, what it connects, what it routes. */
export interface VpnLink {
  /** The pool's gateway hosts, in the pool's order: the first routes for the other hosts. */
  readonly hosts: readonly string[];
  /** Ids of the private networks it is connected to. */
  readonly networks: readonly string[];
  /** Its prefixes and the subnets behind its peers. */
  readonly routes: readonly string[];
}

/** The owner of a gateway host's address in IPAM (`ip_addresses.nic_id`): one per network and host. */
function gatewayOwner(hostId: string): string {
  return `vpn-gw:${hostId}`;
}

/** The MAC of a host's router port on a network: stable, locally administered, unique per pair. */
export function portMac(networkId: string, hostId: string): string {
  return macFor(`vpn-port:${networkId}:${hostId}`);
}

/** The gateway hosts of each connected network (every host of every pool that serves one of its VPN networks). Pure. */
export function gatewayHosts(links: readonly VpnLink[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const l of links)
    for (const n of l.networks) {
      const list = out.get(n) ?? [];
      for (const h of l.hosts) if (!list.includes(h)) list.push(h);
      out.set(n, list);
    }
  for (const list of out.values()) list.sort();
  return out;
}

/**
 * The router port of `hostId` on a network, or undefined when it needs none: a gateway host's port
 * holds its address (`addresses`, by host); a host that is not a gateway of a VPN network routes that
 * network's prefixes through the port of the pool's first host (where guests route through the host;
 * elsewhere its DHCP server names that port to them). Pure.
 */
export function portFor(
  links: readonly VpnLink[],
  networkId: string,
  hostId: string,
  addresses: ReadonlyMap<string, string>,
): DesiredVpnPort | undefined {
  const mine = links.filter((l) => l.networks.includes(networkId));
  if (mine.length === 0) return undefined;
  const isGateway = mine.some((l) => l.hosts.includes(hostId));
  const via = new Map<string, string[]>();
  for (const l of mine) {
    const first = l.hosts[0];
    if (first === undefined || l.hosts.includes(hostId)) continue;
    const routes = via.get(first) ?? [];
    for (const r of l.routes) if (!routes.includes(r)) routes.push(r);
    via.set(first, routes);
  }
  const gateways = [...via.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([h, routes]) => ({ mac: portMac(networkId, h), ipv4: addresses.get(h) ?? null, routes }));
  if (!isGateway && gateways.length === 0) return undefined;
  return { mac: portMac(networkId, hostId), ipv4: isGateway ? (addresses.get(hostId) ?? null) : null, gateways };
}

/**
 * What a host routes as a VPN gateway, by private network id: the prefixes and site subnets of the VPN
 * networks it serves that connect the network, each once, in a stable order. Its DHCP server names them
 * to guests that do not route through the host. Pure.
 */
export function routesServedBy(
  links: readonly VpnLink[],
  hostId: string,
  networkIds: readonly string[],
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const l of links) {
    if (!l.hosts.includes(hostId)) continue;
    for (const id of l.networks) {
      if (!networkIds.includes(id)) continue;
      const list = out.get(id) ?? [];
      for (const r of l.routes) if (!list.includes(r)) list.push(r);
      out.set(id, list);
    }
  }
  return out;
}

/** Every VPN network with its pool's hosts, connected networks and routes; only those connected to `networkIds` when given. */
export async function loadVpnLinks(db: Db, networkIds?: readonly string[]): Promise<VpnLink[]> {
  if (networkIds !== undefined && networkIds.length === 0) return [];
  // VPN networks first: most installations have none, and then nothing else is read.
  const nets = (await db.selectFrom('vpn_networks').select(['id', 'pool_id', 'slot', 'spec']).orderBy('id').execute())
    .map((n) => ({ ...n, networks: fromJson<{ networks: string[] }>(n.spec).networks }))
    .filter(
      (n) => n.networks.length > 0 && (networkIds === undefined || n.networks.some((id) => networkIds.includes(id))),
    );
  if (nets.length === 0) return [];
  const pools = new Map(
    (
      await db
        .selectFrom('vpn_pools')
        .select(['id', 'spec'])
        .where('id', 'in', [...new Set(nets.map((n) => n.pool_id))])
        .execute()
    ).map((p) => [p.id, fromJson<VpnPoolSpec>(p.spec)] as const),
  );
  const peers = await db
    .selectFrom('vpn_peers')
    .select(['vpn_network_id', 'subnets'])
    .where(
      'vpn_network_id',
      'in',
      nets.map((n) => n.id),
    )
    .orderBy('id')
    .execute();
  return nets.map((n) => {
    const pool = pools.get(n.pool_id)!;
    const plan = networkPlan(pool, Number(n.slot));
    return {
      hosts: pool.hosts,
      networks: n.networks,
      routes: [
        rangeText(plan.ipv6),
        ...(plan.ipv4 === null ? [] : [rangeText(plan.ipv4)]),
        ...peers.filter((p) => p.vpn_network_id === n.id).flatMap((p) => fromJson<string[]>(p.subnets)),
      ],
    };
  });
}

/** The gateway hosts' addresses on these networks, by network and host. */
export async function gatewayAddresses(
  db: Db,
  networkIds: readonly string[],
): Promise<Map<string, Map<string, string>>> {
  const out = new Map<string, Map<string, string>>();
  if (networkIds.length === 0) return out;
  const rows = await db
    .selectFrom('ip_addresses')
    .select(['network_id', 'address', 'nic_id'])
    .where('network_id', 'in', [...networkIds])
    .where('nic_id', 'like', `${gatewayOwner('')}%`)
    .execute();
  for (const r of rows) {
    const byHost = out.get(r.network_id) ?? new Map<string, string>();
    byHost.set(String(r.nic_id).slice(gatewayOwner('').length), r.address);
    out.set(r.network_id, byHost);
  }
  return out;
}

/**
 * Give each gateway host an address on each of these networks that a VPN network connects, and take
 * back the addresses of hosts that no longer are gateways there; inside the caller's transaction.
 * A network without IPv4 needs none; a full one refuses with `network_full`.
 */
export async function syncGatewayAddresses(db: Db, networkIds: readonly string[]): Promise<void> {
  if (networkIds.length === 0) return;
  const want = gatewayHosts(await loadVpnLinks(db, networkIds));
  const have = await gatewayAddresses(db, networkIds);
  const rows = await db
    .selectFrom('networks')
    .select(['id', 'name', 'spec'])
    .where('id', 'in', [...networkIds])
    .execute();
  for (const net of rows) {
    const spec = networkSpecOf(net.spec);
    const hosts = spec.kind === 'private' ? (want.get(net.id) ?? []) : [];
    const held = have.get(net.id) ?? new Map<string, string>();
    const gone = [...held.keys()].filter((h) => !hosts.includes(h));
    if (gone.length > 0)
      await db
        .deleteFrom('ip_addresses')
        .where('network_id', '=', net.id)
        .where(
          'nic_id',
          'in',
          gone.map((h) => gatewayOwner(h)),
        )
        .execute();
    const plan = addressPlan(spec);
    if (plan.v4 === null) continue;
    for (const h of hosts) {
      if (held.has(h)) continue;
      try {
        await allocateIpv4(db, net, plan, gatewayOwner(h), undefined, 'networks');
      } catch (err) {
        if (err instanceof FloeError && err.code === 'network_full')
          throw new FloeError(
            'network_full',
            `network "${net.name}" has no free IPv4 address left for the VPN gateway's port`,
            { network: net.name, family: 4 },
          );
        throw err;
      }
    }
  }
}
