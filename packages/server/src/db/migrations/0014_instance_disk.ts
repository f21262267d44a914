import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * An instance's disk size as a column of its own, beside vcpus and memory_mib: quota checks sum the
 * three in one query over the project's rows instead of parsing every instance's spec JSON for the
 * disk. Existing rows take the size from their spec.
 */
export function instanceDisk(dialect: Dialect): Migration {
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema
        .alterTable('instances')
        .addColumn('disk_gib', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      const fromSpec =
        dialect === 'postgres'
          ? sql`coalesce(((spec::jsonb)->>'disk_gib')::integer, 0)`
          : sql`coalesce(json_extract(spec, '$.disk_gib'), 0)`;
      await sql`update instances set disk_gib = ${fromSpec}`.execute(db);
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.alterTable('instances').dropColumn('disk_gib').execute();
    },
  };
}
