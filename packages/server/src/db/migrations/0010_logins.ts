import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Password logins and their second factor.
 *
 * - `users.source` / `users.external_subject`: a user an authenticator other than the local one
 *   created on first login is linked to (authenticator name, subject), unique, so the same person is
 *   found again on the next login; local users have both NULL and are never matched by an external
 *   subject of the same name.
 * - `project_members.via`: 'mapping' for memberships the role mapping gave (re-synced on every login);
 *   NULL for memberships added by hand, which logins never touch.
 * - `tokens.kind`: 'session' for tokens made by a login (revoked by logout); NULL for API tokens.
 * - `user_totp`: one TOTP secret per user, pending until confirmed; `last_step` is the replay guard
 *   (a conditional UPDATE claims a step). `user_recovery_codes`: hashes of unused recovery codes,
 *   deleted when used.
 */
export function logins(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a migration describes history, not the current schema
    async up(db: Kysely<any>) {
      await db.schema.alterTable('users').addColumn('source', text).execute();
      await db.schema.alterTable('users').addColumn('external_subject', text).execute();
      await db.schema
        .createIndex('users_source_subject_key')
        .unique()
        .on('users')
        .columns(['source', 'external_subject'])
        .execute();
      await db.schema.alterTable('project_members').addColumn('via', text).execute();
      await db.schema.alterTable('tokens').addColumn('kind', text).execute();
      await db.schema
        .createTable('user_totp')
        .addColumn('user_id', text, (c) => c.primaryKey().notNull().references('users.id').onDelete('cascade'))
        .addColumn('secret', text, (c) => c.notNull())
        .addColumn('confirmed_at', text)
        .addColumn('last_step', 'integer', (c) => c.notNull())
        .addColumn('created_at', text, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('user_recovery_codes')
        .addColumn('user_id', text, (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('code_hash', text, (c) => c.notNull())
        .addPrimaryKeyConstraint('user_recovery_codes_pkey', ['user_id', 'code_hash'])
        .execute();
    },
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
    async down(db: Kysely<any>) {
      await db.schema.dropTable('user_recovery_codes').execute();
      await db.schema.dropTable('user_totp').execute();
      await db.schema.alterTable('tokens').dropColumn('kind').execute();
      await db.schema.alterTable('project_members').dropColumn('via').execute();
      await db.schema.dropIndex('users_source_subject_key').execute();
      await db.schema.alterTable('users').dropColumn('external_subject').execute();
      await db.schema.alterTable('users').dropColumn('source').execute();
    },
  };
}
