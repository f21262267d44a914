import { FloeError, type PageOf, type VpnPool, type VpnPoolCreate, type VpnPoolSpec } from '@floe/api';
import { fromJson, isUniqueViolation, toJson, transaction, type Db } from '../db/index.js';
import type { VpnPoolsTable } from '../db/schema.js';
import { requireAdmin } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { deleteWithHistory, recordHistory } from './history.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { listPage } from './pagination.js';
import { baseFields, checkMetadata, findRow, newBase } from './resource-rows.js';
import { firstOverlap, overlapError, parseRange, poolCapacity, poolSpecFrom, type Range } from './vpn-plan.js';

/** A pool's prefixes as ranges. */
function poolRanges(spec: VpnPoolSpec): Range[] {
  const out = [parseRange(spec.ipv6, 'ipv6')];
  if (spec.ipv4 !== null) out.push(parseRange(spec.ipv4, 'ipv4'));
  return out;
}

/** Row → API shape; the gateway hosts are the operators' to see. */
function poolFromRow(row: VpnPoolsTable, networks: number, admin: boolean): VpnPool {
  const spec = fromJson<VpnPoolSpec>(row.spec);
  return {
    ...baseFields(row),
    spec: admin ? spec : { ...spec, hosts: [] },
    status: { networks, capacity: poolCapacity(spec) },
  };
}

/** VPN pools: operators create them; every user may see them to pick one for a VPN network. */
export class VpnPoolService {
  constructor(private readonly ctx: ServiceContext) {}

  /** Every pool. */
  async list(principal: Principal, q: { limit?: number; cursor?: string; label?: string | string[] }) {
    const page: PageOf<VpnPoolsTable> = await listPage<VpnPoolsTable, VpnPoolsTable>(
      this.ctx.store.db,
      'vpn_pools',
      { limit: q.limit, cursor: q.cursor, labels: parseLabelSelectors(q.label) },
      (r) => r,
    );
    const counts = await this.counts(page.items.map((r) => r.id));
    return {
      items: page.items.map((r) => poolFromRow(r, counts.get(r.id) ?? 0, principal.admin)),
      next_cursor: page.next_cursor,
    };
  }

  /** One pool by id or name. */
  async get(principal: Principal, ref: string): Promise<VpnPool> {
    const row = await this.row(ref, this.ctx.store.db);
    return poolFromRow(row, (await this.counts([row.id])).get(row.id) ?? 0, principal.admin);
  }

  /** The row of a pool. */
  row(ref: string, db: Db): Promise<VpnPoolsTable> {
    return findRow<VpnPoolsTable>(db, 'vpn_pools', 'vpn_pool', ref, { code: 'vpn_pool_not_found', label: 'VPN pool' });
  }

  /** Create a pool (admin): its prefixes may not overlap another pool's. */
  async create(principal: Principal, body: VpnPoolCreate): Promise<VpnPool> {
    requireAdmin(principal, 'create VPN pools');
    const metadata = checkMetadata(body.metadata);
    const base = newBase('vpn_pool', body.name, body.labels, metadata);
    try {
      const pool = await transaction(this.ctx.store, async (trx) => {
        const hosts: string[] = [];
        for (const ref of body.hosts) {
          const h = await findRow<{ id: string }>(trx, 'hosts', 'host', ref, { code: 'host_not_found', label: 'host' });
          if (!hosts.includes(h.id)) hosts.push(h.id);
        }
        const spec = poolSpecFrom({ ...body, hosts });
        const mine = poolRanges(spec);
        for (const other of await trx.selectFrom('vpn_pools').selectAll().execute()) {
          const hit = firstOverlap(mine, poolRanges(fromJson<VpnPoolSpec>(other.spec)));
          if (hit !== null) throw overlapError(hit[0], hit[1], `VPN pool "${other.name}"`);
        }
        const row: VpnPoolsTable = { ...base, spec: toJson(spec) };
        await trx.insertInto('vpn_pools').values(row).execute();
        await writeLabels(trx, row.id, body.labels ?? {}, true);
        const pool = poolFromRow(row, 0, true);
        await recordHistory(trx, {
          kind: 'vpn_pool',
          resource_id: row.id,
          project: null,
          revision: 1,
          action: 'create',
          actor: principal.actor,
          before: null,
          after: pool,
        });
        return pool;
      });
      await this.ctx.bus.publish({
        type: 'resource.created',
        project: null,
        kind: 'vpn_pool',
        resource_id: pool.id,
        data: { name: pool.name },
      });
      return pool;
    } catch (err) {
      if (isUniqueViolation(err))
        throw new FloeError('name_conflict', `VPN pool "${body.name}" already exists`, {
          field: 'name',
          kind: 'vpn_pool',
          name: body.name,
        });
      throw err;
    }
  }

  /** Delete a pool without VPN networks (admin; `in_use` otherwise). */
  async delete(principal: Principal, ref: string): Promise<void> {
    requireAdmin(principal, 'delete VPN pools');
    const row = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(ref, trx);
      const used = await trx.selectFrom('vpn_networks').select('id').where('pool_id', '=', row.id).executeTakeFirst();
      if (used !== undefined)
        throw new FloeError('in_use', `VPN pool "${row.name}" still has VPN networks; remove them first`, {
          kind: 'vpn_pool',
          id: row.id,
          vpn_network: used.id,
        });
      await deleteWithHistory(trx, 'vpn_pools', {
        kind: 'vpn_pool',
        row,
        actor: principal.actor,
        before: poolFromRow(row, 0, true),
      });
      return row;
    });
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: null,
      kind: 'vpn_pool',
      resource_id: row.id,
      data: { name: row.name },
    });
  }

  /** VPN networks per pool. */
  private async counts(ids: string[]): Promise<Map<string, number>> {
    if (ids.length === 0) return new Map();
    const rows = await this.ctx.store.db
      .selectFrom('vpn_networks')
      .select((eb) => ['pool_id', eb.fn.countAll<number>().as('n')])
      .where('pool_id', 'in', ids)
      .groupBy('pool_id')
      .execute();
    return new Map(rows.map((r) => [r.pool_id, Number(r.n)]));
  }
}
