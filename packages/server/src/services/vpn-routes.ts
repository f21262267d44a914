import type { VpnPoolSpec } from '@floe/api';
import { fromJson, type Db } from '../db/index.js';
import { networkPlan, rangeText } from './vpn-plan.js';

/*
 * What a VPN gateway host routes for the private networks connected to its VPN networks: the VPN
 * networks' prefixes and the subnets behind their site-to-site peers. The network's desired state
 * carries them to the host, whose DHCP server tells guests that do not route through it (see the
 * agent's dnsmasq configuration).
 */

/** One VPN network as the route builder reads it. */
export interface VpnRouteSource {
  readonly pool: VpnPoolSpec;
  readonly slot: number;
  /** Ids of the private networks it is connected to. */
  readonly networks: readonly string[];
  /** Subnets behind its peers (site-to-site). */
  readonly subnets: readonly string[];
}

/**
 * By private network id: the prefixes its guests reach through VPN networks served by the host
 * (IPv6 prefix, IPv4 prefix when the pool has one, peers' subnets), each once, in a stable order.
 * Pure.
 */
export function vpnRoutesByNetwork(sources: readonly VpnRouteSource[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of sources) {
    const plan = networkPlan(s.pool, s.slot);
    const routes = [rangeText(plan.ipv6), ...(plan.ipv4 === null ? [] : [rangeText(plan.ipv4)]), ...s.subnets];
    for (const id of s.networks) {
      const list = out.get(id) ?? [];
      for (const r of routes) if (!list.includes(r)) list.push(r);
      out.set(id, list);
    }
  }
  return out;
}

/** The VPN routes of these networks on `hostId`: only VPN networks of pools the host serves count. */
export async function vpnRoutesForHost(
  db: Db,
  hostId: string,
  networkIds: readonly string[],
): Promise<Map<string, string[]>> {
  if (networkIds.length === 0) return new Map();
  const pools = new Map(
    (await db.selectFrom('vpn_pools').select(['id', 'spec']).execute())
      .map((p) => [p.id, fromJson<VpnPoolSpec>(p.spec)] as const)
      .filter(([, spec]) => spec.hosts.includes(hostId)),
  );
  if (pools.size === 0) return new Map();
  const nets = (
    await db
      .selectFrom('vpn_networks')
      .select(['id', 'pool_id', 'slot', 'spec'])
      .where('pool_id', 'in', [...pools.keys()])
      .orderBy('id')
      .execute()
  )
    .map((n) => ({
      ...n,
      networks: fromJson<{ networks: string[] }>(n.spec).networks.filter((id) => networkIds.includes(id)),
    }))
    .filter((n) => n.networks.length > 0);
  if (nets.length === 0) return new Map();
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
  return vpnRoutesByNetwork(
    nets.map((n) => ({
      pool: pools.get(n.pool_id)!,
      slot: Number(n.slot),
      networks: n.networks,
      subnets: peers.filter((p) => p.vpn_network_id === n.id).flatMap((p) => fromJson<string[]>(p.subnets)),
    })),
  );
}
