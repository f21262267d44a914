import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { storeTargets } from '../db/testing.js';
import { auditEntries } from '../http/audit.js';
import { injectJson, startTestControlPlane } from '../testing.js';
import { AuditLog, type AuditEntry } from './audit.js';

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

const entry: AuditEntry = {
  at: new Date().toISOString(),
  action: 'project.create',
  outcome: 'ok',
  status: 201,
  error_code: null,
  reason: null,
  token_id: 'tok_x',
  user_id: null,
  user_name: null,
  authenticator: 'token',
  source_address: '127.0.0.1',
  method: 'POST',
  route: '/v1/projects',
  resource_kind: 'project',
  resource_id: null,
  project: null,
  request_id: '1',
};

describe('audit log writes', () => {
  it('warns with the number of records when a write fails, instead of losing them silently', async () => {
    const store = await sqlite.open();
    try {
      const warnings: unknown[] = [];
      const log = { warn: (obj: unknown) => warnings.push(obj) } as unknown as FastifyBaseLogger;
      const audit = new AuditLog(store, log);
      await sql`drop table audit_log`.execute(store.db);
      audit.record(entry);
      audit.record(entry);
      await audit.flush();
      expect(warnings).toEqual([expect.objectContaining({ records: 2 })]);
    } finally {
      await store.close();
    }
  });

  it('writes what is queued when the control plane closes', async () => {
    const cp = await startTestControlPlane(await sqlite.open(), { FLOE_LOG_LEVEL: 'silent' });
    try {
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'au-close' })).status).toBe(201);
      await cp.app.close();
      const rows = await cp.store.db.selectFrom('audit_log').select('action').execute();
      // The admin token's first use, and the create itself.
      expect(rows.map((r) => r.action).sort()).toEqual(['project.create', 'token.first_use']);
    } finally {
      await cp.store.close();
    }
  });

  it('names the user of a principal that has one', () => {
    const request = {
      method: 'DELETE',
      routeOptions: { url: '/v1/instances/:id' },
      params: { id: 'inst_1' },
      query: { project: 'shop' },
      principal: { actor: 'tok_1', admin: false, projects: new Set(['shop']), user: 'usr_1', userName: 'ada' },
      socket: { remoteAddress: '192.0.2.1' },
      ip: '192.0.2.1',
      id: 'req-1',
    } as unknown as FastifyRequest;
    const [r, ...more] = auditEntries(request, { statusCode: 202 } as FastifyReply, 'now');
    expect(more).toEqual([]);
    expect(r).toMatchObject({
      action: 'instance.delete',
      token_id: 'tok_1',
      user_id: 'usr_1',
      user_name: 'ada',
      resource_id: 'inst_1',
      project: 'shop',
      source_address: '192.0.2.1',
    });
  });
});
