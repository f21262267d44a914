import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Metering: what each resource held, as time ranges per billable dimension (vCPUs, MiB, disk GiB,
 * allocated and running time, public IPv4 addresses, image bytes). A range is open (`ended_at` NULL)
 * while the quantity holds; a change closes it and opens the next at the same instant, so the ranges
 * of one resource and dimension never overlap and leave no gap. The partial unique index allows one
 * open range per resource and dimension: a control plane that restarts, or a second one, cannot open
 * a duplicate.
 */
export function metering(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('meter_ranges')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('project', text, (c) => c.notNull())
        .addColumn('resource_kind', text, (c) => c.notNull())
        .addColumn('resource_id', text, (c) => c.notNull())
        .addColumn('dimension', text, (c) => c.notNull())
        .addColumn('quantity', 'bigint', (c) => c.notNull())
        .addColumn('started_at', text, (c) => c.notNull())
        .addColumn('ended_at', text)
        .execute();
      await db.schema
        .createIndex('meter_ranges_open_key')
        .unique()
        .on('meter_ranges')
        .columns(['resource_id', 'dimension'])
        .where(sql.ref('ended_at'), 'is', null)
        .execute();
      await db.schema
        .createIndex('meter_ranges_project_started_idx')
        .on('meter_ranges')
        .columns(['project', 'started_at'])
        .execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.dropTable('meter_ranges').execute();
    },
  };
}
