import {
  FloeError,
  type VpnNetworkStats,
  type VpnPeerActivity,
  type VpnPeerCounters,
  type VpnPoolSpec,
} from '@floe/api';
import { fromJson, type Db } from '../db/index.js';
import type { Principal } from './context.js';
import type { VpnNetworkService } from './vpn-networks.js';

/** Asks one gateway host for the counters of a VPN network's interface (over its agent link). */
export type AskGateway = (hostId: string, vpnNetworkId: string) => Promise<VpnPeerCounters[]>;

/** A peer as the stats need it. */
export interface PeerIdentity {
  id: string;
  name: string;
  public_key: string;
}

/**
 * Every peer's activity over the gateways that answered (pure): the latest handshake of any gateway
 * (and the endpoint that gateway saw), transfer summed over them. A peer no gateway counted yet has
 * no handshake and zero bytes; counters of keys that are not the network's peers are left out.
 */
export function mergeActivity(
  peers: readonly PeerIdentity[],
  answers: readonly (readonly VpnPeerCounters[])[],
  nowMs: number,
): VpnPeerActivity[] {
  return peers.map((p) => {
    const mine = answers.flatMap((a) => a.filter((c) => c.public_key === p.public_key));
    const best = mine.reduce<VpnPeerCounters | null>(
      (b, c) => (b === null || c.latest_handshake > b.latest_handshake ? c : b),
      null,
    );
    const latest = best?.latest_handshake ?? 0;
    return {
      peer: p.id,
      name: p.name,
      public_key: p.public_key,
      endpoint: best?.endpoint ?? mine.find((c) => c.endpoint !== null)?.endpoint ?? null,
      latest_handshake: latest === 0 ? null : new Date(latest * 1000).toISOString(),
      handshake_age_seconds: latest === 0 ? null : Math.max(0, Math.floor(nowMs / 1000 - latest)),
      rx_bytes: mine.reduce((n, c) => n + c.rx_bytes, 0),
      tx_bytes: mine.reduce((n, c) => n + c.tx_bytes, 0),
    };
  });
}

/**
 * Ask every gateway of a VPN network's pool for its peers' counters, at once. Gateways that do not
 * answer are counted as such; when none answers, the first refusal is the answer (`host_offline` for
 * a gateway that is not connected, `host_timeout`, or `invalid_state` while it sets the network up).
 */
export async function vpnNetworkStats(
  db: Db,
  networks: VpnNetworkService,
  principal: Principal,
  ref: string,
  project: string,
  ask: AskGateway,
): Promise<VpnNetworkStats> {
  const row = await networks.row(principal, ref, project, db);
  const pool = await db.selectFrom('vpn_pools').select('spec').where('id', '=', row.pool_id).executeTakeFirstOrThrow();
  const hosts = fromJson<VpnPoolSpec>(pool.spec).hosts;
  const peers = await db
    .selectFrom('vpn_peers')
    .select(['id', 'name', 'public_key'])
    .where('vpn_network_id', '=', row.id)
    .orderBy('id')
    .execute();
  const time = Date.now();
  const settled = await Promise.allSettled(hosts.map((h) => ask(h, row.id)));
  const answers = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  if (answers.length === 0) {
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    throw new FloeError('host_offline', 'no gateway of the VPN network answered', { vpn_network: row.id });
  }
  return {
    vpn_network: row.id,
    time: new Date(time).toISOString(),
    gateways: { total: hosts.length, answered: answers.length },
    peers: mergeActivity(peers, answers, time),
  };
}
