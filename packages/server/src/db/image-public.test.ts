import { describe, expect, it } from 'vitest';
import { migratorOf } from './migrations.js';
import { storeTargets } from './testing.js';

const T0 = '2025-01-02T03:04:05.678Z';

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`images.public on ${t.name}`, () => {
    it("is filled from each image's spec when the migration runs", async () => {
      const store = await t.open({ migrate: false });
      try {
        expect((await migratorOf(store.db, store.dialect).migrateTo('0017_vpn')).error).toBeUndefined();
        const image = (id: string, spec: object) => ({
          id,
          name: id,
          labels: '{}',
          metadata: '{}',
          revision: 1,
          created_at: T0,
          updated_at: T0,
          project: 'alpha',
          spec: JSON.stringify(spec),
          status: '{}',
        });
        // Rows as the schema before 0022_image_public had them.
        await store.db
          .insertInto('images')
          .values([
            image('a', { format: 'qcow2', public: true }),
            image('b', { format: 'qcow2', public: false }),
            image('c', { format: 'qcow2' }),
          ] as never)
          .execute();
        expect((await migratorOf(store.db, store.dialect).migrateTo('0022_image_public')).error).toBeUndefined();
        const got = await store.db.selectFrom('images').select(['id', 'public']).orderBy('id').execute();
        expect(got.map((r) => [r.id, Number(r.public)])).toEqual([
          ['a', 1],
          ['b', 0],
          ['c', 0],
        ]);
      } finally {
        await store.close();
      }
    });
  });
}
