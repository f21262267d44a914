import QRCode from 'qrcode';
import {
  FloeError,
  type PageOf,
  type VpnPeer,
  type VpnPeerCreate,
  type VpnPeerCreated,
  type VpnPeerListQuery,
  type VpnPoolSpec,
} from '@floe/api';
import { fromJson, isUniqueViolation, toJson, transaction, type Db } from '../db/index.js';
import type { VpnNetworksTable, VpnPeersTable } from '../db/schema.js';
import { visibleProjects } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { deleteWithHistory, recordHistory } from './history.js';
import { writeLabels } from './labels.js';
import { listPage } from './pagination.js';
import { reserve } from './quota.js';
import { baseFields, checkMetadata, findRow, newBase } from './resource-rows.js';
import { checkPublicKey, generateKeyPair } from './vpn-keys.js';
import { lockPool, networkRanges, type VpnNetworkService, type VpnNetworkSpecRow } from './vpn-networks.js';
import {
  canonicalSubnets,
  firstOverlap,
  freePeerIndex,
  networkPlan,
  overlapError,
  parseRange,
  peerAddresses,
  rangeText,
  wgQuickConfig,
  type Range,
} from './vpn-plan.js';

/** Row → API shape. */
function peerFromRow(row: VpnPeersTable, pool: VpnPoolSpec, slot: number): VpnPeer {
  const a = peerAddresses(networkPlan(pool, slot), Number(row.host_index));
  return {
    ...baseFields(row),
    project: row.project,
    vpn_network: row.vpn_network_id,
    public_key: row.public_key,
    ipv6: a.ipv6,
    ipv4: a.ipv4,
    subnets: fromJson<string[]>(row.subnets),
    endpoint: row.endpoint,
  };
}

/** The pool spec of a VPN network. */
async function poolOf(db: Db, net: VpnNetworksTable): Promise<VpnPoolSpec> {
  const pool = await db.selectFrom('vpn_pools').select('spec').where('id', '=', net.pool_id).executeTakeFirstOrThrow();
  return fromJson<VpnPoolSpec>(pool.spec);
}

