import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openStore, StatementCache, transaction, type Store } from './index.js';

describe('StatementCache', () => {
  it('prepares each SQL text once and drops the least recently used past its size', () => {
    const db = new BetterSqlite3(':memory:');
    const cache = new StatementCache(db, 2);
    const one = cache.prepare('select 1 as n');
    expect(cache.prepare('select 1 as n')).toBe(one);
    const two = cache.prepare('select 2 as n');
    cache.prepare('select 1 as n'); // "select 2" is now the least recently used
    cache.prepare('select 3 as n');
    expect(cache.size).toBe(2);
    expect(cache.prepare('select 1 as n')).toBe(one);
    expect(cache.prepare('select 2 as n')).not.toBe(two);
    expect(one.all([])).toEqual([{ n: 1 }]);
    cache.close();
    expect(db.open).toBe(false);
  });

  it('does not keep a statement that failed to prepare', () => {
    const db = new BetterSqlite3(':memory:');
    const cache = new StatementCache(db, 10);
    expect(() => cache.prepare('select from nowhere')).toThrow();
    expect(cache.size).toBe(0);
    cache.close();
  });
});

describe('SQLite store with cached statements', () => {
  let dir: string;
  let store: Store;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-stmt-'));
    store = await openStore({ sqlitePath: join(dir, 'floe.db'), migrate: false });
    await sql`create table t (id integer primary key, v text not null)`.execute(store.db);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('prepares a query once however often it runs', async () => {
    const prepare = vi.spyOn(BetterSqlite3.prototype, 'prepare');
    try {
      for (let i = 0; i < 10; i++)
        await store.db
          .selectFrom('t' as never)
          .selectAll()
          .where('id' as never, '=', i as never)
          .execute();
      expect(prepare.mock.calls.filter(([text]) => String(text).startsWith('select * from "t"'))).toHaveLength(1);
    } finally {
      prepare.mockRestore();
    }
  });

  it('binds parameters afresh on every run of the same statement', async () => {
    for (let i = 0; i < 5; i++)
      await store.db
        .insertInto('t' as never)
        .values({ id: i, v: `v${i}` })
        .execute();
    for (let i = 0; i < 5; i++) {
      const row = await sql<{ v: string }>`select v from t where id = ${i}`.execute(store.db);
      expect(row.rows).toEqual([{ v: `v${i}` }]);
    }
  });

  it('commits and rolls back transactions (BEGIN IMMEDIATE) as before', async () => {
    await transaction(store, async (trx) => {
      await sql`insert into t (id, v) values (${1}, ${'kept'})`.execute(trx);
    });
    await expect(
      transaction(store, async (trx) => {
        await sql`insert into t (id, v) values (${2}, ${'dropped'})`.execute(trx);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    // The same cached "begin immediate" and "insert" statements run again.
    await transaction(store, async (trx) => {
      await sql`insert into t (id, v) values (${3}, ${'kept too'})`.execute(trx);
    });
    const rows = await sql<{ id: number; v: string }>`select id, v from t order by id`.execute(store.db);
    expect(rows.rows).toEqual([
      { id: 1, v: 'kept' },
      { id: 3, v: 'kept too' },
    ]);
  });

  it('runs a statement again after it failed', async () => {
    const insert = (id: number) => sql`insert into t (id, v) values (${id}, ${'x'})`.execute(store.db);
    await insert(1);
    await expect(insert(1)).rejects.toMatchObject({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
    await insert(2);
    expect((await sql`select id from t order by id`.execute(store.db)).rows).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('sees schema changes made after a statement was cached', async () => {
    await sql`insert into t (id, v) values (1, 'a')`.execute(store.db);
    expect((await sql`select * from t`.execute(store.db)).rows).toEqual([{ id: 1, v: 'a' }]);
    await sql`alter table t add column w text not null default 'new'`.execute(store.db);
    expect((await sql`select * from t`.execute(store.db)).rows).toEqual([{ id: 1, v: 'a', w: 'new' }]);
  });
});
