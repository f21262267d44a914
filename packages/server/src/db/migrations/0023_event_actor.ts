import type { Kysely, Migration } from 'kysely';

/**
 * Who caused an event: the actor of the request that published it (a token's id, or `checker:...` for a
 * caller an external checker vouched for), as history entries and the audit log name it. Null for events
 * nobody asked for (agent reports, heartbeats, the control plane's own work) and for every older event.
 */
export function eventActor(): Migration {
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema.alterTable('events').addColumn('actor', 'text').execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.alterTable('events').dropColumn('actor').execute();
    },
  };
}
