import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * A token's scope: JSON text `{ kinds?, resources?, verbs? }` that narrows what the token may do
 * beyond its projects (resources by id); NULL for a token without one, as every token before.
 */
export function tokenScopes(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema.alterTable('tokens').addColumn('scope', text).execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.alterTable('tokens').dropColumn('scope').execute();
    },
  };
}
