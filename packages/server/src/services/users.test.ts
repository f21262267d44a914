import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../db/index.js';
import { migratorOf } from '../db/migrations.js';
import { storeTargets } from '../db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';

// Users, their roles in projects and their personal tokens: a personal token has at most its user's
// rights, read at the time of the request, so a removed membership or a disabled user stops it at once
// (the token cache included); a viewer reads but does not write; a project keeps its last owner.

const T0 = '2025-01-02T03:04:05.678Z';

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`users and members on ${t.name}`, () => {
    let cp: TestControlPlane;
    let seq = 0;
    const unique = (p: string) => `${p}-${(seq++).toString(36)}`;

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' });
    });
    afterAll(async () => {
      await cp?.close();
    });

    const ok = async (method: 'POST' | 'PATCH' | 'DELETE' | 'GET', url: string, body?: unknown, token?: string) => {
      const res = await injectJson(cp, method, url, body, token);
      if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };
    /** A project, a user with `role` in it, and a personal token of the user. */
    async function member(role: 'owner' | 'member' | 'viewer') {
      const project = unique('p');
      const user = unique('u');
      await ok('POST', '/v1/projects', { name: project });
      await ok('POST', '/v1/users', { name: user });
      await ok('POST', `/v1/projects/${project}/members`, { user, role });
      const token = (await ok('POST', '/v1/tokens', { name: unique('t'), user })).secret as string;
      return { project, user, token };
    }

    it('lets operators create, list, show, change and delete users; names are unique and validated', async () => {
      const created = await injectJson(cp, 'POST', '/v1/users', {
        name: 'carol',
        display_name: 'Carol C.',
        email: 'carol@example.org',
        password: 'correct horse battery',
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(created.body).toMatchObject({ name: 'carol', operator: false, disabled: false, has_password: true });
      expect(created.body).not.toHaveProperty('password_hash');
      const row = await cp.store.db
        .selectFrom('users')
        .select('password_hash')
        .where('id', '=', created.body.id)
        .executeTakeFirstOrThrow();
      expect(row.password_hash).toMatch(/^\$argon2id\$/);

      expect((await injectJson(cp, 'POST', '/v1/users', { name: 'carol' })).body.error.code).toBe('name_conflict');
      expect((await injectJson(cp, 'POST', '/v1/users', { name: 'Bad_Name' })).body.error.code).toBe(
        'validation_failed',
      );
      const listed = await ok('GET', '/v1/users');
      expect(listed.items.map((u: { name: string }) => u.name)).toEqual(expect.arrayContaining(['admin', 'carol']));
      expect((await ok('GET', `/v1/users/${created.body.id}`)).name).toBe('carol');
      const patched = await ok('PATCH', '/v1/users/carol', { email: null, operator: true });
      expect(patched).toMatchObject({ email: null, operator: true, display_name: 'Carol C.' });
      expect((await injectJson(cp, 'DELETE', '/v1/users/carol')).status).toBe(204);
      const gone = await injectJson(cp, 'GET', '/v1/users/carol');
      expect([gone.status, gone.body.error.code]).toEqual([404, 'user_not_found']);
    });

    it('gives the first admin token to the operator user the migration made', async () => {
      const me = await ok('GET', '/v1/users/me');
      expect(me).toMatchObject({ name: 'admin', operator: true, disabled: false });
      // Nor does it lock itself out.
      for (const [method, body] of [
        ['PATCH', { disabled: true }],
        ['PATCH', { operator: false }],
        ['DELETE', undefined],
      ] as const) {
        const refused = await injectJson(cp, method, '/v1/users/admin', body);
        expect([refused.status, refused.body.error.code]).toEqual([403, 'forbidden']);
      }
      expect((await ok('GET', '/v1/users/me')).disabled).toBe(false);
      const tokens = await ok('GET', '/v1/tokens');
      expect(tokens.items.find((x: { admin: boolean }) => x.admin).user).toBe('admin');
    });

    it('lets a viewer read its project but not write, and hides other projects as missing', async () => {
      const { project, token } = await member('viewer');
      const other = unique('p');
      await ok('POST', '/v1/projects', { name: other });
      const image = await ok('POST', '/v1/images', { name: 'img', project });
      expect((await injectJson(cp, 'GET', `/v1/projects/${project}`, undefined, token)).status).toBe(200);
      expect((await injectJson(cp, 'GET', `/v1/images/${image.id}`, undefined, token)).status).toBe(200);
      const write = await injectJson(cp, 'POST', '/v1/images', { name: 'x', project }, token);
      expect([write.status, write.body.error.code]).toEqual([403, 'forbidden']);
      const del = await injectJson(cp, 'DELETE', `/v1/images/${image.id}`, undefined, token);
      expect([del.status, del.body.error.code]).toEqual([403, 'forbidden']);
      const foreign = await injectJson(cp, 'GET', `/v1/projects/${other}`, undefined, token);
      expect([foreign.status, foreign.body.error.code]).toEqual([404, 'project_not_found']);
      const foreignWrite = await injectJson(cp, 'POST', '/v1/images', { name: 'x', project: other }, token);
      expect([foreignWrite.status, foreignWrite.body.error.code]).toEqual([404, 'project_not_found']);
      // Nor the global resources of operators.
      expect((await injectJson(cp, 'GET', '/v1/users', undefined, token)).status).toBe(403);
    });

    it('lets a member write in its project, and an owner manage its members', async () => {
      const { project, token } = await member('member');
      expect((await injectJson(cp, 'POST', '/v1/images', { name: 'x', project }, token)).status).toBe(201);
      const add = await injectJson(
        cp,
        'POST',
        `/v1/projects/${project}/members`,
        { user: 'admin', role: 'viewer' },
        token,
      );
      expect([add.status, add.body.error.code]).toEqual([403, 'forbidden']);
      expect((await ok('GET', `/v1/projects/${project}/members`, undefined, token)).items).toHaveLength(1);

      const owner = await member('owner');
      const other = unique('u');
      await ok('POST', '/v1/users', { name: other });
      const added = await injectJson(
        cp,
        'POST',
        `/v1/projects/${owner.project}/members`,
        { user: other, role: 'viewer' },
        owner.token,
      );
      expect(added.status, JSON.stringify(added.body)).toBe(201);
      const again = await injectJson(
        cp,
        'POST',
        `/v1/projects/${owner.project}/members`,
        { user: other, role: 'member' },
        owner.token,
      );
      expect(again.body.error.code).toBe('name_conflict');
      expect(
        (await ok('PATCH', `/v1/projects/${owner.project}/members/${other}`, { role: 'member' }, owner.token)).role,
      ).toBe('member');
      expect(
        (await injectJson(cp, 'DELETE', `/v1/projects/${owner.project}/members/${other}`, undefined, owner.token))
          .status,
      ).toBe(204);
      const missing = await injectJson(
        cp,
        'DELETE',
        `/v1/projects/${owner.project}/members/${other}`,
        undefined,
        owner.token,
      );
      expect([missing.status, missing.body.error.code]).toEqual([404, 'member_not_found']);
      // An owner of one project manages no other.
      const foreign = await injectJson(cp, 'GET', `/v1/projects/${project}/members`, undefined, owner.token);
      expect(foreign.status).toBe(404);
    });

    it('keeps the last owner of a project', async () => {
      const { project, user, token } = await member('owner');
      const demote = await injectJson(
        cp,
        'PATCH',
        `/v1/projects/${project}/members/${user}`,
        { role: 'member' },
        token,
      );
      expect([demote.status, demote.body.error.code]).toEqual([409, 'last_owner']);
      const remove = await injectJson(cp, 'DELETE', `/v1/projects/${project}/members/${user}`);
      expect([remove.status, remove.body.error.code]).toEqual([409, 'last_owner']);
      const second = unique('u');
      await ok('POST', '/v1/users', { name: second });
      await ok('POST', `/v1/projects/${project}/members`, { user: second, role: 'owner' });
      expect((await injectJson(cp, 'DELETE', `/v1/projects/${project}/members/${user}`)).status).toBe(204);
    });

    it('stops a removed member’s token at once, though it was just used and cached', async () => {
      const { project, user, token } = await member('member');
      expect((await injectJson(cp, 'GET', `/v1/projects/${project}`, undefined, token)).status).toBe(200);
      await ok('DELETE', `/v1/projects/${project}/members/${user}`);
      expect((await injectJson(cp, 'GET', `/v1/projects/${project}`, undefined, token)).status).toBe(404);
    });

    it('lowers a member to viewer at once', async () => {
      const { project, user, token } = await member('member');
      expect((await injectJson(cp, 'POST', '/v1/images', { name: 'a', project }, token)).status).toBe(201);
      await ok('PATCH', `/v1/projects/${project}/members/${user}`, { role: 'viewer' });
      expect((await injectJson(cp, 'POST', '/v1/images', { name: 'b', project }, token)).status).toBe(403);
    });

    it('refuses every token of a disabled or deleted user at once', async () => {
      const { project, user, token } = await member('member');
      expect((await injectJson(cp, 'GET', `/v1/projects/${project}`, undefined, token)).status).toBe(200);
      await ok('PATCH', `/v1/users/${user}`, { disabled: true });
      const refused = await injectJson(cp, 'GET', `/v1/projects/${project}`, undefined, token);
      expect([refused.status, refused.body.error.code]).toEqual([401, 'unauthenticated']);
      await ok('PATCH', `/v1/users/${user}`, { disabled: false });
      expect((await injectJson(cp, 'GET', `/v1/projects/${project}`, undefined, token)).status).toBe(200);
      await ok('DELETE', `/v1/users/${user}`);
      expect((await injectJson(cp, 'GET', `/v1/projects/${project}`, undefined, token)).status).toBe(401);
    });

    it('gives a personal admin token operator rights only while its user is an operator', async () => {
      const user = unique('u');
      await ok('POST', '/v1/users', { name: user, operator: true });
      const token = (await ok('POST', '/v1/tokens', { name: unique('t'), user, admin: true })).secret as string;
      expect((await injectJson(cp, 'GET', '/v1/hosts', undefined, token)).status).toBe(200);
      await ok('PATCH', `/v1/users/${user}`, { operator: false });
      expect((await injectJson(cp, 'GET', '/v1/hosts', undefined, token)).status).toBe(403);
    });

    it('limits a personal token with grants to those of its user’s projects', async () => {
      const a = await member('member');
      const b = unique('p');
      await ok('POST', '/v1/projects', { name: b });
      await ok('POST', `/v1/projects/${b}/members`, { user: a.user, role: 'member' });
      const token = (await ok('POST', '/v1/tokens', { name: unique('t'), user: a.user, projects: [a.project] }))
        .secret as string;
      expect((await injectJson(cp, 'GET', `/v1/projects/${a.project}`, undefined, token)).status).toBe(200);
      expect((await injectJson(cp, 'GET', `/v1/projects/${b}`, undefined, token)).status).toBe(404);
    });

    it('lets a user read itself and change its password with the old one', async () => {
      const user = unique('u');
      await ok('POST', '/v1/users', { name: user, password: 'first password 1' });
      const token = (await ok('POST', '/v1/tokens', { name: unique('t'), user })).secret as string;
      expect((await ok('GET', '/v1/users/me', undefined, token)).name).toBe(user);
      const wrong = await injectJson(
        cp,
        'POST',
        '/v1/users/me/password',
        { old_password: 'nope', new_password: 'second password 2' },
        token,
      );
      expect([wrong.status, wrong.body.error.code]).toEqual([403, 'forbidden']);
      const short = await injectJson(
        cp,
        'POST',
        '/v1/users/me/password',
        { old_password: 'first password 1', new_password: 'short' },
        token,
      );
      expect(short.body.error.code).toBe('validation_failed');
      const changed = await injectJson(
        cp,
        'POST',
        '/v1/users/me/password',
        { old_password: 'first password 1', new_password: 'second password 2' },
        token,
      );
      expect(changed.status).toBe(204);
      const { verifyPassword } = await import('../auth/passwords.js');
      const row = await cp.store.db
        .selectFrom('users')
        .select('password_hash')
        .where('name', '=', user)
        .executeTakeFirstOrThrow();
      expect(await verifyPassword(row.password_hash!, 'second password 2')).toBe(true);
      // A project token belongs to nobody.
      const projectToken = (await ok('POST', '/v1/tokens', { name: unique('t'), projects: ['default'] }))
        .secret as string;
      expect((await injectJson(cp, 'GET', '/v1/users/me', undefined, projectToken)).body.error.code).toBe(
        'user_not_found',
      );
    });

    it('migrates: the oldest active admin token becomes the operator admin’s, project tokens stay as they were', async () => {
      const store = await t.open({ migrate: false });
      try {
        const migrator = migratorOf(store.db, store.dialect);
        expect((await migrator.migrateTo('0006_idempotency_leases')).error).toBeUndefined();
        const old = store.db as any;
        const token = (id: string, admin: number, revoked: string | null, created = T0) => ({
          id,
          name: id,
          secret_hash: id,
          admin,
          created_at: created,
          expires_at: null,
          last_used_at: null,
          revoked_at: revoked,
        });
        await old
          .insertInto('tokens')
          .values([
            token('tok_revoked', 1, T0, '2024-01-01T00:00:00.000Z'),
            token('tok_first', 1, null),
            token('tok_second', 1, null, '2026-01-01T00:00:00.000Z'),
            token('tok_project', 0, null),
          ])
          .execute();
        expect((await migrator.migrateToLatest()).error).toBeUndefined();
        const users = await store.db.selectFrom('users').selectAll().execute();
        expect(users).toHaveLength(1);
        expect(users[0]).toMatchObject({ name: 'admin', operator: 1, disabled: 0, password_hash: null });
        const owners = await store.db.selectFrom('tokens').select(['id', 'user_id']).orderBy('id').execute();
        expect(owners).toEqual([
          { id: 'tok_first', user_id: users[0]!.id },
          { id: 'tok_project', user_id: null },
          { id: 'tok_revoked', user_id: null },
          { id: 'tok_second', user_id: null },
        ]);
        // And back: the tokens stay, their owner goes.
        expect((await migrator.migrateTo('0006_idempotency_leases')).error).toBeUndefined();
        expect((await old.selectFrom('tokens').select('id').execute()).length).toBe(4);
        expect((await migrator.migrateToLatest()).error).toBeUndefined();
      } finally {
        await store.close();
      }
    });
  });
}

