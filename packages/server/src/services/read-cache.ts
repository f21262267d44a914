/** Options of a ReadCache. */
export interface ReadCacheOptions {
  /** Most entries kept; the least recently used go first. 0 turns the cache off. */
  maxEntries: number;
  /** An entry older than this is not used, whatever invalidations said (a backstop against a lost one). */
  maxAgeMs: number;
  /** The clock, in milliseconds (tests pass their own). */
  now?: () => number;
}

interface Entry<V> {
  value: V;
  storedAt: number;
}

/**
 * An in-process cache of values read from the database, by id, that never
 * keeps a value a write has made stale.
 *
 * Writers call `invalidate(id)` before their transaction commits and again
 * after. Readers take a `ticket()` before they read the database and offer
 * what they read with `set(id, value, ticket)`, which is refused when `id`
 * was invalidated after the ticket was taken: a read that began before a
 * write may have seen the old row, and must not put it back once the write
 * has removed it. A read that began after the first invalidation and finished
 * before the commit is removed by the second one.
 *
 * Every invalidation advances an epoch and records it per id. That record is
 * bounded: when it grows past its limit it is dropped and every ticket taken
 * before is refused, which is conservative and still correct.
 */
export class ReadCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly invalidatedAt = new Map<string, number>();
  private epoch = 0;
  /** Tickets older than this are refused (set by clear() and by pruning invalidatedAt). */
  private floor = 0;
  private suspended = false;
  private readonly now: () => number;

  constructor(private readonly opts: ReadCacheOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** False when configured off or suspended; then get() misses and set() refuses. */
  get enabled(): boolean {
    return this.opts.maxEntries > 0 && !this.suspended;
  }

  /** Entries held now. */
  get size(): number {
    return this.entries.size;
  }

  /** The value cached for `id`, if there is a fresh one. */
  get(id: string): V | undefined {
    if (!this.enabled) return undefined;
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    this.entries.delete(id);
    if (this.now() - entry.storedAt >= this.opts.maxAgeMs) return undefined;
    // Map keeps insertion order: re-adding makes the first key the least recently used.
    this.entries.set(id, entry);
    return entry.value;
  }

  /** Take before reading the database; hand to set() with what was read. */
  ticket(): number {
    return this.epoch;
  }

  /** Keep `value` for `id` unless `id` was invalidated since `ticket`; true when it was kept. */
  set(id: string, value: V, ticket: number): boolean {
    if (!this.enabled || ticket < this.floor || (this.invalidatedAt.get(id) ?? -1) > ticket) return false;
    this.entries.delete(id);
    if (this.entries.size >= this.opts.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, { value, storedAt: this.now() });
    return true;
  }

  /** Forget `ids` and refuse what reads that began before this call offer for them. */
  invalidate(ids: string | Iterable<string>): void {
    this.epoch++;
    for (const id of typeof ids === 'string' ? [ids] : ids) {
      this.entries.delete(id);
      this.invalidatedAt.set(id, this.epoch);
    }
    if (this.invalidatedAt.size > Math.max(this.opts.maxEntries, 1024)) {
      this.invalidatedAt.clear();
      this.floor = this.epoch;
    }
  }

  /** Forget everything and refuse what any read under way offers. */
  clear(): void {
    this.epoch++;
    this.floor = this.epoch;
    this.entries.clear();
    this.invalidatedAt.clear();
  }

  /**
   * Stop (false) or resume (true) caching, e.g. while invalidations from
   * other processes cannot arrive. Both clear: what was cached while they
   * could not arrive may be stale.
   */
  setAvailable(available: boolean): void {
    this.suspended = !available;
    this.clear();
  }
}

/** Freezes `value` and everything it holds, so a value shared through a cache cannot be changed by one user. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
