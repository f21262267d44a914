import { describe, expect, it } from 'vitest';
import { deepFreeze, ReadCache } from './read-cache.js';

/** A promise whose settling the test controls: a database read that takes as long as the test wants. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** A fake table plus the read and write protocol InstanceService follows around it. */
class FakeStore {
  readonly rows = new Map<string, number>();
  constructor(readonly cache: ReadCache<number>) {}

  /** A cached read whose database read is `load` (so the test decides when it returns and what it saw). */
  async read(id: string, load: () => Promise<number>): Promise<number> {
    const hit = this.cache.get(id);
    if (hit !== undefined) return hit;
    const ticket = this.cache.ticket();
    const value = await load();
    this.cache.set(id, value, ticket);
    return value;
  }

  /** A write: invalidate, change the row ("commit"), invalidate again. */
  async write(id: string, value: number, beforeCommit: () => Promise<void> = async () => undefined): Promise<void> {
    this.cache.invalidate(id);
    await beforeCommit();
    // Values only grow (a revision), so "stale" is simply "smaller than what a finished write left".
    this.rows.set(id, Math.max(this.rows.get(id) ?? 0, value));
    this.cache.invalidate(id);
  }
}

const options = { maxEntries: 100, maxAgeMs: 60_000 };

describe('ReadCache', () => {
  it('keeps what was read and gives it back', () => {
    const cache = new ReadCache<string>(options);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.set('a', 'one', cache.ticket())).toBe(true);
    expect(cache.get('a')).toBe('one');
    cache.invalidate('a');
    expect(cache.get('a')).toBeUndefined();
  });

  it('refuses a row read before a write that finished before it was offered', async () => {
    const store = new FakeStore(new ReadCache<number>(options));
    store.rows.set('i', 1);
    // A reader starts and sees the old row...
    const load = deferred<number>();
    const reading = store.read('i', () => load.promise);
    // ...the write commits while the reader's answer is still on its way...
    await store.write('i', 2);
    load.resolve(1);
    expect(await reading).toBe(1); // that reader may answer what it saw,
    // ...but it must not leave the old row behind for the next one.
    expect(store.cache.get('i')).toBeUndefined();
    expect(await store.read('i', async () => store.rows.get('i')!)).toBe(2);
    expect(store.cache.get('i')).toBe(2);
  });

  it('drops a row cached during a write before it committed', async () => {
    const store = new FakeStore(new ReadCache<number>(options));
    store.rows.set('i', 1);
    await store.write('i', 2, async () => {
      // Begun after the first invalidation: the old row is offered and kept for now...
      expect(await store.read('i', async () => store.rows.get('i')!)).toBe(1);
      expect(store.cache.get('i')).toBe(1);
    });
    // ...and gone once the write committed.
    expect(store.cache.get('i')).toBeUndefined();
    expect(await store.read('i', async () => store.rows.get('i')!)).toBe(2);
  });

  it('only refuses the ids written, not every read under way', async () => {
    const cache = new ReadCache<number>(options);
    const ticket = cache.ticket();
    cache.invalidate('other');
    expect(cache.set('i', 1, ticket)).toBe(true);
    expect(cache.set('other', 1, ticket)).toBe(false);
  });

  it('never serves a stale row after a write finished, whatever the interleaving', async () => {
    // Random schedules of readers and writers over a few ids; after every write completes, any read
    // that begins afterwards must see at least that value (values only grow).
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const tick = () => new Promise<void>((r) => setImmediate(r));
    for (let round = 0; round < 20; round++) {
      const store = new FakeStore(new ReadCache<number>({ maxEntries: 2, maxAgeMs: 60_000 }));
      const ids = ['a', 'b', 'c'];
      for (const id of ids) store.rows.set(id, 0);
      const committed = new Map(ids.map((id) => [id, 0]));
      let next = 1;
      const failures: string[] = [];
      const work: Array<Promise<void>> = [];
      for (let n = 0; n < 200; n++) {
        const id = ids[Math.floor(random() * ids.length)]!;
        if (random() < 0.3) {
          const value = next++;
          work.push(
            store
              .write(id, value, async () => {
                for (let k = Math.floor(random() * 3); k > 0; k--) await tick();
              })
              .then(() => {
                committed.set(id, Math.max(committed.get(id)!, value));
              }),
          );
        } else {
          const atLeast = committed.get(id)!;
          // The database answers what it holds when the read runs, after a random delay.
          const delays = Math.floor(random() * 3);
          work.push(
            store
              .read(id, async () => {
                const seen = store.rows.get(id)!;
                for (let k = delays; k > 0; k--) await tick();
                return seen;
              })
              .then((v) => {
                if (v < atLeast) failures.push(`${id}: read ${v} after ${atLeast} was committed`);
              }),
          );
        }
        if (random() < 0.5) await tick();
      }
      await Promise.all(work);
      expect(failures).toEqual([]);
      for (const id of ids) expect(await store.read(id, async () => store.rows.get(id)!)).toBe(store.rows.get(id));
    }
  });

  it('holds at most maxEntries, dropping the least recently used', () => {
    const cache = new ReadCache<number>({ maxEntries: 3, maxAgeMs: 60_000 });
    for (const id of ['a', 'b', 'c']) cache.set(id, 1, cache.ticket());
    cache.get('a'); // a is now the most recently used
    cache.set('d', 1, cache.ticket());
    expect(cache.size).toBe(3);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBe(1);
    expect(cache.get('c')).toBe(1);
    expect(cache.get('d')).toBe(1);
  });

  it('is off with maxEntries 0', () => {
    const cache = new ReadCache<number>({ maxEntries: 0, maxAgeMs: 60_000 });
    expect(cache.enabled).toBe(false);
    expect(cache.set('a', 1, cache.ticket())).toBe(false);
    expect(cache.get('a')).toBeUndefined();
  });

  it('does not serve entries older than maxAgeMs', () => {
    let now = 1_000;
    const cache = new ReadCache<number>({ maxEntries: 10, maxAgeMs: 5_000, now: () => now });
    cache.set('a', 1, cache.ticket());
    now += 4_999;
    expect(cache.get('a')).toBe(1);
    now += 1;
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('stays correct when the record of invalidations is pruned', () => {
    const cache = new ReadCache<number>({ maxEntries: 10, maxAgeMs: 60_000 });
    const ticket = cache.ticket();
    for (let i = 0; i <= 1024; i++) cache.invalidate(`x${i}`); // past the record's limit: pruned
    // What was invalidated is no longer recorded, so every read begun before is refused.
    expect(cache.set('x0', 1, ticket)).toBe(false);
    expect(cache.set('unrelated', 1, ticket)).toBe(false);
    expect(cache.set('x0', 1, cache.ticket())).toBe(true);
  });

  it('suspended, misses and refuses; resumed, refuses reads begun before', () => {
    const cache = new ReadCache<number>(options);
    cache.set('a', 1, cache.ticket());
    const before = cache.ticket();
    cache.setAvailable(false);
    expect(cache.enabled).toBe(false);
    expect(cache.get('a')).toBeUndefined();
    const during = cache.ticket();
    expect(cache.set('a', 1, during)).toBe(false);
    cache.setAvailable(true);
    expect(cache.size).toBe(0);
    expect(cache.set('a', 1, before)).toBe(false);
    expect(cache.set('a', 1, during)).toBe(false);
    expect(cache.set('a', 1, cache.ticket())).toBe(true);
  });

  it('clear() refuses every read under way', () => {
    const cache = new ReadCache<number>(options);
    const ticket = cache.ticket();
    cache.clear();
    expect(cache.set('a', 1, ticket)).toBe(false);
  });
});

describe('deepFreeze', () => {
  it('freezes nested objects and arrays', () => {
    const value = deepFreeze({ a: { b: [1, { c: 2 }] }, d: null });
    expect(Object.isFrozen(value)).toBe(true);
    expect(Object.isFrozen(value.a)).toBe(true);
    expect(Object.isFrozen(value.a.b)).toBe(true);
    expect(Object.isFrozen(value.a.b[1])).toBe(true);
    expect(() => {
      (value.a as { b: unknown }).b = 1;
    }).toThrow(TypeError);
  });
});
