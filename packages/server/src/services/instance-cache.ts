import { FloeError, type Instance } from '@floe/api';
import type { Db } from '../db/index.js';
import type { InstancesTable } from '../db/schema.js';
import { isIdOf } from '../ids.js';
import { canUseProject } from './authz.js';
import type { ServiceContext } from './context.js';
import { instanceFromRow } from './instance-rows.js';
import type { Principal } from './principal.js';
import { deepFreeze, ReadCache } from './read-cache.js';

/**
 * How long a cached instance is served at most. Invalidations keep the cache exact; this only bounds
 * the damage of one that never arrived (a write to the database from outside floe, a lost notification).
 */
const READ_CACHE_MAX_AGE_MS = 5_000;

/**
 * Instances by id, for single-instance GETs. Every transaction that writes the instances table calls
 * `forget` inside it and `forgotten` after commit; other control planes hear of the write on
 * 'floe_invalidate' when it commits, so their GETs are stale for at most the LISTEN/NOTIFY latency.
 */
export class InstanceCache {
  private readonly cache: ReadCache<Instance>;
  /** "project\nname" → id of instances `get` has read, so name lookups can use the cache too. */
  private readonly idsByName = new Map<string, string>();
  private readonly unsubscribe: Array<() => void>;

  constructor(private readonly ctx: ServiceContext) {
    this.cache = new ReadCache<Instance>({ maxEntries: ctx.config.readCacheEntries, maxAgeMs: READ_CACHE_MAX_AGE_MS });
    this.cache.setAvailable(ctx.cluster.listening);
    this.unsubscribe = [
      ctx.cluster.subscribe('floe_invalidate', (p) => {
        if (p.kind === 'instance' && Array.isArray(p.ids))
          this.cache.invalidate(p.ids.filter((id): id is string => typeof id === 'string'));
      }),
      // Invalidations from other control planes are lost while this one is not listening.
      ctx.cluster.onListening((listening) => this.cache.setAvailable(listening)),
      // Writes made inside another service's transaction (undo on cancel) publish an instance event after commit.
      ctx.bus.subscribe((e) => {
        if (e.kind === 'instance') this.cache.invalidate(e.resource_id);
      }),
    ];
  }

  /** True while reads use the cache: configured on and, on PostgreSQL, hearing the other control planes. */
  get enabled(): boolean {
    return this.cache.enabled;
  }

  /** Stop hearing invalidations. */
  close(): void {
    for (const fn of this.unsubscribe) fn();
    this.cache.clear();
  }

  /** The instance `ref` names, from the cache or else from `load` (then cached, shared and frozen). */
  async get(
    principal: Principal,
    ref: string,
    project: string,
    load: () => Promise<InstancesTable>,
  ): Promise<Instance> {
    const byId = isIdOf('instance', ref);
    const id = byId ? ref : this.idsByName.get(`${project}\n${ref}`);
    const hit = id === undefined ? undefined : this.cache.get(id);
    // A cached row still has the name it was found by: names never change, and (project, name) is unique.
    if (hit !== undefined && (byId || (hit.name === ref && hit.project === project))) {
      // The same not-found as findRow's, so a cached row does not leak its existence to other projects.
      if (!canUseProject(principal, hit.project))
        throw new FloeError('instance_not_found', `instance "${ref}" not found`, { kind: 'instance', id: ref });
      return hit;
    }
    const ticket = this.cache.ticket();
    const instance = deepFreeze(instanceFromRow(await load()));
    if (this.cache.set(instance.id, instance, ticket)) {
      if (this.idsByName.size >= this.ctx.config.readCacheEntries) this.idsByName.clear();
      this.idsByName.set(`${instance.project}\n${instance.name}`, instance.id);
    }
    return instance;
  }

  /**
   * Inside a transaction that writes instance `id` (or anything `get` returns for it), before it commits:
   * drop it from this read cache and from the other control planes' (their notification is sent when,
   * and only if, `trx` commits). Call `forgotten(id)` once the transaction committed.
   */
  async forget(trx: Db, id: string): Promise<void> {
    this.cache.invalidate(id);
    await this.ctx.cluster.publish('floe_invalidate', { kind: 'instance', ids: [id] }, trx);
  }

  /** After the commit of a transaction that called `forget`: drop what reads during the transaction cached. */
  forgotten(id: string | null | undefined): void {
    if (id) this.cache.invalidate(id);
  }

  /** Drop `id` here only: for a new id, which no other control plane can have cached (misses are not cached). */
  invalidateLocal(id: string): void {
    this.cache.invalidate(id);
  }
}
