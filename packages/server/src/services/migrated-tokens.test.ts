import type { AuditRecord } from '@floe/api';
import { describe, expect, it } from 'vitest';
import { migratorOf } from '../db/migrations.js';
import { storeTargets } from '../db/testing.js';
import { injectJson, startTestControlPlane } from '../testing.js';
import { hashSecret, newSecret } from './tokens.js';

// Tokens made before users existed (the schema before migration 0007) still authenticate once the
// database is migrated to the latest schema and a control plane starts on it: the admin token as the
// operator user the migration made, a project token with its grants and nothing more.

const T0 = '2025-01-02T03:04:05.678Z';

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`tokens from before users, on ${t.name}`, () => {
    it('keep working after migrating to the latest schema: the admin token as the operator admin', async () => {
      const store = await t.open({ migrate: false });
      const migrator = migratorOf(store.db, store.dialect);
      expect((await migrator.migrateTo('0006_idempotency_leases')).error).toBeUndefined();
      const old = store.db as any;
      const project = (id: string, name: string) => ({
        id,
        name,
        labels: '{}',
        metadata: '{}',
        revision: 1,
        created_at: T0,
        updated_at: T0,
        description: '',
      });
      await old
        .insertInto('projects')
        .values([project('prj_old_a', 'old-a'), project('prj_old_b', 'old-b')])
        .execute();
      const adminSecret = newSecret();
      const projectSecret = newSecret();
      const token = (id: string, secret: string, admin: number) => ({
        id,
        name: id,
        secret_hash: hashSecret(secret),
        admin,
        created_at: T0,
        expires_at: null,
        last_used_at: null,
        revoked_at: null,
      });
      await old
        .insertInto('tokens')
        .values([token('tok_old_admin', adminSecret, 1), token('tok_old_project', projectSecret, 0)])
        .execute();
      await old.insertInto('token_projects').values({ token_id: 'tok_old_project', project_id: 'prj_old_a' }).execute();
      expect((await migrator.migrateToLatest()).error).toBeUndefined();

      const cp = await startTestControlPlane(store, { FLOE_LOG_LEVEL: 'silent' });
      try {
        // The old admin token is still the admin: no second one was made at start.
        expect(cp.adminToken).toBe('');
        const get = (url: string, secret: string) => injectJson(cp, 'GET', url, undefined, secret);
        const me = await get('/v1/users/me', adminSecret);
        expect([me.status, me.body.name, me.body.operator]).toEqual([200, 'admin', true]);
        const created = await injectJson(cp, 'POST', '/v1/projects', { name: 'after-migration' }, adminSecret);
        expect(created.status, JSON.stringify(created.body)).toBe(201);
        expect((await get('/v1/projects/old-b', adminSecret)).status).toBe(200);

        // The project token reaches its project, and another stays as hidden as a missing one.
        expect((await get('/v1/projects/old-a', projectSecret)).status).toBe(200);
        expect((await get('/v1/instances?project=old-a', projectSecret)).status).toBe(200);
        const foreign = await get('/v1/projects/old-b', projectSecret);
        expect([foreign.status, foreign.body.error.code]).toEqual([404, 'project_not_found']);
        const users = await get('/v1/users', projectSecret);
        expect([users.status, users.body.error.code]).toEqual([403, 'forbidden']);
        // Their use is recorded on the token, as for any token.
        const shown = await get('/v1/tokens/tok_old_project', adminSecret);
        expect([shown.status, shown.body.state, typeof shown.body.last_used_at]).toEqual([200, 'active', 'string']);

        // The audit log names the operator user as the old admin token's requestor.
        await cp.app.services.audit.flush();
        const audit = await get('/v1/audit?action=project.create&token=tok_old_admin', adminSecret);
        const records = audit.body.items as AuditRecord[];
        expect(records).toHaveLength(1);
        expect(records[0]).toMatchObject({ user_name: 'admin', outcome: 'ok', status: 201 });
      } finally {
        await cp.close();
      }
    });
  });
}