/** The peers of VPN networks: addresses, keys, site-to-site subnets, and their wg-quick files. */
export class VpnPeerService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly networks: VpnNetworkService,
    private readonly announce: (poolIds: readonly string[]) => Promise<void>,
  ) {}

  /** Peers of the visible projects, optionally of one VPN network. */
  async list(principal: Principal, q: VpnPeerListQuery): Promise<PageOf<VpnPeer>> {
    const db = this.ctx.store.db;
    let only: string | undefined;
    if (q.vpn_network !== undefined)
      only = (await this.networks.row(principal, q.vpn_network, q.project ?? 'default', db)).id;
    const page = await listPage<VpnPeersTable, VpnPeersTable>(
      db,
      'vpn_peers',
      {
        limit: q.limit,
        cursor: q.cursor,
        projects: visibleProjects(principal, q.project) ?? undefined,
        where: only === undefined ? undefined : (qb) => qb.where('vpn_network_id', '=', only),
      },
      (r) => r,
    );
    return { items: await this.shapes(db, page.items), next_cursor: page.next_cursor };
  }

  /** One peer by id, or by name in `project`. */
  async get(principal: Principal, ref: string, project: string): Promise<VpnPeer> {
    return (await this.shapes(this.ctx.store.db, [await this.row(principal, ref, project, this.ctx.store.db)]))[0]!;
  }

  private row(principal: Principal, ref: string, project: string, db: Db): Promise<VpnPeersTable> {
    return findRow<VpnPeersTable>(db, 'vpn_peers', 'vpn_peer', ref, {
      project,
      principal,
      code: 'vpn_peer_not_found',
      label: 'VPN peer',
    });
  }

  /**
   * Add a peer with the next free address: with the user's public key, or with a fresh key pair whose
   * private half is in this answer only. Malformed keys, keys already in use and subnets that overlap
   * what the gateways route are refused before anything is written.
   */
  async create(principal: Principal, body: VpnPeerCreate): Promise<VpnPeerCreated> {
    const project = body.project ?? 'default';
    const metadata = checkMetadata(body.metadata);
    const generated = body.public_key === undefined ? generateKeyPair() : null;
    const publicKey = generated?.publicKey ?? checkPublicKey(body.public_key!);
    const subnets = canonicalSubnets(body.subnets ?? []);
    for (let attempt = 0; ; attempt++) {
      const base = newBase('vpn_peer', body.name, body.labels, metadata);
      try {
        const out = await transaction(this.ctx.store, async (trx) => {
          const net = await this.networks.row(principal, body.vpn_network, project, trx);
          if (net.project !== project)
            throw new FloeError('vpn_network_not_found', `VPN network "${body.vpn_network}" not found`, {
              kind: 'VPN network',
              id: body.vpn_network,
            });
          await this.checkKey(trx, publicKey);
          // Subnets are judged against the pool's connected networks: changes of those wait, as they do for each other.
          if (subnets.length > 0) await lockPool(trx, net.pool_id);
          const pool = await poolOf(trx, net);
          const plan = networkPlan(pool, Number(net.slot));
          await this.checkSubnets(trx, net, subnets);
          await reserve(trx, this.ctx.store.dialect, project, { vpn_peers: 1 });
          const taken = await trx
            .selectFrom('vpn_peers')
            .select('host_index')
            .where('vpn_network_id', '=', net.id)
            .execute();
          const index = freePeerIndex(
            taken.map((t) => Number(t.host_index)),
            plan,
            net.name,
          );
          const row: VpnPeersTable = {
            ...base,
            project,
            vpn_network_id: net.id,
            host_index: index,
            public_key: publicKey,
            subnets: toJson(subnets.map(rangeText)),
            endpoint: body.endpoint ?? null,
          };
          await trx.insertInto('vpn_peers').values(row).execute();
          await writeLabels(trx, row.id, body.labels ?? {}, true);
          const peer = peerFromRow(row, pool, Number(net.slot));
          await recordHistory(trx, {
            kind: 'vpn_peer',
            resource_id: row.id,
            project,
            revision: 1,
            action: 'create',
            actor: principal.actor,
            before: null,
            after: peer,
          });
          const config = await this.configOf(trx, row, net, generated?.privateKey ?? null);
          return { peer, config, poolId: net.pool_id };
        });
        await this.ctx.bus.publish({
          type: 'resource.created',
          project,
          kind: 'vpn_peer',
          resource_id: out.peer.id,
          data: { name: out.peer.name, vpn_network: out.peer.vpn_network },
        });
        await this.announce([out.poolId]);
        return {
          peer: out.peer,
          private_key: generated?.privateKey ?? null,
          config: out.config,
          qr_png: (await qrPng(out.config)).toString('base64'),
        };
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        const what = `${String((err as { message?: unknown }).message)} ${String((err as { constraint?: unknown }).constraint)}`;
        if (/public_key/.test(what))
          throw new FloeError('vpn_key_conflict', 'another VPN peer already has this public key', {
            field: 'public_key',
          });
        if (/host_index/.test(what) && attempt < 8) continue;
        throw new FloeError('name_conflict', `VPN peer "${body.name}" already exists in project "${project}"`, {
          field: 'name',
          kind: 'vpn_peer',
          name: body.name,
        });
      }
    }
  }

  /** A public key is one peer's, and never a gateway's. */
  private async checkKey(db: Db, key: string): Promise<void> {
    const peer = await db.selectFrom('vpn_peers').select('id').where('public_key', '=', key).executeTakeFirst();
    const gateway = await db.selectFrom('vpn_networks').select('id').where('public_key', '=', key).executeTakeFirst();
    if (peer !== undefined || gateway !== undefined)
      throw new FloeError('vpn_key_conflict', 'another VPN peer already has this public key', { field: 'public_key' });
  }

  /**
   * Subnets behind a peer are routed by the pool's gateways: they may not overlap the pool's prefixes,
   * the connected networks of the pool's VPN networks, nor other peers' subnets on the pool.
   */
  private async checkSubnets(db: Db, net: VpnNetworksTable, subnets: Range[]): Promise<void> {
    if (subnets.length === 0) return;
    const pool = await poolOf(db, net);
    const routed: Array<[Range, string]> = [[parseRange(pool.ipv6, 'ipv6'), 'the VPN pool']];
    if (pool.ipv4 !== null) routed.push([parseRange(pool.ipv4, 'ipv4'), 'the VPN pool']);
    const siblings = await db
      .selectFrom('vpn_networks')
      .select(['id', 'spec'])
      .where('pool_id', '=', net.pool_id)
      .execute();
    const connected = await networkRanges(db, [
      ...new Set(siblings.flatMap((s) => fromJson<VpnNetworkSpecRow>(s.spec).networks)),
    ]);
    for (const rs of connected.values()) for (const r of rs) routed.push([r, 'a connected network']);
    const peers = await db
      .selectFrom('vpn_peers')
      .select(['name', 'subnets'])
      .where(
        'vpn_network_id',
        'in',
        siblings.map((s) => s.id),
      )
      .execute();
    for (const p of peers)
      for (const t of fromJson<string[]>(p.subnets)) routed.push([parseRange(t, 'subnets'), `peer "${p.name}"`]);
    for (let i = 0; i < subnets.length; i++) {
      for (let j = i + 1; j < subnets.length; j++)
        if (firstOverlap([subnets[i]!], [subnets[j]!]) !== null)
          throw overlapError(subnets[i]!, subnets[j]!, 'another subnet of the peer');
      for (const [r, what] of routed)
        if (firstOverlap([subnets[i]!], [r]) !== null) throw overlapError(subnets[i]!, r, what);
    }
  }

  /** Remove a peer: the gateways drop it at once; the others keep their sessions. */
  async delete(principal: Principal, ref: string, project: string): Promise<void> {
    const { row, poolId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      const before = (await this.shapes(trx, [row]))[0]!;
      const net = await trx
        .selectFrom('vpn_networks')
        .select('pool_id')
        .where('id', '=', row.vpn_network_id)
        .executeTakeFirstOrThrow();
      await deleteWithHistory(trx, 'vpn_peers', { kind: 'vpn_peer', row, actor: principal.actor, before });
      return { row, poolId: net.pool_id };
    });
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: row.project,
      kind: 'vpn_peer',
      resource_id: row.id,
      data: { name: row.name },
    });
    await this.announce([poolId]);
  }

  /** The peer's wg-quick file (its private key is not kept: a placeholder line stands for it). */
  async config(principal: Principal, ref: string, project: string): Promise<string> {
    const db = this.ctx.store.db;
    const row = await this.row(principal, ref, project, db);
    const net = await db
      .selectFrom('vpn_networks')
      .selectAll()
      .where('id', '=', row.vpn_network_id)
      .executeTakeFirstOrThrow();
    return this.configOf(db, row, net, null);
  }

  /** The peer's wg-quick file as a QR code (PNG). */
  async qr(principal: Principal, ref: string, project: string): Promise<Buffer> {
    return qrPng(await this.config(principal, ref, project));
  }

  /**
   * What a peer's tunnel carries: the VPN network's prefixes, its connected networks and the subnets
   * behind the network's other peers (site-to-site).
   */
  private async configOf(db: Db, row: VpnPeersTable, net: VpnNetworksTable, privateKey: string | null) {
    const pool = await poolOf(db, net);
    const plan = networkPlan(pool, Number(net.slot));
    const a = peerAddresses(plan, Number(row.host_index));
    const connected = await networkRanges(db, fromJson<VpnNetworkSpecRow>(net.spec).networks);
    const others = await db
      .selectFrom('vpn_peers')
      .select('subnets')
      .where('vpn_network_id', '=', net.id)
      .where('id', '!=', row.id)
      .execute();
    const allowed = [
      rangeText(plan.ipv6),
      ...(plan.ipv4 === null ? [] : [rangeText(plan.ipv4)]),
      ...[...connected.values()].flat().map(rangeText),
      ...others.flatMap((o) => fromJson<string[]>(o.subnets)),
    ];
    return wgQuickConfig({
      privateKey,
      addresses: [a.ipv6, ...(a.ipv4 === null ? [] : [a.ipv4])],
      gatewayPublicKey: net.public_key,
      endpoint: plan.endpoint,
      allowedIps: allowed,
    });
  }

  private async shapes(db: Db, rows: VpnPeersTable[]): Promise<VpnPeer[]> {
    if (rows.length === 0) return [];
    const nets = await db
      .selectFrom('vpn_networks')
      .innerJoin('vpn_pools', 'vpn_pools.id', 'vpn_networks.pool_id')
      .select(['vpn_networks.id', 'vpn_networks.slot', 'vpn_pools.spec'])
      .where('vpn_networks.id', 'in', [...new Set(rows.map((r) => r.vpn_network_id))])
      .execute();
    const by = new Map(nets.map((n) => [n.id, n]));
    return rows.map((r) => {
      const n = by.get(r.vpn_network_id)!;
      return peerFromRow(r, fromJson<VpnPoolSpec>(n.spec), Number(n.slot));
    });
  }
}

/** A QR code of text, as PNG. */
function qrPng(text: string): Promise<Buffer> {
  return QRCode.toBuffer(text, { type: 'png', errorCorrectionLevel: 'M', margin: 2, width: 480 });
}
