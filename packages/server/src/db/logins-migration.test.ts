import { describe, expect, it } from 'vitest';
import { migratorOf } from './migrations.js';
import { storeTargets } from './testing.js';

const T0 = '2025-01-01T00:00:00.000Z';

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`migration 0010_logins on ${t.name}`, () => {
    it('goes down and up again keeping users, memberships and tokens (sessions become plain tokens)', async () => {
      const store = await t.open();
      try {
        const migrator = migratorOf(store.db, store.dialect);
        await store.db
          .insertInto('users')
          .values({
            id: 'usr_x',
            name: 'xena',
            display_name: '',
            email: null,
            disabled: 0,
            password_hash: null,
            operator: 0,
            created_at: T0,
            updated_at: T0,
            source: 'corp',
            external_subject: 'xena',
          })
          .execute();
        // The same subject of the same authenticator cannot be linked twice.
        await expect(
          store.db
            .insertInto('users')
            .values({
              id: 'usr_y',
              name: 'xena2',
              display_name: '',
              email: null,
              disabled: 0,
              password_hash: null,
              operator: 0,
              created_at: T0,
              updated_at: T0,
              source: 'corp',
              external_subject: 'xena',
            })
            .execute(),
        ).rejects.toThrow();
        await store.db
          .insertInto('tokens')
          .values({
            id: 'tok_s',
            name: 'login',
            secret_hash: 'h',
            admin: 0,
            created_at: T0,
            user_id: 'usr_x',
            kind: 'session',
          })
          .execute();
        await store.db
          .insertInto('user_totp')
          .values({ user_id: 'usr_x', secret: 'S', confirmed_at: T0, last_step: 5, created_at: T0 })
          .execute();
        expect((await migrator.migrateTo('0008_audit')).error).toBeUndefined();
        expect((await store.db.selectFrom('tokens').select('id').where('id', '=', 'tok_s').execute()).length).toBe(1);
        expect((await migrator.migrateToLatest()).error).toBeUndefined();
        const user = await store.db.selectFrom('users').selectAll().where('id', '=', 'usr_x').executeTakeFirstOrThrow();
        expect([user.source, user.external_subject]).toEqual([null, null]);
        const token = await store.db
          .selectFrom('tokens')
          .selectAll()
          .where('id', '=', 'tok_s')
          .executeTakeFirstOrThrow();
        expect(token.kind).toBeNull();
        expect(await store.db.selectFrom('user_totp').selectAll().execute()).toEqual([]);
      } finally {
        await store.close();
      }
    });
  });
}
