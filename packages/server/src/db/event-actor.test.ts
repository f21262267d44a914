import { describe, expect, it } from 'vitest';
import { migratorOf } from './migrations.js';
import { storeTargets } from './testing.js';

const T0 = '2025-01-02T03:04:05.678Z';

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`events.actor on ${t.name}`, () => {
    it('is added empty to the events there are, and dropped again without losing them', async () => {
      const store = await t.open({ migrate: false });
      try {
        const migrator = migratorOf(store.db, store.dialect);
        expect((await migrator.migrateTo('0022_image_public')).error).toBeUndefined();
        const event = (id: string, project: string | null) => ({
          id,
          time: T0,
          type: 'resource.created',
          project,
          kind: 'instance',
          resource_id: `inst_${id}`,
          data: JSON.stringify({ name: id }),
        });
        // Rows as the schema before 0023_event_actor had them.
        await store.db
          .insertInto('events')
          .values([event('a', 'alpha'), event('b', null)] as never)
          .execute();
        const columns = async () =>
          (await store.db.introspection.getTables()).find((x) => x.name === 'events')!.columns.map((c) => c.name);
        expect(await columns()).not.toContain('actor');

        expect((await migrator.migrateTo('0023_event_actor')).error).toBeUndefined();
        expect(await columns()).toContain('actor');
        const after = await store.db.selectFrom('events').selectAll().orderBy('seq').execute();
        expect(after.map((r) => [r.id, r.project, r.resource_id, r.actor])).toEqual([
          ['a', 'alpha', 'inst_a', null],
          ['b', null, 'inst_b', null],
        ]);
        const seqs = after.map((r) => Number(r.seq));
        await store.db
          .insertInto('events')
          .values({ ...event('c', 'alpha'), actor: 'tok_c' })
          .execute();

        expect((await migrator.migrateDown()).error).toBeUndefined();
        expect(await columns()).not.toContain('actor');
        const down = await store.db.selectFrom('events').select(['seq', 'id', 'data']).orderBy('seq').execute();
        expect(down.map((r) => r.id)).toEqual(['a', 'b', 'c']);
        expect(down.slice(0, 2).map((r) => Number(r.seq))).toEqual(seqs);
        expect(JSON.parse(down[2]!.data)).toEqual({ name: 'c' });

        // And up again: the column comes back empty, the events stay.
        expect((await migrator.migrateTo('0023_event_actor')).error).toBeUndefined();
        const again = await store.db.selectFrom('events').select(['id', 'actor']).orderBy('seq').execute();
        expect(again).toEqual([
          { id: 'a', actor: null },
          { id: 'b', actor: null },
          { id: 'c', actor: null },
        ]);
      } finally {
        await store.close();
      }
    });
  });
}
