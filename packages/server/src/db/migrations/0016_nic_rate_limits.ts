import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Rate limits per NIC: bandwidth and packet rates to and from the instance, as JSON (null: none),
 * which the agent enforces on the NIC's tap.
 */
export function nicRateLimits(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema.alterTable('nics').addColumn('rate_limit', text).execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.alterTable('nics').dropColumn('rate_limit').execute();
    },
  };
}
