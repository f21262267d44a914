import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Whether an image is public as a column of its own: image lists of a project include the public images
 * of every project (an operator's library of distribution images), which one indexed condition finds
 * instead of parsing every image's spec JSON. Existing rows take the flag from their spec.
 */
export function imagePublic(dialect: Dialect): Migration {
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema
        .alterTable('images')
        .addColumn('public', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      const fromSpec =
        dialect === 'postgres'
          ? sql`case when ((spec::jsonb)->>'public') = 'true' then 1 else 0 end`
          : sql`case when json_extract(spec, '$.public') = 1 then 1 else 0 end`;
      await sql`update images set public = ${fromSpec}`.execute(db);
      await db.schema.createIndex('images_public').on('images').column('public').execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.dropIndex('images_public').execute();
      await db.schema.alterTable('images').dropColumn('public').execute();
    },
  };
}
