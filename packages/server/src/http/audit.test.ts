import type { AuditRecord } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { storeTargets } from '../db/testing.js';
import { maintain } from '../maintenance.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';
import { actionOf } from './audit.js';

describe('audit actions', () => {
  it('names what a route does', () => {
    expect(actionOf('POST', '/v1/instances')).toEqual({ action: 'instance.create', kind: 'instance' });
    expect(actionOf('DELETE', '/v1/tokens/:id')).toEqual({ action: 'token.revoke', kind: 'token' });
    expect(actionOf('DELETE', '/v1/instances/:id')).toEqual({ action: 'instance.delete', kind: 'instance' });
    expect(actionOf('PATCH', '/v1/machine-types/:id')).toEqual({ action: 'machine_type.update', kind: 'machine_type' });
    expect(actionOf('POST', '/v1/instances/:id/start')).toEqual({ action: 'instance.start', kind: 'instance' });
    expect(actionOf('POST', '/v1/instances/:id/nics')).toEqual({ action: 'nic.create', kind: 'nic' });
    expect(actionOf('DELETE', '/v1/instances/:id/nics/:nic')).toEqual({ action: 'nic.delete', kind: 'nic' });
    expect(actionOf('POST', '/v1/images/import')).toEqual({ action: 'image.import', kind: 'image' });
    expect(actionOf('PUT', '/v1/images/:id/file')).toEqual({ action: 'image.file', kind: 'image' });
    expect(actionOf('POST', undefined)).toEqual({ action: 'request.unrouted', kind: null });
  });
});

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`audit log on ${t.name}`, () => {
    let cp: TestControlPlane;
    let adminId: string;
    let scoped: { id: string; secret: string };

    const records = async (where: Partial<AuditRecord> = {}): Promise<AuditRecord[]> => {
      await cp.app.services.audit.flush();
      let q = cp.store.db.selectFrom('audit_log').selectAll().orderBy('id');
      for (const [k, v] of Object.entries(where)) q = q.where(k as keyof AuditRecord, '=', v as string);
      return (await q.execute()).map((r) => ({ ...r, status: r.status === null ? null : Number(r.status) }));
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' });
      adminId = (
        await cp.store.db.selectFrom('tokens').select('id').where('name', '=', 'admin').executeTakeFirstOrThrow()
      ).id;
      await injectJson(cp, 'POST', '/v1/projects', { name: 'au-scope' });
      const created = await injectJson(cp, 'POST', '/v1/tokens', { name: 'au-scoped', projects: ['au-scope'] });
      scoped = { id: created.body.token.id, secret: created.body.secret };
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
    });

    it('records a create with its requestor, resource and outcome', async () => {
      const res = await injectJson(cp, 'POST', '/v1/projects', { name: 'au-one' });
      expect(res.status).toBe(201);
      const [r, ...more] = await records({ resource_id: res.body.id });
      expect(more).toEqual([]);
      expect(r).toMatchObject({
        action: 'project.create',
        outcome: 'ok',
        status: 201,
        error_code: null,
        token_id: adminId,
        // The first admin token belongs to the operator user 'admin'.
        user_id: expect.stringMatching(/^usr_/),
        user_name: 'admin',
        authenticator: 'token',
        source_address: '127.0.0.1',
        method: 'POST',
        route: '/v1/projects',
        resource_kind: 'project',
        reason: null,
      });
      expect(r!.request_id).not.toBeNull();
    });

    it('records refused creates (400 and 403) with the error code', async () => {
      const bad = await injectJson(cp, 'POST', '/v1/networks', { name: 'Not A Name', project: 'au-scope' });
      expect(bad.status).toBe(400);
      const forbidden = await injectJson(cp, 'POST', '/v1/projects', { name: 'au-nope' }, scoped.secret);
      expect(forbidden.status).toBe(403);
      const refused = (await records({ outcome: 'error' })).filter((r) => r.action !== 'auth.failed');
      expect(refused.map((r) => [r.action, r.status, r.error_code, r.token_id, r.project])).toEqual([
        ['network.create', 400, 'validation_failed', adminId, 'au-scope'],
        ['project.create', 403, 'forbidden', scoped.id, null],
      ]);
    });

    it('records deletes and token revocations', async () => {
      await injectJson(cp, 'POST', '/v1/projects', { name: 'au-gone' });
      expect((await injectJson(cp, 'DELETE', '/v1/projects/au-gone')).status).toBe(204);
      const victim = await injectJson(cp, 'POST', '/v1/tokens', { name: 'au-victim', admin: true });
      expect((await injectJson(cp, 'DELETE', `/v1/tokens/${victim.body.token.id}`)).status).toBe(204);
      const del = await records({ action: 'project.delete' });
      expect(del.map((r) => [r.resource_id, r.status, r.token_id, r.route])).toEqual([
        ['au-gone', 204, adminId, '/v1/projects/:id'],
      ]);
      const revoked = await records({ action: 'token.revoke' });
      expect(revoked.map((r) => [r.resource_id, r.outcome])).toEqual([[victim.body.token.id, 'ok']]);
      const created = await records({ action: 'token.create', resource_id: victim.body.token.id });
      expect(created).toHaveLength(1);
    });

    it('records failed authentication with the reason, and a token first use once', async () => {
      const before = (await records({ action: 'auth.failed' })).length;
      const unknown = 'floe_' + 'x'.repeat(43);
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'au-x' }, unknown)).status).toBe(401);
      const gone = await injectJson(cp, 'POST', '/v1/tokens', { name: 'au-revoked', admin: true });
      await injectJson(cp, 'DELETE', `/v1/tokens/${gone.body.token.id}`);
      expect((await injectJson(cp, 'GET', '/v1/projects', undefined, gone.body.secret)).status).toBe(401);
      const res = await cp.app.http.inject({ method: 'GET', url: '/v1/instances' });
      expect(res.statusCode).toBe(401);
      const failed = (await records({ action: 'auth.failed' })).slice(before);
      expect(failed.map((r) => [r.reason, r.token_id, r.method, r.status, r.error_code, r.authenticator])).toEqual([
        ['unknown', null, 'POST', 401, 'unauthenticated', 'token'],
        ['revoked', gone.body.token.id, 'GET', 401, 'unauthenticated', 'token'],
        ['missing', null, 'GET', 401, 'unauthenticated', null],
      ]);
      // No second record for the failed POST itself.
      expect(await records({ action: 'project.create', status: 401 })).toEqual([]);

      const fresh = await injectJson(cp, 'POST', '/v1/tokens', { name: 'au-fresh', projects: ['au-scope'] });
      for (let i = 0; i < 3; i++)
        expect(
          (await injectJson(cp, 'GET', '/v1/instances?project=au-scope', undefined, fresh.body.secret)).status,
        ).toBe(200);
      const first = await records({ action: 'token.first_use' });
      expect(first.filter((r) => r.resource_id === fresh.body.token.id).map((r) => [r.token_id, r.method])).toEqual([
        [fresh.body.token.id, 'GET'],
      ]);
    });

    it('stores no secret and no Authorization header', async () => {
      const secrets = [cp.adminToken, scoped.secret];
      const rows = await records();
      expect(rows.length).toBeGreaterThan(5);
      const text = JSON.stringify(rows);
      for (const s of secrets) expect(text).not.toContain(s);
      expect(text.toLowerCase()).not.toContain('bearer');
      expect(text).not.toContain('floe_');
      // A secret pasted into a path is not stored either.
      await injectJson(cp, 'DELETE', `/v1/tokens/${scoped.secret}`);
      expect(JSON.stringify(await records())).not.toContain(scoped.secret);
    });

    it('lists records newest first with filters and cursor pagination (admin only)', async () => {
      await records();
      const all = await injectJson(cp, 'GET', '/v1/audit?limit=1000');
      expect(all.status).toBe(200);
      const ids = (all.body.items as AuditRecord[]).map((r) => r.id);
      expect(ids).toEqual([...ids].sort().reverse());
      const pages: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await injectJson(cp, 'GET', `/v1/audit?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
        pages.push(...(page.body.items as AuditRecord[]).map((r) => r.id));
        cursor = page.body.next_cursor;
      } while (cursor !== null);
      expect(pages).toEqual(ids);

      const q = async (query: string) =>
        ((await injectJson(cp, 'GET', `/v1/audit?${query}`)).body.items as AuditRecord[]).map((r) => r.action);
      expect(new Set(await q('action=token.'))).toEqual(new Set(['token.create', 'token.revoke', 'token.first_use']));
      expect(await q(`token=${scoped.id}&outcome=error`)).toEqual(['project.create']);
      expect(new Set(await q('outcome=error'))).toEqual(
        new Set(['auth.failed', 'network.create', 'project.create', 'token.revoke']),
      );
      expect(await q('project=au-scope&outcome=error')).toEqual(['network.create']);
      expect(await q('action=project.delete&resource=au-gone')).toEqual(['project.delete']);
      expect(await q('until=2000-01-01T00:00:00Z')).toEqual([]);
      expect((await q('since=2000-01-01T00:00:00Z')).length).toBe(ids.length);
      expect(await q('user=nobody')).toEqual([]);

      const refused = await injectJson(cp, 'GET', '/v1/audit', undefined, scoped.secret);
      expect([refused.status, refused.body.error.code]).toEqual([403, 'forbidden']);
      const badCursor = await injectJson(cp, 'GET', '/v1/audit?cursor=nope');
      expect(badCursor.body.error.code).toBe('invalid_cursor');
    });

    it('forgets records past FLOE_AUDIT_RETENTION_DAYS, and keeps them with 0', async () => {
      await records();
      const now = Date.now();
      const row = (id: string, days: number) => ({
        id,
        at: new Date(now - days * 86_400_000).toISOString(),
        action: 'project.create',
        outcome: 'ok' as const,
        status: 201,
        error_code: null,
        reason: null,
        token_id: null,
        user_id: null,
        user_name: null,
        authenticator: null,
        source_address: null,
        method: 'POST',
        route: '/v1/projects',
        resource_kind: 'project',
        resource_id: null,
        project: null,
        request_id: null,
      });
      await cp.store.db
        .insertInto('audit_log')
        .values([row('aud_00000000000000000000000001', 100), row('aud_00000000000000000000000002', 80)])
        .execute();
      const keep = await maintain(cp.store, loadConfig({ FLOE_AUDIT_RETENTION_DAYS: '0' }), now);
      expect(keep.auditRecords).toBe(0);
      const r = await maintain(cp.store, loadConfig({}), now);
      expect(r.auditRecords).toBe(1);
      const left = await cp.store.db
        .selectFrom('audit_log')
        .select('id')
        .where('id', 'like', 'aud_0000000000000000000000000%')
        .execute();
      expect(left.map((x) => x.id)).toEqual(['aud_00000000000000000000000002']);
    });
  });
}
