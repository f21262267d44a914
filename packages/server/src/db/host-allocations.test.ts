import { describe, expect, it } from 'vitest';
import { sql, type Insertable } from 'kysely';
import { migrate, migratorOf } from './migrations.js';
import type { Database } from './schema.js';
import { storeTargets, type TestStore } from './testing.js';

const T0 = '2025-01-02T03:04:05.678Z';

function instance(
  id: string,
  hostId: string | null,
  vcpus: number,
  memoryMib: number,
): Insertable<Database['instances']> {
  return {
    id,
    name: id,
    labels: '{}',
    metadata: '{}',
    revision: 1,
    created_at: T0,
    updated_at: T0,
    project: 'alpha',
    spec: '{}',
    status: '{}',
    host_id: hostId,
    image_id: 'img_1',
    state: 'running',
    vcpus,
    memory_mib: memoryMib,
    disk_gib: 1,
    deleting: 0,
    generation: 1,
    restart_generation: 0,
    force_stop: 0,
  };
}

/** host_allocations as host → [instances, vcpus, MiB], hosts holding nothing left out. */
async function kept(store: TestStore): Promise<Record<string, number[]>> {
  const rows = await store.db.selectFrom('host_allocations').selectAll().orderBy('host_id').execute();
  return Object.fromEntries(
    rows
      .filter((r) => Number(r.instances) !== 0)
      .map((r) => [r.host_id, [Number(r.instances), Number(r.vcpus), Number(r.memory_mib)]]),
  );
}

/** The same, summed over `instances`. */
async function summed(store: TestStore): Promise<Record<string, number[]>> {
  const { rows } = await sql<{ host_id: string; n: number; v: number; m: number }>`
    select host_id, count(*) as n, sum(vcpus) as v, sum(memory_mib) as m from instances
    where host_id is not null group by host_id order by host_id`.execute(store.db);
  return Object.fromEntries(rows.map((r) => [r.host_id, [Number(r.n), Number(r.v), Number(r.m)]]));
}

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`host_allocations on ${t.name}`, () => {
    it('follows every insert, move, resize and delete of instances', async () => {
      const store = await t.open();
      try {
        await store.db
          .insertInto('instances')
          .values([
            instance('i1', 'h1', 1, 256),
            instance('i2', 'h1', 2, 1024),
            instance('i3', 'h2', 4, 4096),
            instance('i4', null, 8, 8192),
          ])
          .execute();
        expect(await kept(store)).toEqual({ h1: [2, 3, 1280], h2: [1, 4, 4096] });

        await store.db.updateTable('instances').set({ host_id: 'h2' }).where('id', '=', 'i1').execute();
        await store.db.updateTable('instances').set({ host_id: 'h3' }).where('id', '=', 'i4').execute();
        await store.db.updateTable('instances').set({ vcpus: 3, memory_mib: 2048 }).where('id', '=', 'i2').execute();
        await store.db.updateTable('instances').set({ host_id: null }).where('id', '=', 'i3').execute();
        // A write that touches none of the three columns changes nothing.
        await store.db.updateTable('instances').set({ state: 'stopped' }).execute();
        expect(await kept(store)).toEqual({ h1: [1, 3, 2048], h2: [1, 1, 256], h3: [1, 8, 8192] });

        await store.db.deleteFrom('instances').where('id', 'in', ['i1', 'i4']).execute();
        expect(await kept(store)).toEqual({ h1: [1, 3, 2048] });
        expect(await kept(store)).toEqual(await summed(store));
      } finally {
        await store.close();
      }
    });

    it('is filled from the instances already there when the migration runs', async () => {
      const store = await t.open({ migrate: false });
      try {
        const migrator = migratorOf(store.db, store.dialect);
        expect((await migrator.migrateTo('0003_image_imports')).error).toBeUndefined();
        await store.db
          .insertInto('instances')
          .values(
            // Rows as the schema before 0014_instance_disk had them.
            [instance('a', 'h1', 1, 512), instance('b', 'h1', 2, 512), instance('c', 'h2', 1, 128)].map(
              ({ disk_gib: _, ...row }) => row as Insertable<Database['instances']>,
            ),
          )
          .execute();
        // 0004 runs first, then every later migration.
        expect((await migrate(store.db, store.dialect))[0]).toBe('0004_host_allocations');
        expect(await kept(store)).toEqual({ h1: [2, 3, 1024], h2: [1, 1, 128] });
        await store.db
          .insertInto('instances')
          .values(instance('d', 'h2', 2, 128))
          .execute();
        expect(await kept(store)).toEqual(await summed(store));
      } finally {
        await store.close();
      }
    });
  });
}

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`instances.disk_gib on ${t.name}`, () => {
    it("is filled from each instance's spec when the migration runs", async () => {
      const store = await t.open({ migrate: false });
      try {
        expect((await migratorOf(store.db, store.dialect).migrateTo('0013_metering')).error).toBeUndefined();
        const rows = [
          { ...instance('a', 'h1', 1, 512), spec: JSON.stringify({ disk_gib: 7 }) },
          { ...instance('b', 'h1', 1, 512), spec: '{}' },
        ].map(({ disk_gib: _, ...row }) => row as Insertable<Database['instances']>);
        await store.db.insertInto('instances').values(rows).execute();
        expect((await migratorOf(store.db, store.dialect).migrateTo('0014_instance_disk')).error).toBeUndefined();
        const got = await store.db.selectFrom('instances').select(['id', 'disk_gib']).orderBy('id').execute();
        expect(got.map((r) => [r.id, Number(r.disk_gib)])).toEqual([
          ['a', 7],
          ['b', 0],
        ]);
      } finally {
        await store.close();
      }
    });
  });
}
