import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * An Idempotency-Key reservation names the control plane process that holds it (`owner`) and how long
 * it holds it without renewing (`lease_until`): a reservation whose holder died can be taken over by a
 * retry instead of answering "in progress" until it expires. Reservations made before have no owner
 * and are free to take.
 */
export function idempotencyLeases(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema.alterTable('idempotency_keys').addColumn('owner', text).execute();
      await db.schema.alterTable('idempotency_keys').addColumn('lease_until', text).execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.alterTable('idempotency_keys').dropColumn('lease_until').execute();
      await db.schema.alterTable('idempotency_keys').dropColumn('owner').execute();
    },
  };
}
