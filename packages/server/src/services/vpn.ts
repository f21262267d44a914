import { join } from 'node:path';
import type { DesiredVpn, VpnNetworkStats, VpnPoolSpec } from '@floe/api';
import { fromJson, type Db } from '../db/index.js';
import type { Principal, ServiceContext } from './context.js';
import type { NetworkService } from './networks.js';
import type { ProjectService } from './projects.js';
import { SecretBox } from './vpn-keys.js';
import { networkRanges, VpnNetworkService, type VpnNetworkSpecRow } from './vpn-networks.js';
import { VpnPeerService } from './vpn-peers.js';
import { VpnPoolService } from './vpn-pools.js';
import { networkPlan, peerAddresses, rangeText } from './vpn-plan.js';
import { vpnNetworkStats, type AskGateway } from './vpn-stats.js';

/** The file under the data directory that holds the key sealing the gateways' private keys. */
const VPN_SECRET_FILE = 'vpn-secret.key';

/** VPN pools, networks and peers, and the gateways' view of them. */
export class VpnService {
  readonly pools: VpnPoolService;
  readonly networks: VpnNetworkService;
  readonly peers: VpnPeerService;
  private box: SecretBox | null = null;

  constructor(
    private readonly ctx: ServiceContext,
    projects: ProjectService,
    private readonly networkService: NetworkService,
  ) {
    this.pools = new VpnPoolService(ctx);
    const announce = (ids: readonly string[], networkIds: readonly string[] = []) => this.announce(ids, networkIds);
    this.networks = new VpnNetworkService(ctx, projects, this.pools, networkService, () => this.secretBox(), announce);
    this.peers = new VpnPeerService(ctx, this.networks, announce);
  }

  /** Every peer's latest handshake and transfer, as the gateways of the VPN network's pool count them. */
  stats(principal: Principal, ref: string, project: string, ask: AskGateway): Promise<VpnNetworkStats> {
    return vpnNetworkStats(this.ctx.store.db, this.networks, principal, ref, project, ask);
  }

  private secretBox(): SecretBox {
    this.box ??= SecretBox.fromFile(join(this.ctx.config.dataDir, VPN_SECRET_FILE));
    return this.box;
  }

  /**
   * Tell the gateways of these pools that their VPN networks changed, and the hosts of the networks
   * they connect (and of `networkIds`, connected before the change) that their routes may have.
   */
  async announce(poolIds: readonly string[], networkIds: readonly string[] = []): Promise<void> {
    if (poolIds.length === 0) return;
    const pools = await this.ctx.store.db
      .selectFrom('vpn_pools')
      .select('spec')
      .where('id', 'in', [...poolIds])
      .execute();
    const hosts = new Set(pools.flatMap((p) => fromJson<VpnPoolSpec>(p.spec).hosts));
    for (const h of hosts) {
      this.ctx.signals.send('desired', 'vpn', h);
      // The connected networks' DHCP answers name the VPN prefixes (vpn-gateways.ts).
      this.ctx.signals.send('desired', 'network', h);
    }
    const nets = await this.ctx.store.db
      .selectFrom('vpn_networks')
      .select('spec')
      .where('pool_id', 'in', [...poolIds])
      .execute();
    const connected = [
      ...new Set([...networkIds, ...nets.flatMap((n) => fromJson<VpnNetworkSpecRow>(n.spec).networks)]),
    ];
    this.networkService.announce((await this.networkService.hostsOf(connected)).filter((h) => !hosts.has(h)));
  }

  /** Every VPN network a gateway host serves: one WireGuard interface each, with its peers and what they reach. */
  async desiredForHost(hostId: string, db: Db = this.ctx.store.db): Promise<DesiredVpn[]> {
    const pools = (await db.selectFrom('vpn_pools').select(['id', 'spec']).execute())
      .map((p) => ({ id: p.id, spec: fromJson<VpnPoolSpec>(p.spec) }))
      .filter((p) => p.spec.hosts.includes(hostId));
    if (pools.length === 0) return [];
    const specs = new Map(pools.map((p) => [p.id, p.spec]));
    const nets = await db
      .selectFrom('vpn_networks')
      .selectAll()
      .where(
        'pool_id',
        'in',
        pools.map((p) => p.id),
      )
      .orderBy('id')
      .execute();
    if (nets.length === 0) return [];
    const peers = await db
      .selectFrom('vpn_peers')
      .selectAll()
      .where(
        'vpn_network_id',
        'in',
        nets.map((n) => n.id),
      )
      .orderBy('id')
      .execute();
    const connected = await networkRanges(db, [
      ...new Set(nets.flatMap((n) => fromJson<VpnNetworkSpecRow>(n.spec).networks)),
    ]);
    const box = this.secretBox();
    return nets.map((n) => {
      const plan = networkPlan(specs.get(n.pool_id)!, Number(n.slot));
      const mine = peers.filter((p) => p.vpn_network_id === n.id);
      const subnets = mine.flatMap((p) => fromJson<string[]>(p.subnets));
      return {
        id: n.id,
        project: n.project,
        listen_port: plan.listenPort,
        private_key: box.open(n.private_key),
        addresses: plan.gatewayAddresses,
        reach: [
          rangeText(plan.ipv6),
          ...(plan.ipv4 === null ? [] : [rangeText(plan.ipv4)]),
          ...fromJson<VpnNetworkSpecRow>(n.spec).networks.flatMap((id) => (connected.get(id) ?? []).map(rangeText)),
          ...subnets,
        ],
        peers: mine.map((p) => {
          const a = peerAddresses(plan, Number(p.host_index));
          return {
            id: p.id,
            public_key: p.public_key,
            allowed_ips: [a.ipv6, ...(a.ipv4 === null ? [] : [a.ipv4]), ...fromJson<string[]>(p.subnets)],
            endpoint: p.endpoint,
          };
        }),
      };
    });
  }
}
