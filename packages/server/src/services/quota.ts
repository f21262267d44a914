import {
  FloeError,
  QUOTA_DIMENSIONS,
  type ProjectLimits,
  type ProjectUsage,
  type QuotaDimension,
  type QuotaLimits,
  type QuotaLimitsChange,
} from '@floe/api';
import { sql } from 'kysely';
import { forUpdate, type Db, type Dialect } from '../db/index.js';
import {
  chainOf,
  checkFits,
  checkNewLimit,
  dimensionsToCheck,
  subtreeOf,
  usageLine,
  type Deltas,
  type LimitMap,
  type TreeNode,
} from './quota-rules.js';

export type { Deltas } from './quota-rules.js';

/*
 * Quotas: the I/O around quota-rules.ts. What a project uses is counted from the resource tables inside
 * the transaction that changes them (never kept in a counter that could drift from them); the rows of
 * the project and its ancestors are locked first (PostgreSQL: SELECT ... FOR UPDATE in id order, the
 * same order for everyone, so two transactions of one tree queue on its rows instead of deadlocking;
 * SQLite: every transaction already holds the write lock), so two creates cannot both take the last vCPU.
 */

/** Every project as the tree sees it. */
export async function loadTree(db: Db): Promise<TreeNode[]> {
  return db.selectFrom('projects').select(['id', 'name', 'parent_id']).execute();
}

/** The limits of some projects. */
async function loadLimits(db: Db, ids: readonly string[]): Promise<Map<string, Map<QuotaDimension, number>>> {
  const out = new Map<string, Map<QuotaDimension, number>>();
  if (ids.length === 0) return out;
  const rows = await db
    .selectFrom('project_limits')
    .select(['project_id', 'dimension', 'value'])
    .where('project_id', 'in', ids)
    .execute();
  for (const r of rows) {
    if (!(QUOTA_DIMENSIONS as readonly string[]).includes(r.dimension)) continue;
    const m = out.get(r.project_id) ?? new Map<QuotaDimension, number>();
    m.set(r.dimension as QuotaDimension, Number(r.value));
    out.set(r.project_id, m);
  }
  return out;
}

/**
 * Lock the rows of these projects until the transaction ends, in id order: `update` for a change that
 * is checked against limits (one at a time per tree), `share` for one that only needs the limits to stay
 * as read (FOR KEY SHARE: such changes do not wait on each other, only on a change of limits).
 */