const pgTarget = storeTargets().find((t) => t.name === 'postgres')!;
describe.skipIf(pgTarget.skip)('personal tokens across two control planes on PostgreSQL', () => {
  let cp1: TestControlPlane;
  let cp2: TestControlPlane;

  beforeAll(async () => {
    const store1 = await pgTarget.open();
    cp1 = await startTestControlPlane(store1, { FLOE_LOG_LEVEL: 'silent' });
    cp2 = await startTestControlPlane(
      await openStore({ url: store1.options.url! }),
      { FLOE_LOG_LEVEL: 'silent' },
      { ca: cp1.ca, pki: cp1.pki },
    );
  }, 30_000);
  afterAll(async () => {
    await cp2?.close(); // first: the test database is dropped with the first store
    await cp1?.close();
  });

  /** Milliseconds until `cp2` answers `status` to the token, polling; fails after 2 s (the token cache keeps 5 s). */
  async function until(token: string, url: string, status: number): Promise<number> {
    const start = Date.now();
    for (;;) {
      const res = await injectJson(cp2, 'GET', url, undefined, token);
      if (res.status === status) return Date.now() - start;
      if (Date.now() - start > 2_000) throw new Error(`still ${res.status} after 2 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('a membership removed or a user disabled on one control plane stops the token cached on the other', async () => {
    const admin = cp1.adminToken;
    const ok = async (method: 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) => {
      const res = await injectJson(cp1, method, url, body, admin);
      if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };
    await ok('POST', '/v1/projects', { name: 'far' });
    await ok('POST', '/v1/users', { name: 'remote' });
    await ok('POST', '/v1/projects/far/members', { user: 'remote', role: 'member' });
    const token = (await ok('POST', '/v1/tokens', { name: 'remote', user: 'remote' })).secret as string;
    expect((await injectJson(cp2, 'GET', '/v1/projects/far', undefined, token)).status).toBe(200);
    await ok('DELETE', '/v1/projects/far/members/remote');
    await until(token, '/v1/projects/far', 404);

    await ok('POST', '/v1/projects/far/members', { user: 'remote', role: 'member' });
    await until(token, '/v1/projects/far', 200);
    await ok('PATCH', '/v1/users/remote', { disabled: true });
    await until(token, '/v1/projects/far', 401);
  });
});
