import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Quotas with delegation: projects form a tree (`projects.parent_id`, null for a top-level project),
 * and each project may have a limit per dimension in `project_limits`, one row per (project, dimension)
 * so that a new dimension is a new name, not a new column. No row: no limit of the project's own.
 * What a project uses is not stored: it is counted from the resource tables when it is needed.
 */
export function quotas(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  const big = dialect === 'postgres' ? sql`bigint` : sql`integer`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema.alterTable('projects').addColumn('parent_id', text).execute();
      await db.schema.createIndex('projects_parent_id_idx').on('projects').column('parent_id').execute();
      await db.schema
        .createTable('project_limits')
        .addColumn('project_id', text, (c) => c.notNull())
        .addColumn('dimension', text, (c) => c.notNull())
        .addColumn('value', big, (c) => c.notNull())
        .addPrimaryKeyConstraint('project_limits_pkey', ['project_id', 'dimension'])
        .execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.dropTable('project_limits').execute();
      await db.schema.dropIndex('projects_parent_id_idx').execute();
      await db.schema.alterTable('projects').dropColumn('parent_id').execute();
    },
  };
}
