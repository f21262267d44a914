import type { DesiredNetwork } from '@floe/api';
import type { Db } from '../db/index.js';
import { underlayAddresses } from './hosts.js';
import { addressPlan } from './ipam.js';
import { networkSpecOf } from './network-spec.js';
import type { NetworkLookup, NicService } from './nics.js';
import { gatewayAddresses, gatewayHosts, loadVpnLinks, portFor, routesServedBy } from './vpn-gateways.js';

/**
 * The agent-facing view of networks: every network with members on `hostId` or connected to a VPN
 * network it serves as a gateway, with the VXLAN peers (underlay addresses of the other hosts with
 * members, and of its VPN gateways), the DHCP leases of all its NICs, what the host routes for it as a
 * VPN gateway, and its VPN router port (vpn-gateways.ts).
 */
export async function desiredNetworksForHost(
  db: Db,
  networks: NetworkLookup,
  nics: NicService,
  hostId: string,
): Promise<DesiredNetwork[]> {
  const links = await loadVpnLinks(db);
  const served = links.filter((l) => l.hosts.includes(hostId)).flatMap((l) => l.networks);
  const networkIds = [...new Set([...(await nics.networksOnHost(db, hostId)), ...served])];
  if (networkIds.length === 0) return [];
  const gateways = gatewayHosts(links);
  // Without VPN networks there are no gateway addresses to look up.
  const addresses =
    links.length === 0 ? new Map<string, Map<string, string>>() : await gatewayAddresses(db, networkIds);
  const rows = await networks.byIds(db, networkIds);
  const placed = await nics.placed(db, networkIds);
  const vpnRoutes = routesServedBy(links, hostId, networkIds);
  const others = [...placed.map((n) => n.host_id), ...networkIds.flatMap((id) => gateways.get(id) ?? [])].filter(
    (h): h is string => h !== null && h !== hostId,
  );
  const underlay = await underlayAddresses(db, [...new Set(others)]);
  return [...rows.values()]
    .sort((a, b) => (a.id < b.id ? -1 : 1))
    .map((net) => {
      const spec = networkSpecOf(net.spec);
      const plan = addressPlan(spec);
      const members = placed.filter((n) => n.network_id === net.id);
      const peers = [
        ...new Set(
          [...members.map((m) => m.host_id), ...(gateways.get(net.id) ?? [])]
            .map((h) => (h === null || h === hostId ? null : (underlay.get(h) ?? null)))
            .filter((a): a is string => a !== null),
        ),
      ].sort();
      const port =
        spec.kind === 'private' ? portFor(links, net.id, hostId, addresses.get(net.id) ?? new Map()) : undefined;
      return {
        id: net.id,
        name: net.name,
        project: net.project,
        kind: spec.kind,
        vni: Number(net.vni),
        mtu: spec.mtu,
        ipv4: spec.ipv4,
        ipv6: spec.ipv6,
        gateway: spec.gateway,
        gateway4: plan.gateway4,
        gateway6: plan.gateway6,
        host_ipv4: plan.host4,
        host_ipv6: plan.host6,
        dns: spec.dns,
        dhcpv6: spec.dhcpv6,
        uplink: spec.uplink,
        peers,
        ...(vpnRoutes.has(net.id) ? { vpn_routes: vpnRoutes.get(net.id) } : {}),
        ...(port === undefined ? {} : { vpn_port: port }),
        // The first NIC of an instance on a network answers to its name; more get name-<slot>.
        leases: members.map((m, i) => ({
          nic_id: m.nic_id,
          instance_id: m.instance_id,
          mac: m.mac,
          ipv4: m.ipv4,
          ipv6: m.ipv6,
          hostname: members.findIndex((o) => o.name === m.name) === i ? m.name : `${m.name}-${Number(m.idx)}`,
        })),
      };
    });
}
