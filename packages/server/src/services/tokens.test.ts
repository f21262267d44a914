import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratorOf } from '../db/migrations.js';
import { storeTargets } from '../db/testing.js';
import { until, waitFor } from '@floe/testkit';
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

    it('lets a user create, list, show and revoke personal tokens of their own, and nothing of others', async () => {
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'self-a' })).status).toBe(201);
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'self-b' })).status).toBe(201);
      for (const name of ['self-ann', 'self-bob']) {
        expect((await injectJson(cp, 'POST', '/v1/users', { name })).status).toBe(201);
        const added = await injectJson(cp, 'POST', '/v1/projects/self-a/members', { user: name, role: 'viewer' });
        expect(added.status, JSON.stringify(added.body)).toBe(201);
      }
      const ann = (await injectJson(cp, 'POST', '/v1/tokens', { name: 'ann', user: 'self-ann' })).body;
      const bob = (await injectJson(cp, 'POST', '/v1/tokens', { name: 'bob', user: 'self-bob' })).body;
      const as = (secret: string, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
        injectJson(cp, method, url, body, secret);

      // Created for the user, whatever the body leaves out; within the user's projects.
      const mine = await as(ann.secret, 'POST', '/v1/tokens', { name: 'laptop', projects: ['self-a'] });
      expect(mine.status, JSON.stringify(mine.body)).toBe(201);
      expect(mine.body.token).toMatchObject({ user: 'self-ann', admin: false, projects: ['self-a'], scope: null });
      const bare = await as(ann.secret, 'POST', '/v1/tokens', { name: 'all-mine', user: 'self-ann' });
      expect(bare.status).toBe(201);
      expect(bare.body.token.user).toBe('self-ann');
      // A viewer's new token is still a viewer's.
      expect((await as(mine.body.secret, 'GET', '/v1/projects/self-a')).status).toBe(200);
      const patched = await as(mine.body.secret, 'PATCH', '/v1/projects/self-a', { description: 'x' });
      expect([patched.status, patched.body.error?.code]).toEqual([403, 'forbidden']);

      // Not a project the user is no member of (the same 404 as a project that does not exist).
      const other = await as(ann.secret, 'POST', '/v1/tokens', { name: 'x', projects: ['self-b'] });
      const none = await as(ann.secret, 'POST', '/v1/tokens', { name: 'x', projects: ['self-nowhere'] });
      expect([other.status, other.body.error.code]).toEqual([404, 'project_not_found']);
      expect(none.status).toBe(404);
      expect((await as(ann.secret, 'POST', '/v1/tokens', { name: 'x', admin: true })).body.error.code).toBe(
        'forbidden',
      );
      expect((await as(ann.secret, 'POST', '/v1/tokens', { name: 'x', user: 'self-bob' })).body.error.code).toBe(
        'forbidden',
      );

      // Their own tokens only; someone else's token is as missing as one that does not exist.
      const listed = await as(ann.secret, 'GET', '/v1/tokens?limit=1000');
      expect(listed.status).toBe(200);
      expect(new Set((listed.body.items as Array<{ user: string }>).map((x) => x.user))).toEqual(new Set(['self-ann']));
      expect((listed.body.items as unknown[]).length).toBe(3);
      const foreign = await as(ann.secret, 'GET', `/v1/tokens/${bob.token.id}`);
      const missing = await as(ann.secret, 'GET', '/v1/tokens/tok_01JB8X0Q3E6M2T9K4V7W5YB1C3');
      expect([foreign.status, foreign.body.error.code]).toEqual([404, 'token_not_found']);
      expect(missing.status).toBe(404);
      expect((await as(ann.secret, 'DELETE', `/v1/tokens/${bob.token.id}`)).status).toBe(404);
      expect((await as(bob.secret, 'GET', '/v1/projects')).status).toBe(200);
      expect((await as(ann.secret, 'GET', `/v1/tokens/${mine.body.token.id}`)).body.name).toBe('laptop');
      expect((await as(ann.secret, 'DELETE', `/v1/tokens/${mine.body.token.id}`)).status).toBe(204);
      expect((await as(mine.body.secret, 'GET', '/v1/projects')).status).toBe(401);
      // The admin sees them all.
      const all = await injectJson(cp, 'GET', '/v1/tokens?limit=1000');
      expect((all.body.items as Array<{ id: string }>).some((x) => x.id === bob.token.id)).toBe(true);

      // Project tokens (of nobody) stay the admin's to manage.
      const project = (await injectJson(cp, 'POST', '/v1/tokens', { name: 'p', projects: ['self-a'] })).body;
      for (const [method, url, body] of [
        ['GET', '/v1/tokens', undefined],
        ['POST', '/v1/tokens', { name: 'y', projects: ['self-a'] }],
        ['GET', `/v1/tokens/${project.token.id}`, undefined],
      ] as const) {
        const res = await as(project.secret, method, url, body);
        expect([res.status, res.body.error.code]).toEqual([403, 'forbidden']);
      }
    });

    it('lets an owner issue, list, show and revoke project tokens of the projects it owns, and no others', async () => {
      for (const name of ['own-a', 'own-b', 'own-c'])
        expect((await injectJson(cp, 'POST', '/v1/projects', { name })).status).toBe(201);
      const roles: Array<[string, string, string]> = [
        ['own-olga', 'own-a', 'owner'],
        ['own-olga', 'own-b', 'owner'],
        ['own-olga', 'own-c', 'member'],
        ['own-mia', 'own-a', 'member'],
        ['own-vic', 'own-a', 'viewer'],
        // A second owner, so that the first may leave.
        ['own-oz', 'own-a', 'owner'],
      ];
      for (const name of ['own-olga', 'own-mia', 'own-vic', 'own-oz'])
        expect((await injectJson(cp, 'POST', '/v1/users', { name })).status).toBe(201);
      for (const [user, project, role] of roles)
        expect((await injectJson(cp, 'POST', `/v1/projects/${project}/members`, { user, role })).status).toBe(201);
      const tokenOf = async (user: string) =>
        (await injectJson(cp, 'POST', '/v1/tokens', { name: user, user })).body as {
          token: { id: string };
          secret: string;
        };
      const [olga, mia, vic] = [await tokenOf('own-olga'), await tokenOf('own-mia'), await tokenOf('own-vic')];
      const as = (secret: string, method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) =>
        injectJson(cp, method, url, body, secret);
      const refused = async (secret: string, body: object, status: number, code: string) => {
        const res = await as(secret, 'POST', '/v1/tokens', { name: 'nope', project_token: true, ...body });
        expect([res.status, res.body.error?.code], JSON.stringify(res.body)).toEqual([status, code]);
      };

      // A token of nobody, granted the project, with a scope and an expiry if asked.
      const ci = await as(olga.secret, 'POST', '/v1/tokens', {
        name: 'ci',
        project_token: true,
        projects: ['own-a'],
        scope: { kinds: ['instance'], verbs: ['read', 'power'] },
        expires_in_days: 30,
      });
      expect(ci.status, JSON.stringify(ci.body)).toBe(201);
      expect(ci.body.token).toMatchObject({ user: null, admin: false, projects: ['own-a'], state: 'active' });
      expect(ci.body.token.scope).toEqual({ kinds: ['instance'], verbs: ['read', 'power'] });
      expect(ci.body.token.expires_at).not.toBeNull();
      const both = await as(olga.secret, 'POST', '/v1/tokens', {
        name: 'both',
        project_token: true,
        projects: ['own-a', 'own-b'],
      });
      expect(both.status).toBe(201);
      // The audit log names the owner as the requestor.
      // (Recorded once the answer is sent.)
      const audit = await until('the audit record of the creation', async () => {
        const res = await injectJson(cp, 'GET', `/v1/audit?action=token.create&resource=${ci.body.token.id}`);
        return (res.body.items as unknown[]).length > 0 ? res.body.items : null;
      });
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({ outcome: 'ok', token_id: olga.token.id, user_name: 'own-olga' });

      // Refused: a project it only is a member of (alone or with one it owns), one it cannot see (as one
      // that does not exist), from members and viewers, admin tokens, tokens for a user.
      await refused(olga.secret, { projects: ['own-c'] }, 403, 'forbidden');
      await refused(olga.secret, { projects: ['own-a', 'own-c'] }, 403, 'forbidden');
      await refused(olga.secret, { projects: ['self-b'] }, 404, 'project_not_found');
      await refused(olga.secret, { projects: ['own-nowhere'] }, 404, 'project_not_found');
      await refused(mia.secret, { projects: ['own-a'] }, 403, 'forbidden');
      await refused(vic.secret, { projects: ['own-a'] }, 403, 'forbidden');
      await refused(olga.secret, { projects: ['own-a'], admin: true }, 400, 'validation_failed');
      await refused(olga.secret, { projects: ['own-a'], user: 'own-olga' }, 400, 'validation_failed');
      await refused(olga.secret, {}, 400, 'validation_failed');
      await refused(ci.body.secret, { projects: ['own-a'] }, 403, 'forbidden');
      // Without `project_token`, an owner's token with projects stays a personal token of its own.
      const personal = await as(olga.secret, 'POST', '/v1/tokens', { name: 'laptop', projects: ['own-a'] });
      expect(personal.body.token).toMatchObject({ user: 'own-olga', projects: ['own-a'] });
      // Nothing of the refused ones was written.
      expect(await cp.store.db.selectFrom('tokens').select('id').where('name', '=', 'nope').execute()).toEqual([]);

      // Project tokens granted another project (even one the owner is a member of) stay hidden.
      const admins = await injectJson(cp, 'POST', '/v1/tokens', { name: 'mixed', projects: ['own-a', 'own-c'] });
      const onlyB = await injectJson(cp, 'POST', '/v1/tokens', { name: 'only-b', projects: ['own-b'] });
      const mine = async (url: string) =>
        ((await as(olga.secret, 'GET', url)).body.items as Array<{ id: string }>).map((x) => x.id).sort();
      const expected = [ci.body.token.id, both.body.token.id, onlyB.body.token.id, olga.token.id];
      expect(await mine('/v1/tokens?limit=1000')).toEqual([...expected, personal.body.token.id].sort());
      expect(await mine('/v1/tokens?project=own-a')).toEqual(
        [ci.body.token.id, both.body.token.id, personal.body.token.id].sort(),
      );
      expect(await mine('/v1/tokens?project=own-c')).toEqual([]);
      expect(await mine('/v1/tokens?project=own-nowhere')).toEqual([]);
      expect((await as(olga.secret, 'GET', `/v1/tokens/${onlyB.body.token.id}`)).body.name).toBe('only-b');
      for (const id of [admins.body.token.id, mia.token.id]) {
        const shown = await as(olga.secret, 'GET', `/v1/tokens/${id}`);
        expect([shown.status, shown.body.error?.code]).toEqual([404, 'token_not_found']);
        expect((await as(olga.secret, 'DELETE', `/v1/tokens/${id}`)).status).toBe(404);
      }
      // Members and viewers see none of the project's tokens.
      for (const who of [mia, vic]) {
        const listed = await as(who.secret, 'GET', '/v1/tokens?limit=1000');
        expect((listed.body.items as Array<{ id: string }>).map((x) => x.id)).toEqual([who.token.id]);
        expect((await as(who.secret, 'GET', `/v1/tokens/${ci.body.token.id}`)).status).toBe(404);
        expect((await as(who.secret, 'DELETE', `/v1/tokens/${ci.body.token.id}`)).status).toBe(404);
      }

      // The token is the project's: it keeps working when its owner leaves, and the owner no longer sees it.
      expect((await as(ci.body.secret, 'GET', '/v1/instances?project=own-a')).status).toBe(200);
      expect((await injectJson(cp, 'DELETE', '/v1/projects/own-a/members/own-olga')).status).toBe(204);
      expect((await as(ci.body.secret, 'GET', '/v1/instances?project=own-a')).status).toBe(200);
      // (The change reaches the cache of verified tokens through an event.)
      await waitFor('the owner to lose sight of the token', async () => {
        return (await as(olga.secret, 'GET', `/v1/tokens/${ci.body.token.id}`)).status === 404;
      });
      expect((await as(olga.secret, 'DELETE', `/v1/tokens/${both.body.token.id}`)).status).toBe(404);
      // Owning it again, the owner revokes it, and it stops at once.
      expect(
        (await injectJson(cp, 'POST', '/v1/projects/own-a/members', { user: 'own-olga', role: 'owner' })).status,
      ).toBe(201);
      await waitFor('the owner to see the token again', async () => {
        return (await as(olga.secret, 'GET', `/v1/tokens/${ci.body.token.id}`)).status === 200;
      });
      expect((await as(olga.secret, 'DELETE', `/v1/tokens/${ci.body.token.id}`)).status).toBe(204);
      expect((await as(ci.body.secret, 'GET', '/v1/instances?project=own-a')).status).toBe(401);
      expect((await as(olga.secret, 'GET', `/v1/tokens/${ci.body.token.id}`)).body.state).toBe('revoked');
      expect(await mine('/v1/tokens?project=own-a')).not.toContain(ci.body.token.id);
    });

    it('resolves a scope’s resources to ids of the token’s one project, in the same request', async () => {
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'scope-a' })).status).toBe(201);
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'scope-b' })).status).toBe(201);
      const image = await injectJson(cp, 'POST', '/v1/images', { name: 'disk', project: 'scope-a' });
      expect(image.status).toBe(201);
      const create = (body: object) => injectJson(cp, 'POST', '/v1/tokens', { name: 'scoped', ...body });

      const byName = await create({ projects: ['scope-a'], scope: { kinds: ['image'], resources: ['disk'] } });
      expect(byName.status, JSON.stringify(byName.body)).toBe(201);
      expect(byName.body.token.scope).toEqual({ kinds: ['image'], resources: [image.body.id] });
      const byId = await create({ projects: ['scope-a'], scope: { resources: [image.body.id], verbs: ['read'] } });
      expect(byId.body.token.scope).toEqual({ resources: [image.body.id], verbs: ['read'] });
      const row = await cp.store.db
        .selectFrom('tokens')
        .select('scope')
        .where('id', '=', byId.body.token.id)
        .executeTakeFirstOrThrow();
      expect(JSON.parse(row.scope!)).toEqual({ resources: [image.body.id], verbs: ['read'] });
      const shown = await injectJson(cp, 'GET', `/v1/tokens/${byId.body.token.id}`);
      expect(shown.body.scope).toEqual({ resources: [image.body.id], verbs: ['read'] });
      // Kinds and verbs alone need no project of their own.
      const wide = await create({ admin: true, scope: { kinds: ['instance'], verbs: ['read', 'power'] } });
      expect(wide.status).toBe(201);

      const refused = async (body: object, status: number, code: string) => {
        const res = await create(body);
        expect([res.status, res.body.error?.code], JSON.stringify(res.body)).toEqual([status, code]);
      };
      await refused(
        { projects: ['scope-b'], scope: { kinds: ['image'], resources: ['disk'] } },
        404,
        'image_not_found',
      );
      await refused(
        { projects: ['scope-a'], scope: { kinds: ['image'], resources: ['nope'] } },
        404,
        'image_not_found',
      );
      await refused({ projects: ['scope-a'], scope: { resources: ['disk'] } }, 400, 'validation_failed');
      await refused({ scope: { kinds: ['image'], resources: ['disk'] }, admin: true }, 400, 'validation_failed');
      await refused(
        { projects: ['scope-a', 'scope-b'], scope: { kinds: ['image'], resources: ['disk'] } },
        400,
        'validation_failed',
      );
      await refused({ projects: ['scope-a'], scope: { verbs: ['write'] } }, 400, 'validation_failed');
      await refused(
        { projects: ['scope-a'], scope: { kinds: ['instance'], resources: [image.body.id] } },
        400,
        'validation_failed',
      );
      // Nothing of a refused token was written.
      const names = await cp.store.db.selectFrom('tokens').select('id').where('name', '=', 'scoped').execute();
      expect(names).toHaveLength(3);
    });

    it('refuses a token whose stored scope is not one, rather than taking it as unlimited', async () => {
      const made = (await injectJson(cp, 'POST', '/v1/tokens', { name: 'broken', admin: true })).body;
      const fine = (await injectJson(cp, 'POST', '/v1/tokens', { name: 'fine', admin: true })).body;
      // Changed before either is first used, so that no verified principal is cached.
      await cp.store.db
        .updateTable('tokens')
        .set({ scope: '{"verbs":["everything"]}' })
        .where('id', '=', made.token.id)
        .execute();
      await cp.store.db.updateTable('tokens').set({ scope: '{}' }).where('id', '=', fine.token.id).execute();
      expect((await injectJson(cp, 'GET', '/v1/projects', undefined, fine.secret)).status).toBe(200);
      expect((await injectJson(cp, 'GET', '/v1/projects', undefined, made.secret)).status).toBe(401);
    });

    it('converts grants by name into grants by id when migrating, dropping names no project holds', async () => {
      const store = await t.open({ migrate: false });
      try {
        const migrator = migratorOf(store.db, store.dialect);
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
