import {
  FloeError,
  type PageOf,
  type VpnNetwork,
  type VpnNetworkCreate,
  type VpnNetworkPatch,
  type VpnPoolSpec,
} from '@floe/api';
import { forUpdate, fromJson, isUniqueViolation, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { VpnNetworksTable } from '../db/schema.js';
import { visibleProjects } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { recordHistory, updateWithHistory } from './history.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { networkSpecOf } from './network-spec.js';
import type { NetworkService } from './networks.js';
import { listPage } from './pagination.js';
import type { ProjectService } from './projects.js';
import { reserve } from './quota.js';
import { baseFields, checkMetadata, checkRevision, findRow, newBase, patchedBase } from './resource-rows.js';
import { generateKeyPair, type SecretBox } from './vpn-keys.js';
import {
  firstOverlap,
  freeSlot,
  networkPlan,
  overlapError,
  parseRange,
  poolCapacity,
  rangeText,
  type Range,
} from './vpn-plan.js';
import type { VpnPoolService } from './vpn-pools.js';
import { syncGatewayAddresses } from './vpn-gateways.js';

/** What a VPN network row stores in `spec`. */
export interface VpnNetworkSpecRow {
  networks: string[];
}

/** The CIDRs of private networks (what a VPN network's peers may reach), by network id. */
export async function networkRanges(db: Db, ids: readonly string[]): Promise<Map<string, Range[]>> {
  const out = new Map<string, Range[]>();
  if (ids.length === 0) return out;
  for (const row of await db
    .selectFrom('networks')
    .select(['id', 'spec'])
    .where('id', 'in', [...ids])
    .execute()) {
    const spec = networkSpecOf(row.spec);
    const r: Range[] = [];
    if (spec.ipv6 !== null) r.push(parseRange(spec.ipv6, 'ipv6'));
    if (spec.ipv4 !== null) r.push(parseRange(spec.ipv4, 'ipv4'));
    out.set(row.id, r);
  }
  return out;
}

/**
 * Lock a pool until the transaction ends (PostgreSQL): the route checks of its VPN networks read all
 * of them, so two changes on one pool take turns rather than both passing and overlapping.
 */
export async function lockPool(trx: Db, poolId: string): Promise<void> {
  await forUpdate(trx.selectFrom('vpn_pools').select('id').where('id', '=', poolId)).execute();
}

/** Row → API shape (no private key: it never leaves the control plane but to the gateways). */
function vpnNetworkFromRow(row: VpnNetworksTable, pool: VpnPoolSpec, peers: number): VpnNetwork {
  const plan = networkPlan(pool, Number(row.slot));
  return {
    ...baseFields(row),
    project: row.project,
    spec: { pool: row.pool_id, networks: fromJson<VpnNetworkSpecRow>(row.spec).networks },
    ipv6: rangeText(plan.ipv6),
    ipv4: plan.ipv4 === null ? null : rangeText(plan.ipv4),
    public_key: row.public_key,
    endpoint: plan.endpoint,
    status: { peers },
  };
}

/** Projects' VPN networks: a prefix of a pool each, connected to some of the project's private networks. */
export class VpnNetworkService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    private readonly pools: VpnPoolService,
    private readonly networks: NetworkService,
    private readonly box: () => SecretBox,
    private readonly announce: (poolIds: readonly string[], networkIds?: readonly string[]) => Promise<void>,
  ) {}

  /** VPN networks of the visible projects. */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[]; project?: string },
  ): Promise<PageOf<VpnNetwork>> {
    const page = await listPage<VpnNetworksTable, VpnNetworksTable>(
      this.ctx.store.db,
      'vpn_networks',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels: parseLabelSelectors(q.label),
        projects: visibleProjects(principal, q.project) ?? undefined,
      },
      (r) => r,
    );
    return { items: await this.shapes(this.ctx.store.db, page.items), next_cursor: page.next_cursor };
  }

  /** One VPN network by id, or by name in `project`. */
  async get(principal: Principal, ref: string, project: string, db: Db = this.ctx.store.db): Promise<VpnNetwork> {
    return (await this.shapes(db, [await this.row(principal, ref, project, db)]))[0]!;
  }

  /** The row of a VPN network the principal may use. */
  row(principal: Principal, ref: string, project: string, db: Db): Promise<VpnNetworksTable> {
    return findRow<VpnNetworksTable>(db, 'vpn_networks', 'vpn_network', ref, {
      project,
      principal,
      code: 'vpn_network_not_found',
      label: 'VPN network',
    });
  }

  /** Take the next free prefix of a pool for a new VPN network, with a fresh gateway key pair. */
  async create(principal: Principal, body: VpnNetworkCreate): Promise<VpnNetwork> {
    const project = body.project ?? 'default';
    const metadata = checkMetadata(body.metadata);
    const keys = generateKeyPair();
    const sealed = this.box().seal(keys.privateKey);
    for (let attempt = 0; ; attempt++) {
      const base = newBase('vpn_network', body.name, body.labels, metadata);
      try {
        const { network, poolId } = await transaction(this.ctx.store, async (trx) => {
          await this.projects.require(principal, project, trx);
          const pool = await this.pools.row(body.pool, trx);
          await lockPool(trx, pool.id);
          const spec = fromJson<VpnPoolSpec>(pool.spec);
          const connected = await this.connect(principal, project, body.networks ?? [], 'networks', trx);
          const siblings = await trx.selectFrom('vpn_networks').selectAll().where('pool_id', '=', pool.id).execute();
          await this.checkRoutes(trx, pool.id, spec, connected, siblings);
          await reserve(trx, this.ctx.store.dialect, project, { vpn_networks: 1 });
          const slot = freeSlot(
            siblings.map((s) => Number(s.slot)),
            poolCapacity(spec),
            pool.name,
          );
          const row: VpnNetworksTable = {
            ...base,
            project,
            pool_id: pool.id,
            slot,
            spec: toJson({ networks: connected } satisfies VpnNetworkSpecRow),
            public_key: keys.publicKey,
            private_key: sealed,
          };
          await trx.insertInto('vpn_networks').values(row).execute();
          await writeLabels(trx, row.id, body.labels ?? {}, true);
          await syncGatewayAddresses(trx, connected);
          const network = vpnNetworkFromRow(row, spec, 0);
          await recordHistory(trx, {
            kind: 'vpn_network',
            resource_id: row.id,
            project,
            revision: 1,
            action: 'create',
            actor: principal.actor,
            before: null,
            after: network,
          });
          return { network, poolId: pool.id };
        });
        await this.ctx.bus.publish({
          type: 'resource.created',
          project,
          kind: 'vpn_network',
          resource_id: network.id,
          data: { name: network.name, ipv6: network.ipv6 },
        });
        await this.announce([poolId]);
        return network;
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        // Two creates took the same slot: the loser takes the next one.
        if (
          /slot/.test(
            String((err as { message?: unknown }).message) + String((err as { constraint?: unknown }).constraint),
          ) &&
          attempt < 8
        )
          continue;
        throw new FloeError('name_conflict', `VPN network "${body.name}" already exists in project "${project}"`, {
          field: 'name',
          kind: 'vpn_network',
          name: body.name,
        });
      }
    }
  }

  /**
   * The ids of the project's private networks named by `refs` (each once), share-locked until the
   * transaction ends so that none is deleted under a VPN network that connects it.
   */
  private async connect(principal: Principal, project: string, refs: readonly string[], field: string, trx: Db) {
    const connected: string[] = [];
    for (const [i, ref] of refs.entries()) {
      const net = await this.networks.row(principal, ref, project, trx);
      if (net.kind !== 'private' || net.project !== project)
        throw new FloeError('validation_failed', `"${ref}" is not a private network of project "${project}"`, {
          field: `${field}[${i}]`,
        });
      if (!connected.includes(net.id)) connected.push(net.id);
    }
    if (connected.length > 0) {
      const held = await trx
        .selectFrom('networks')
        .select('id')
        .where('id', 'in', connected)
        .orderBy('id')
        .forShare()
        .execute();
      // A network deleted while this waited for its lock.
      if (held.length !== connected.length)
        throw new FloeError('network_not_found', 'a connected network was deleted meanwhile', { field });
    }
    return connected;
  }

  /**
   * Change a VPN network's labels, metadata or connected networks (JSON merge patch). New connected
   * networks pass the same overlap checks as at creation; the gateways change the interface in place,
   * so the peers keep their sessions.
   */
  async update(
    principal: Principal,
    ref: string,
    project: string,
    patch: VpnNetworkPatch,
    ifMatch?: number,
  ): Promise<VpnNetwork> {
    const { after, poolId, touched } = await transaction(this.ctx.store, async (trx) => {
      const found = await this.row(principal, ref, project, trx);
      const row = await forUpdate(
        trx.selectFrom('vpn_networks').selectAll().where('id', '=', found.id),
      ).executeTakeFirstOrThrow();
      const before = (await this.shapes(trx, [row]))[0]!;
      checkRevision(ifMatch, before.revision);
      let connected = before.spec.networks;
      if (patch.spec?.networks !== undefined) {
        // The pool first, as at creation: changes on one pool take their locks in one order.
        const pool = await this.pools.row(row.pool_id, trx);
        await lockPool(trx, pool.id);
        connected = await this.connect(principal, row.project, patch.spec.networks, 'spec.networks', trx);
        const siblings = await trx
          .selectFrom('vpn_networks')
          .selectAll()
          .where('pool_id', '=', pool.id)
          .where('id', '!=', row.id)
          .execute();
        await this.checkRoutes(trx, pool.id, fromJson<VpnPoolSpec>(pool.spec), connected, siblings);
      }
      const after: VpnNetwork = {
        ...before,
        ...patchedBase(before, patch),
        spec: { ...before.spec, networks: connected },
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await updateWithHistory(trx, 'vpn_networks', {
        kind: 'vpn_network',
        row,
        actor: principal.actor,
        before,
        after,
        set: { spec: toJson({ networks: connected } satisfies VpnNetworkSpecRow) },
      });
      const touched = [...new Set([...before.spec.networks, ...connected])];
      await syncGatewayAddresses(trx, touched);
      return { after, poolId: row.pool_id, touched };
    });
    await this.ctx.bus.publish({
      type: 'resource.updated',
      project: after.project,
      kind: 'vpn_network',
      resource_id: after.id,
      data: { revision: after.revision },
    });
    await this.announce([poolId], touched);
    return after;
  }

  /**
   * The gateways of a pool route every VPN network's prefixes and connected networks in one table:
   * a connected network may not overlap the pool's prefixes, nor another VPN network's connected
   * networks (unless it is the same network).
   */
  private async checkRoutes(
    db: Db,
    poolId: string,
    pool: VpnPoolSpec,
    connected: string[],
    siblings: VpnNetworksTable[],
  ) {
    const ranges = await networkRanges(db, connected);
    const poolRanges = [parseRange(pool.ipv6, 'ipv6'), ...(pool.ipv4 === null ? [] : [parseRange(pool.ipv4, 'ipv4')])];
    const otherIds = [...new Set(siblings.flatMap((s) => fromJson<VpnNetworkSpecRow>(s.spec).networks))].filter(
      (id) => !connected.includes(id),
    );
    const others = await networkRanges(db, otherIds);
    const mine = connected.flatMap((id) => ranges.get(id) ?? []);
    const hitPool = firstOverlap(mine, poolRanges);
    if (hitPool !== null) throw overlapError(hitPool[0], hitPool[1], 'the VPN pool');
    for (let i = 0; i < connected.length; i++)
      for (let j = i + 1; j < connected.length; j++) {
        const hit = firstOverlap(ranges.get(connected[i]!) ?? [], ranges.get(connected[j]!) ?? []);
        if (hit !== null) throw overlapError(hit[0], hit[1], 'another connected network');
      }
    for (const [, theirs] of others) {
      const hit = firstOverlap(mine, theirs);
      if (hit !== null) throw overlapError(hit[0], hit[1], 'a network connected to another VPN network of the pool');
    }
    const subnets = await db
      .selectFrom('vpn_peers')
      .innerJoin('vpn_networks', 'vpn_networks.id', 'vpn_peers.vpn_network_id')
      .select('vpn_peers.subnets')
      .where('vpn_networks.pool_id', '=', poolId)
      .execute();
    const behind = subnets.flatMap((s) => fromJson<string[]>(s.subnets).map((t) => parseRange(t, 'subnets')));
    const hitPeer = firstOverlap(mine, behind);
    if (hitPeer !== null) throw overlapError(hitPeer[0], hitPeer[1], "a site-to-site peer's subnet");
  }

  /** Delete a VPN network and its peers. */
  async delete(principal: Principal, ref: string, project: string): Promise<void> {
    const row = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      const before = (await this.shapes(trx, [row]))[0]!;
      const peers = await trx.selectFrom('vpn_peers').select('id').where('vpn_network_id', '=', row.id).execute();
      const ids = [row.id, ...peers.map((p) => p.id)];
      await trx.deleteFrom('vpn_peers').where('vpn_network_id', '=', row.id).execute();
      await trx.deleteFrom('vpn_networks').where('id', '=', row.id).execute();
      await trx.deleteFrom('resource_labels').where('resource_id', 'in', ids).execute();
      await syncGatewayAddresses(trx, before.spec.networks);
      await recordHistory(trx, {
        kind: 'vpn_network',
        resource_id: row.id,
        project: row.project,
        revision: Number(row.revision) + 1,
        action: 'delete',
        actor: principal.actor,
        before,
        after: null,
      });
      return { ...row, networks: before.spec.networks };
    });
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: row.project,
      kind: 'vpn_network',
      resource_id: row.id,
      data: { name: row.name },
    });
    await this.announce([row.pool_id], row.networks);
  }

  /** API shapes of rows, with their pools' plans and peer counts. */
  async shapes(db: Db, rows: VpnNetworksTable[]): Promise<VpnNetwork[]> {
    if (rows.length === 0) return [];
    const pools = new Map(
      (
        await db
          .selectFrom('vpn_pools')
          .select(['id', 'spec'])
          .where('id', 'in', [...new Set(rows.map((r) => r.pool_id))])
          .execute()
      ).map((p) => [p.id, fromJson<VpnPoolSpec>(p.spec)]),
    );
    const counts = new Map(
      (
        await db
          .selectFrom('vpn_peers')
          .select((eb) => ['vpn_network_id', eb.fn.countAll<number>().as('n')])
          .where(
            'vpn_network_id',
            'in',
            rows.map((r) => r.id),
          )
          .groupBy('vpn_network_id')
          .execute()
      ).map((r) => [r.vpn_network_id, Number(r.n)]),
    );
    return rows.map((r) => vpnNetworkFromRow(r, pools.get(r.pool_id)!, counts.get(r.id) ?? 0));
  }
}
