import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Migrator } from 'kysely';
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE, migrationProvider } from '../db/migrations.js';
import { storeTargets } from '../db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';

// A token's projects are granted by project id: deleting a project takes its grants along, so a
// token limited to it never reaches a later project of the same name. A token says whether it is
// active, expired or revoked.

const T0 = '2025-01-02T03:04:05.678Z';

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`tokens on ${t.name}`, () => {
    let cp: TestControlPlane;
    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('does not carry over to a new project that takes a deleted project’s name', async () => {
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'recycle' })).status).toBe(201);
      const created = await injectJson(cp, 'POST', '/v1/tokens', { name: 'old', projects: ['recycle'] });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const old = created.body.secret as string;
      const oldId = created.body.token.id as string;
      expect(created.body.token.projects).toEqual(['recycle']);
      expect((await injectJson(cp, 'GET', '/v1/projects/recycle', undefined, old)).status).toBe(200);

      expect((await injectJson(cp, 'DELETE', '/v1/projects/recycle')).status).toBe(204);
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'recycle' })).status).toBe(201);
      const image = await injectJson(cp, 'POST', '/v1/images', { name: 'img', project: 'recycle' });
      expect(image.status, JSON.stringify(image.body)).toBe(201);
      const imageId = image.body.id as string;

      const project = await injectJson(cp, 'GET', '/v1/projects/recycle', undefined, old);
      expect(project.status).toBe(404);
      expect(project.body.error.code).toBe('project_not_found');
      const read = await injectJson(cp, 'GET', `/v1/images/${imageId}?project=recycle`, undefined, old);
      expect(read.status).toBe(404);
      const list = await injectJson(cp, 'GET', '/v1/images?project=recycle', undefined, old);
      expect(list.body.items ?? []).toEqual([]);
      const del = await injectJson(cp, 'DELETE', `/v1/images/${imageId}?project=recycle`, undefined, old);
      expect(del.status).toBe(404);
      expect((await injectJson(cp, 'GET', `/v1/images/${imageId}?project=recycle`)).status).toBe(200);

      // The token itself stays (it is the admin's to revoke) but holds no grant any more.
      const shown = await injectJson(cp, 'GET', `/v1/tokens/${oldId}`);
      expect(shown.body).toMatchObject({ id: oldId, projects: [], state: 'active' });
    });

    it('resolves a project name at creation and refuses names no project holds', async () => {
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'grant-a' })).status).toBe(201);
      const created = await injectJson(cp, 'POST', '/v1/tokens', { name: 'a', projects: ['grant-a', 'grant-a'] });
      expect(created.status).toBe(201);
      const rows = await cp.store.db
        .selectFrom('token_projects')
        .innerJoin('projects', 'projects.id', 'token_projects.project_id')
        .select(['projects.id', 'projects.name'])
        .where('token_id', '=', created.body.token.id)
        .execute();
      expect(rows).toHaveLength(1);
      expect(rows[0]!.name).toBe('grant-a');
      expect(rows[0]!.id).toMatch(/^prj_/);
      const missing = await injectJson(cp, 'POST', '/v1/tokens', { name: 'b', projects: ['grant-nowhere'] });
      expect(missing.status).toBe(404);
      expect(missing.body.error.code).toBe('project_not_found');
    });

    it('lists and shows an expired token as expired and a revoked one as revoked', async () => {
      const make = async (name: string) => (await injectJson(cp, 'POST', '/v1/tokens', { name, admin: true })).body;
      const live = await make('live');
      const lapsed = await make('lapsed');
      const gone = await make('gone');
      expect(live.token.state).toBe('active');
      await cp.store.db
        .updateTable('tokens')
        .set({ expires_at: '2020-01-01T00:00:00.000Z' })
        .where('id', '=', lapsed.token.id)
        .execute();
      expect((await injectJson(cp, 'DELETE', `/v1/tokens/${gone.token.id}`)).status).toBe(204);

      const list = await injectJson(cp, 'GET', '/v1/tokens?limit=1000');
      const byId = new Map((list.body.items as Array<{ id: string; state: string }>).map((x) => [x.id, x.state]));
      expect(byId.get(live.token.id)).toBe('active');
      expect(byId.get(lapsed.token.id)).toBe('expired');
      expect(byId.has(gone.token.id)).toBe(false);
      const shown = await injectJson(cp, 'GET', `/v1/tokens/${lapsed.token.id}`);
      expect(shown.body).toMatchObject({ state: 'expired', expires_at: '2020-01-01T00:00:00.000Z', revoked_at: null });
      const revoked = await injectJson(cp, 'GET', `/v1/tokens/${gone.token.id}`);
      expect(revoked.body).toMatchObject({ state: 'revoked' });
      expect(revoked.body.revoked_at).toEqual(expect.any(String));
      // What the list says is what authentication does.
      expect((await injectJson(cp, 'GET', '/v1/projects', undefined, lapsed.secret)).status).toBe(401);
      expect((await injectJson(cp, 'GET', '/v1/projects', undefined, live.secret)).status).toBe(200);
      const missing = await injectJson(cp, 'GET', '/v1/tokens/tok_01JB8X0Q3E6M2T9K4V7W5YB1C3');
      expect(missing.status).toBe(404);
      expect(missing.body.error.code).toBe('token_not_found');
    });

    it('converts grants by name into grants by id when migrating, dropping names no project holds', async () => {
      const store = await t.open({ migrate: false });
      try {
        const migrator = new Migrator({
          db: store.db,
          provider: migrationProvider(store.dialect),
          migrationTableName: MIGRATION_TABLE,
          migrationLockTableName: MIGRATION_LOCK_TABLE,
        });
        expect((await migrator.migrateTo('0004_host_allocations')).error).toBeUndefined();
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
          .values([project('prj_a', 'alpha'), project('prj_b', 'beta')])
          .execute();
        const token = (id: string, projects: string[]) => ({
          id,
          name: id,
          secret_hash: id,
          admin: 0,
          projects: JSON.stringify(projects),
          created_at: T0,
          expires_at: null,
          last_used_at: null,
          revoked_at: null,
        });
        await old
          .insertInto('tokens')
          .values([token('tok_1', ['alpha', 'beta']), token('tok_2', ['gone', 'beta']), token('tok_3', ['gone'])])
          .execute();
        const up = await migrator.migrateTo('0005_token_grant_ids');
        expect(up.error).toBeUndefined();
        expect(up.results?.map((r) => r.migrationName)).toEqual(['0005_token_grant_ids']);
        const grants = await store.db
          .selectFrom('token_projects')
          .select(['token_id', 'project_id'])
          .orderBy('token_id')
          .orderBy('project_id')
          .execute();
        expect(grants).toEqual([
          { token_id: 'tok_1', project_id: 'prj_a' },
          { token_id: 'tok_1', project_id: 'prj_b' },
          { token_id: 'tok_2', project_id: 'prj_b' },
        ]);
        const columns = (await store.db.introspection.getTables()).find((x) => x.name === 'tokens')!.columns;
        expect(columns.map((c) => c.name)).not.toContain('projects');
        // The foreign keys hold: the grant goes with its project, and no grant names a project that is not there.
        await store.db.deleteFrom('projects').where('id', '=', 'prj_b').execute();
        expect(await store.db.selectFrom('token_projects').selectAll().execute()).toEqual([
          { token_id: 'tok_1', project_id: 'prj_a' },
        ]);
        await expect(
          store.db.insertInto('token_projects').values({ token_id: 'tok_3', project_id: 'prj_b' }).execute(),
        ).rejects.toThrow();
        // Down again: the names come back from the grants that are left.
        expect((await migrator.migrateDown()).error).toBeUndefined();
        const back = await old.selectFrom('tokens').select(['id', 'projects']).orderBy('id').execute();
        expect(back).toEqual([
          { id: 'tok_1', projects: '["alpha"]' },
          { id: 'tok_2', projects: '[]' },
          { id: 'tok_3', projects: '[]' },
        ]);
      } finally {
        await store.close();
      }
    });
  });
}
