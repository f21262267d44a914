import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * The audit log: one row per mutating request and per authentication event, with the requestor
 * (token, and user where there is one), the source address, the route and the outcome. Rows are
 * keyed by a sortable id, so pages are read by keyset like every other list; `at` is indexed for
 * retention and time filters.
 */
export function auditLog(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('audit_log')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('at', text, (c) => c.notNull())
        .addColumn('action', text, (c) => c.notNull())
        .addColumn('outcome', text, (c) => c.notNull())
        .addColumn('status', 'integer')
        .addColumn('error_code', text)
        .addColumn('reason', text)
        .addColumn('token_id', text)
        .addColumn('user_id', text)
        .addColumn('user_name', text)
        .addColumn('authenticator', text)
        .addColumn('source_address', text)
        .addColumn('method', text)
        .addColumn('route', text)
        .addColumn('resource_kind', text)
        .addColumn('resource_id', text)
        .addColumn('project', text)
        .addColumn('request_id', text)
        .execute();
      await db.schema.createIndex('audit_log_at_idx').on('audit_log').column('at').execute();
      await db.schema.createIndex('audit_log_token_id_idx').on('audit_log').columns(['token_id', 'id']).execute();
      await db.schema.createIndex('audit_log_resource_id_idx').on('audit_log').columns(['resource_id', 'id']).execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.dropTable('audit_log').execute();
    },
  };
}
