import { FloeError, QUOTA_DIMENSIONS, type QuotaDimension, type QuotaLimits, type QuotaUsageLine } from '@floe/api';

/*
 * The decisions of quotas, without I/O: whether a request fits under every limit of the project's chain
 * of ancestors, whether a limit may change, and what usage looks like. services/quota.ts reads the rows
 * and applies them.
 */

/** How much of each dimension a change takes (positive) or gives back. */
export type Deltas = Partial<Record<QuotaDimension, number>>;

/** A project as the tree sees it. */
export interface TreeNode {
  readonly id: string;
  readonly name: string;
  readonly parent_id: string | null;
}

/** Limits by project id, then dimension. */
export type LimitMap = ReadonlyMap<string, ReadonlyMap<QuotaDimension, number>>;

/** The project and its ancestors, root first. Throws on a cycle (never made by the API). */
export function chainOf(nodes: readonly TreeNode[], id: string): TreeNode[] {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const chain: TreeNode[] = [];
  let at = byId.get(id);
  while (at !== undefined) {
    if (chain.includes(at)) throw new Error(`project tree has a cycle at ${at.id}`);
    chain.unshift(at);
    at = at.parent_id === null ? undefined : byId.get(at.parent_id);
  }
  return chain;
}

/** The project and every project below it. */
export function subtreeOf(nodes: readonly TreeNode[], id: string): TreeNode[] {
  const children = new Map<string, TreeNode[]>();
  for (const n of nodes) if (n.parent_id !== null) children.set(n.parent_id, [...(children.get(n.parent_id) ?? []), n]);
  const out: TreeNode[] = [];
  const walk = (pid: string) => {
    for (const c of children.get(pid) ?? []) {
      if (out.includes(c)) continue;
      out.push(c);
      walk(c.id);
    }
  };
  const self = nodes.find((n) => n.id === id);
  if (self !== undefined) out.unshift(self);
  walk(id);
  return out;
}

/** The dimensions a change asks more of, with a limit somewhere on the chain: the only ones to count. */
export function dimensionsToCheck(chain: readonly TreeNode[], limits: LimitMap, deltas: Deltas): QuotaDimension[] {
  return QUOTA_DIMENSIONS.filter(
    (d) => (deltas[d] ?? 0) > 0 && chain.some((n) => limits.get(n.id)?.get(d) !== undefined),
  );
}

/**
 * Throws quota_exceeded when a change does not fit: the nearest project of the chain (the project itself
 * first) whose limit its subtree's use plus the change would pass. `used(id, d)` is the use of a
 * project's whole subtree.
 */
export function checkFits(
  chain: readonly TreeNode[],
  limits: LimitMap,
  deltas: Deltas,
  used: (id: string, d: QuotaDimension) => number,
): void {
  for (const d of dimensionsToCheck(chain, limits, deltas)) {
    const want = deltas[d] ?? 0;
    for (const n of [...chain].reverse()) {
      const limit = limits.get(n.id)?.get(d);
      if (limit === undefined) continue;
      const now = used(n.id, d);
      if (now + want > limit)
        throw new FloeError(
          'quota_exceeded',
          `project "${n.name}" has a limit of ${limit} ${d} and uses ${now}: ${want} more does not fit`,
          { dimension: d, project: n.name, limit, used: now, requested: want },
        );
    }
  }
}

/** What stands in the way of a new limit of `project`: its use, its children's limits, its parent's limit. */
export interface LimitContext {
  readonly project: TreeNode;
  readonly parent: TreeNode | null;
  /** The use of the project's subtree. */
  readonly usedSubtree: number;
  /** The sum of its direct children's limits. */
  readonly delegated: number;
  /** The parent's limit, or undefined when it has none. */
  readonly parentLimit: number | undefined;
  /** The sum of the limits of the project's siblings (the parent's other children). */
  readonly siblingsLimits: number;
}

/** Throws when `value` may not be the project's new limit on `d`. */
export function checkNewLimit(d: QuotaDimension, value: number, c: LimitContext): void {
  if (value < c.usedSubtree)
    throw new FloeError(
      'limit_below_allocation',
      `project "${c.project.name}" already uses ${c.usedSubtree} ${d}: its limit may not be ${value}`,
      { dimension: d, project: c.project.name, blocker: 'usage', limit: value, amount: c.usedSubtree },
    );
  if (value < c.delegated)
    throw new FloeError(
      'limit_below_allocation',
      `project "${c.project.name}" gave ${c.delegated} ${d} to its sub-projects: its limit may not be ${value}`,
      { dimension: d, project: c.project.name, blocker: 'delegated', limit: value, amount: c.delegated },
    );
  if (c.parent !== null && c.parentLimit !== undefined && c.siblingsLimits + value > c.parentLimit)
    throw new FloeError(
      'quota_exceeded',
      `project "${c.parent.name}" has a limit of ${c.parentLimit} ${d} and gave ${c.siblingsLimits} to its other sub-projects: ${value} more does not fit`,
      { dimension: d, project: c.parent.name, limit: c.parentLimit, used: c.siblingsLimits, requested: value },
    );
}

/** One line of usage: the project's limit and use, and the room left on the way to the root. */
export function usageLine(
  d: QuotaDimension,
  chain: readonly TreeNode[],
  limits: LimitMap,
  children: readonly TreeNode[],
  usedOwn: number,
  used: (id: string) => number,
): QuotaUsageLine {
  const self = chain[chain.length - 1]!;
  let available: number | null = null;
  for (const n of chain) {
    const limit = limits.get(n.id)?.get(d);
    if (limit === undefined) continue;
    const room = Math.max(0, limit - used(n.id));
    available = available === null ? room : Math.min(available, room);
  }
  return {
    dimension: d,
    limit: limits.get(self.id)?.get(d) ?? null,
    used: usedOwn,
    used_subtree: used(self.id),
    delegated: children.reduce((sum, c) => sum + (limits.get(c.id)?.get(d) ?? 0), 0),
    available,
  };
}

/** FLOE_DEFAULT_LIMITS: `dimension=amount` pairs separated by commas (empty: no default limits). */
export function parseDefaultLimits(text: string): QuotaLimits {
  const out: QuotaLimits = {};
  for (const part of text.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    const [name, raw] = part.split('=', 2).map((x) => x.trim());
    const value = Number(raw);
    if (
      !(QUOTA_DIMENSIONS as readonly string[]).includes(name ?? '') ||
      raw === '' ||
      !Number.isSafeInteger(value) ||
      value < 0
    )
      throw new FloeError(
        'validation_failed',
        `FLOE_DEFAULT_LIMITS must be dimension=amount pairs (dimensions: ${QUOTA_DIMENSIONS.join(', ')}), got "${part}"`,
        { field: 'FLOE_DEFAULT_LIMITS' },
      );
    out[name as QuotaDimension] = value;
  }
  return out;
}
