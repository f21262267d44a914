import { sql, type Kysely, type Migration } from 'kysely';
import type { Dialect } from '../dialect.js';
import { newId } from '../../ids.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the schema of a past migration has no type of its own
type AnyDb = Kysely<any>;

/** The name of the operator user the migration creates; the first admin token becomes its own. */
export const FIRST_OPERATOR = 'admin';

/**
 * Users and their roles in projects. `users` holds people (an operator flag for the global resources,
 * an optional argon2id password hash, a disabled flag that stops all their tokens), `project_members`
 * one role per user and project (owner, member or viewer). A token may belong to a user
 * (`tokens.user_id`): such a token never has more rights than its user has at the time of a request.
 * Deleting a user deletes its tokens (they would otherwise become tokens of nobody, with their own
 * flags); deleting a project or a user deletes the memberships.
 *
 * Existing data: an operator user `admin` is created, and the oldest active admin token becomes its
 * own, so today's admin token keeps working as the operator's. Project tokens belong to nobody and
 * keep their grants unchanged.
 */
export function users(dialect: Dialect): Migration {
  const text = dialect === 'postgres' ? sql`text collate "C"` : sql`text`;
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('users')
        .addColumn('id', text, (c) => c.primaryKey().notNull())
        .addColumn('name', text, (c) => c.notNull())
        .addColumn('display_name', text, (c) => c.notNull())
        .addColumn('email', text)
        .addColumn('disabled', 'integer', (c) => c.notNull())
        .addColumn('password_hash', text)
        .addColumn('operator', 'integer', (c) => c.notNull())
        .addColumn('created_at', text, (c) => c.notNull())
        .addColumn('updated_at', text, (c) => c.notNull())
        .execute();
      await db.schema.createIndex('users_name_key').unique().on('users').column('name').execute();

      await db.schema
        .createTable('project_members')
        .addColumn('project_id', text, (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('user_id', text, (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('role', text, (c) => c.notNull())
        .addColumn('created_at', text, (c) => c.notNull())
        .addPrimaryKeyConstraint('project_members_pkey', ['project_id', 'user_id'])
        .execute();
      await db.schema.createIndex('project_members_user_id_idx').on('project_members').column('user_id').execute();

      await db.schema
        .alterTable('tokens')
        .addColumn('user_id', text, (c) => c.references('users.id').onDelete('cascade'))
        .execute();
      await db.schema.createIndex('tokens_user_id_idx').on('tokens').column('user_id').execute();

      const now = new Date().toISOString();
      const id = newId('user');
      await db
        .insertInto('users')
        .values({
          id,
          name: FIRST_OPERATOR,
          display_name: 'Operator',
          email: null,
          disabled: 0,
          password_hash: null,
          operator: 1,
          created_at: now,
          updated_at: now,
        })
        .execute();
      const first: { id: string } | undefined = await db
        .selectFrom('tokens')
        .select('id')
        .where('admin', '=', 1)
        .where('revoked_at', 'is', null)
        .orderBy('created_at')
        .orderBy('id')
        .limit(1)
        .executeTakeFirst();
      if (first) await db.updateTable('tokens').set({ user_id: id }).where('id', '=', first.id).execute();
    },

    async down(db: AnyDb) {
      await db.schema.dropIndex('tokens_user_id_idx').execute();
      await db.schema.alterTable('tokens').dropColumn('user_id').execute();
      await db.schema.dropTable('project_members').execute();
      await db.schema.dropTable('users').execute();
    },
  };
}