async function lockProjects(db: Db, ids: readonly string[], mode: 'update' | 'share'): Promise<void> {
  if (ids.length === 0) return;
  const q = db
    .selectFrom('projects')
    .select('id')
    .where('id', 'in', [...ids])
    .orderBy('id');
  await (mode === 'update' ? forUpdate(q) : q.forKeyShare()).execute();
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

/** The dimensions an instance row holds. */
type InstanceDimension = 'instances' | 'vcpus' | 'memory_mib' | 'disk_gib';
type InstanceTotals = Readonly<Record<InstanceDimension, number>>;
const isInstanceDimension = (d: QuotaDimension): d is InstanceDimension =>
  d === 'instances' || d === 'vcpus' || d === 'memory_mib' || d === 'disk_gib';

/** What the instances of the projects named hold, every dimension in one query over the rows' size columns. */
async function instanceTotals(db: Db, list: string[]): Promise<InstanceTotals> {
  const r = await db
    .selectFrom('instances')
    .select((eb) => [
      eb.fn.countAll<number>().as('n'),
      eb.fn.sum<number>('vcpus').as('vcpus'),
      eb.fn.sum<number>('memory_mib').as('memory_mib'),
      eb.fn.sum<number>('disk_gib').as('disk_gib'),
    ])
    .where('project', 'in', list)
    .executeTakeFirst();
  return { instances: num(r?.n), vcpus: num(r?.vcpus), memory_mib: num(r?.memory_mib), disk_gib: num(r?.disk_gib) };
}

/** What the projects named use of one dimension other than an instance's, counted from the resource tables. */
async function countUsage(db: Db, dialect: Dialect, names: readonly string[], d: QuotaDimension): Promise<number> {
  if (names.length === 0) return 0;
  const list = [...names];
  switch (d) {
    case 'instances':
    case 'vcpus':
    case 'memory_mib':
    case 'disk_gib':
      return (await instanceTotals(db, list))[d];
    case 'networks': {
      const r = await db
        .selectFrom('networks')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('project', 'in', list)
        .executeTakeFirst();
      return num(r?.n);
    }
    case 'security_groups': {
      const r = await db
        .selectFrom('security_groups')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('project', 'in', list)
        .executeTakeFirst();
      return num(r?.n);
    }
    case 'nics': {
      const r = await db
        .selectFrom('nics')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('project', 'in', list)
        .executeTakeFirst();
      return num(r?.n);
    }
    case 'ipv4_private':
    case 'ipv4_public': {
      const r = await db
        .selectFrom('nics')
        .innerJoin('networks', 'networks.id', 'nics.network_id')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('nics.project', 'in', list)
        .where('nics.ipv4', 'is not', null)
        .where('networks.kind', '=', d === 'ipv4_public' ? 'public' : 'private')
        .executeTakeFirst();
      return num(r?.n);
    }
    case 'vpn_networks':
    case 'vpn_peers':
    case 'floating_ips':
    case 'port_forwards': {
      const r = await db
        .selectFrom(d)
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('project', 'in', list)
        .executeTakeFirst();
      return num(r?.n);
    }
    case 'image_bytes': {
      const size =
        dialect === 'postgres'
          ? sql<number>`coalesce(sum(((status::jsonb)->>'size_bytes')::bigint), 0)`
          : sql<number>`coalesce(sum(json_extract(status, '$.size_bytes')), 0)`;
      const r = await db.selectFrom('images').select(size.as('n')).where('project', 'in', list).executeTakeFirst();
      return num(r?.n);
    }
  }
}

/** Use of each project's subtree, counted once per (project, dimension) asked; an instance's dimensions in one query. */
function subtreeCounter(db: Db, dialect: Dialect, tree: readonly TreeNode[]) {
  const instances = new Map<string, Promise<InstanceTotals>>();
  const others = new Map<string, Promise<number>>();
  return async (id: string, d: QuotaDimension): Promise<number> => {
    const names = () => subtreeOf(tree, id).map((n) => n.name);
    if (isInstanceDimension(d)) {
      let p = instances.get(id);
      if (p === undefined) instances.set(id, (p = instanceTotals(db, names())));
      return (await p)[d];
    }
    const key = `${id}\u0000${d}`;
    let p = others.get(key);
    if (p === undefined) others.set(key, (p = countUsage(db, dialect, names(), d)));
    return p;
  };
}

/** The project's chain, root first. */
async function chainOfProject(db: Db, project: string) {
  const tree = await loadTree(db);
  const self = tree.find((n) => n.name === project);
  if (self === undefined)
    throw new FloeError('project_not_found', `project "${project}" not found`, { kind: 'project', id: project });
  return { tree, self, chain: chainOf(tree, self.id) };
}

/**
 * Lock the project's chain (for update) and read what checks need. The tree is read again once the
 * locks are held: a sub-project committed while this waited (a sibling given limits, a child of the
 * project) must be in the sums, or two sub-projects made at once could each be given the parent's room.
 */
async function lockedChain(trx: Db, dialect: Dialect, project: string) {
  const found = await chainOfProject(trx, project);
  // SQLite runs one transaction at a time: nothing can have changed since the read.
  if (dialect !== 'postgres') return found;
  await lockProjects(
    trx,
    found.chain.map((n) => n.id),
    'update',
  );
  return chainOfProject(trx, project);
}

/** Throws quota_exceeded unless `deltas` fit the chain's limits as the database holds them now. */
async function checkNow(
  trx: Db,
  dialect: Dialect,
  tree: readonly TreeNode[],
  chain: readonly TreeNode[],
  limits: LimitMap,
  deltas: Deltas,
  written: boolean,
): Promise<void> {
  const dims = dimensionsToCheck(chain, limits, deltas);
  const count = subtreeCounter(trx, dialect, tree);
  const used = new Map<string, number>();
  const key = (id: string, d: QuotaDimension) => `${id}/${d}`;
  for (const n of chain)
    for (const d of dims) used.set(key(n.id, d), (await count(n.id, d)) - (written ? (deltas[d] ?? 0) : 0));
  checkFits(chain, limits, deltas, (id, d) => used.get(key(id, d)) ?? 0);
}

/**
 * Lock the rows of these projects until the transaction ends (in id order, as lockProjects) and read
 * their limits, in one statement.
 */
async function lockedLimits(db: Db, ids: readonly string[], mode: 'update' | 'share'): Promise<LimitMap> {
  const q = db
    .selectFrom('projects as p')
    .leftJoin('project_limits as l', 'l.project_id', 'p.id')
    .select(['p.id as project_id', 'l.dimension', 'l.value'])
    .where('p.id', 'in', [...ids])
    .orderBy('p.id');
  const rows = await (mode === 'update' ? q.forUpdate('p') : q.forKeyShare('p')).execute();
  const out = new Map<string, Map<QuotaDimension, number>>();
  for (const r of rows) {
    if (r.dimension === null || !(QUOTA_DIMENSIONS as readonly string[]).includes(r.dimension)) continue;
    const m = out.get(r.project_id) ?? new Map<QuotaDimension, number>();
    m.set(r.dimension as QuotaDimension, Number(r.value));
    out.set(r.project_id, m);
  }
  return out;
}

/**
 * Take `deltas` from the limits of `project` and every ancestor, inside the caller's transaction: throws
 * quota_exceeded naming the nearest blocking project. Only what grows is checked, and only dimensions
 * limited somewhere on the chain are counted. `written`: the caller already wrote the rows of the change
 * in this transaction (they are in the count), as when what a change takes is known only once it is made
 * (the addresses NICs got); the transaction then rolls back on refusal.
 *
 * A change where nothing grows is not checked. On PostgreSQL, a change the limits read unlocked concern
 * locks the chain for update and reads the limits again with the lock (one statement) and the tree
 * (sub-projects made meanwhile), then counts once;
 * without a limit on the chain, the chain is only share-locked, so a limit set meanwhile waits for the
 * change (and counts it).
 */
export async function reserve(
  trx: Db,
  dialect: Dialect,
  project: string,
  deltas: Deltas,
  opts: { written?: boolean } = {},
): Promise<void> {
  // Nothing grows: no limit can be passed, now or by a limit set meanwhile.
  if (!QUOTA_DIMENSIONS.some((d) => (deltas[d] ?? 0) > 0)) return;
  const written = opts.written === true;
  const { tree, chain } = await chainOfProject(trx, project);
  const ids = chain.map((n) => n.id);
  let limits: LimitMap = await loadLimits(trx, ids);
  if (dialect !== 'postgres') {
    // SQLite runs one transaction at a time: what is read here holds until this one commits.
    if (dimensionsToCheck(chain, limits, deltas).length > 0)
      await checkNow(trx, dialect, tree, chain, limits, deltas, written);
    return;
  }
  if (dimensionsToCheck(chain, limits, deltas).length === 0) {
    limits = await lockedLimits(trx, ids, 'share');
    // A limit set since the first read: take the lock a check needs.
    if (dimensionsToCheck(chain, limits, deltas).length === 0) return;
  }
  limits = await lockedLimits(trx, ids, 'update');
  // Read again under the lock: a sub-project made and used while this waited must be in the count.
  await checkNow(trx, dialect, await loadTree(trx), chain, limits, deltas, written);
}

/** What some NICs take: one NIC each, and a private or public IPv4 address each that has one. */
export async function nicDeltas(db: Db, nics: readonly { network_id: string; ipv4: string | null }[]): Promise<Deltas> {
  const withV4 = nics.filter((n) => n.ipv4 !== null);
  const ids = [...new Set(withV4.map((n) => n.network_id))];
  const kinds = new Map(
    ids.length === 0
      ? []
      : (await db.selectFrom('networks').select(['id', 'kind']).where('id', 'in', ids).execute()).map((r) => [
          r.id,
          r.kind,
        ]),
  );
  const publicV4 = withV4.filter((n) => kinds.get(n.network_id) === 'public').length;
  return { nics: nics.length, ipv4_public: publicV4, ipv4_private: withV4.length - publicV4 };
}

function limitsOf(map: LimitMap, id: string): QuotaLimits {
  const out: QuotaLimits = {};
  for (const [d, v] of map.get(id) ?? []) out[d] = v;
  return out;
}

/** The project's own limits. */
export async function limitsOfProject(db: Db, project: { id: string; name: string }): Promise<ProjectLimits> {
  return { project: project.name, limits: limitsOf(await loadLimits(db, [project.id]), project.id) };
}

/**
 * Set (or with null, remove) limits of `project`, in the caller's transaction: refused when a new limit
 * is below what the subtree uses or what was given to sub-projects (limit_below_allocation), or when the
 * parent's limit cannot cover it with what its other sub-projects got (quota_exceeded naming the parent).
 */
export async function applyLimits(
  trx: Db,
  dialect: Dialect,
  project: string,
  change: QuotaLimitsChange,
): Promise<ProjectLimits> {
  const { tree, self, chain } = await lockedChain(trx, dialect, project);
  const parent = chain.length > 1 ? chain[chain.length - 2]! : null;
  const children = tree.filter((n) => n.parent_id === self.id);
  const siblings = parent === null ? [] : tree.filter((n) => n.parent_id === parent.id && n.id !== self.id);
  const limits = await loadLimits(
    trx,
    [...chain, ...children, ...siblings].map((n) => n.id),
  );
  const count = subtreeCounter(trx, dialect, tree);
  const sumOf = (nodes: readonly TreeNode[], d: QuotaDimension) =>
    nodes.reduce((s, n) => s + (limits.get(n.id)?.get(d) ?? 0), 0);
  for (const d of QUOTA_DIMENSIONS) {
    const value = change[d];
    if (value === undefined) continue;
    if (value === null) {
      await trx.deleteFrom('project_limits').where('project_id', '=', self.id).where('dimension', '=', d).execute();
      continue;
    }
    checkNewLimit(d, value, {
      project: self,
      parent,
      usedSubtree: await count(self.id, d),
      delegated: sumOf(children, d),
      parentLimit: parent === null ? undefined : limits.get(parent.id)?.get(d),
      siblingsLimits: sumOf(siblings, d),
    });
    await trx
      .insertInto('project_limits')
      .values({ project_id: self.id, dimension: d, value })
      .onConflict((oc) => oc.columns(['project_id', 'dimension']).doUpdateSet({ value }))
      .execute();
  }
  return limitsOfProject(trx, self);
}

/** Usage of a project and its subtree, per dimension. */
export async function usageOf(db: Db, dialect: Dialect, project: string): Promise<ProjectUsage> {
  const tree = await loadTree(db);
  const self = tree.find((n) => n.name === project);
  if (self === undefined)
    throw new FloeError('project_not_found', `project "${project}" not found`, { kind: 'project', id: project });
  const chain = chainOf(tree, self.id);
  const children = tree.filter((n) => n.parent_id === self.id);
  const limits = await loadLimits(
    db,
    [...chain, ...children].map((n) => n.id),
  );
  const count = subtreeCounter(db, dialect, tree);
  const dimensions = [];
  for (const d of QUOTA_DIMENSIONS) {
    const used = new Map<string, number>();
    for (const n of chain) used.set(n.id, await count(n.id, d));
    const own = await countUsage(db, dialect, [self.name], d);
    dimensions.push(usageLine(d, chain, limits, children, own, (id) => used.get(id) ?? 0));
  }
  const parent = chain.length > 1 ? chain[chain.length - 2]!.name : null;
  return {
    project: self.name,
    parent,
    subprojects: subtreeOf(tree, self.id)
      .slice(1)
      .map((n) => n.name),
    dimensions,
  };
}
