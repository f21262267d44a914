import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { freePort } from '@floe/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ExternalChecker } from '../auth/checker.js';
import { storeTargets } from '../db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';

/** A small checker on 127.0.0.1: it answers by the opaque header, and records what floe asked. */
let server: http.Server;
let checkerUrl: string;
const asked: Record<string, unknown>[] = [];
let broken = false;

const ANSWERS: Record<string, unknown> = {
  // A member of `web` by a direct grant.
  'Bearer web-member': { allow: true, user: { subject: 'wendy' }, roles: [{ role: 'member', project: 'web' }] },
  // A viewer of `web` through a group the role mapping names.
  'Bearer web-viewer': { allow: true, user: { subject: 'vic', groups: ['Web-Readers'] } },
  // An operator by a direct grant.
  'Custom op-token': { allow: true, user: { subject: 'olga' }, roles: [{ role: 'operator' }] },
  // An operator through the mapped group.
  'Bearer admins-group': { allow: true, user: { subject: 'adam', groups: ['admins'] } },
};

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString()));
    req.on('end', () => {
      const body = JSON.parse(data) as Record<string, unknown>;
      asked.push(body);
      if (broken) {
        res.writeHead(500).end('oops');
        return;
      }
      const answer = ANSWERS[String(body.authorization)] ?? { allow: false, reason: 'bad_credentials' };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  checkerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/check`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});
beforeEach(() => {
  asked.length = 0;
  broken = false;
});

const ROLES = { operators: ['admins'], projects: [{ project: 'web', viewer: ['web-readers'] }] };

async function get(cp: TestControlPlane, url: string, authorization: string) {
  const res = await cp.app.http.inject({ method: 'GET', url, headers: { authorization } });
  return { status: res.statusCode, body: res.body === '' ? null : JSON.parse(res.body) };
}

for (const t of storeTargets().filter((x) => x.name === 'sqlite')) {
  describe(`requests decided by an external checker on ${t.name}`, () => {
    let cp: TestControlPlane;
    let imageId: string;

    beforeAll(async () => {
      const checker = new ExternalChecker({
        name: 'kraut',
        url: checkerUrl,
        cacheTtlMs: 60_000,
        negativeCacheTtlMs: 0,
      });
      cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' }, undefined, '127.0.0.1', () => ({
        checker: { checker, roles: ROLES },
      }));
      for (const p of ['web', 'db']) {
        await injectJson(cp, 'POST', '/v1/projects', { name: p });
        await injectJson(cp, 'POST', '/v1/images', { name: 'img', project: p });
      }
      imageId = (await injectJson(cp, 'GET', '/v1/images/img?project=web')).body.id;
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
    });

    it('hands the checker the header, method, path, project and resource, and respects its roles', async () => {
      const own = await get(cp, `/v1/images/${imageId}?project=web`, 'Bearer web-member');
      expect(own.status).toBe(200);
      expect(asked).toEqual([
        {
          purpose: 'request',
          authorization: 'Bearer web-member',
          method: 'GET',
          path: `/v1/images/${imageId}`,
          project: 'web',
          resource: imageId,
        },
      ]);
      // Another project is hidden as missing; a list there is empty; admin routes are forbidden.
      expect((await get(cp, '/v1/images/img?project=db', 'Bearer web-member')).status).toBe(404);
      expect((await get(cp, '/v1/images?project=db', 'Bearer web-member')).body.items).toEqual([]);
      expect((await get(cp, '/v1/hosts', 'Bearer web-member')).status).toBe(403);
      // Without ?project= the checker is told `default`.
      await get(cp, '/v1/machine-types', 'Bearer web-member');
      expect(asked.at(-1)).toMatchObject({ project: 'default', path: '/v1/machine-types' });
      expect(asked.at(-1)).not.toHaveProperty('resource');
    });

    it('maps the checker’s groups through the role mapping: a viewer reads but may not write', async () => {
      expect((await get(cp, '/v1/images/img?project=web', 'Bearer web-viewer')).status).toBe(200);
      const write = await cp.app.http.inject({
        method: 'PATCH',
        url: '/v1/images/img?project=web',
        headers: { authorization: 'Bearer web-viewer', 'content-type': 'application/merge-patch+json' },
        payload: JSON.stringify({ labels: { a: 'b' } }),
      });
      expect(write.statusCode).toBe(403);
    });

    it('makes operators of the operator role and of mapped groups; any header scheme goes to the checker', async () => {
      expect((await get(cp, '/v1/hosts', 'Custom op-token')).status).toBe(200);
      expect((await get(cp, '/v1/images?project=db', 'Bearer admins-group')).body.items).toHaveLength(1);
    });

    it('answers 401 when the checker denies, 503 when it cannot answer (never a pass)', async () => {
      const denied = await get(cp, '/v1/images?project=web', 'Bearer nobody');
      expect(denied.status).toBe(401);
      expect(denied.body.error.code).toBe('unauthenticated');
      broken = true;
      const down = await get(cp, '/v1/images?project=web', 'Bearer fresh-header');
      expect(down.status).toBe(503);
      expect(down.body.error.code).toBe('authenticator_unavailable');
    });

    it('reuses a cached allow for the same header and request without asking again', async () => {
      const url = '/v1/images?project=web&limit=7';
      expect((await get(cp, url, 'Bearer web-member')).status).toBe(200);
      const n = asked.length;
      broken = true; // a cached answer does not need the checker
      expect((await get(cp, url, 'Bearer web-member')).status).toBe(200);
      expect(asked.length).toBe(n);
      // Another path is another question, which the broken checker cannot answer.
      expect((await get(cp, '/v1/networks?project=web', 'Bearer web-member')).status).toBe(503);
    });

    it('leaves floe tokens to floe: the checker is not asked about them', async () => {
      expect((await get(cp, '/v1/hosts', `Bearer ${cp.adminToken}`)).status).toBe(200);
      expect((await get(cp, '/v1/hosts', 'Bearer floe_unknown')).status).toBe(401);
      expect((await get(cp, '/v1/hosts', 'bearer FLOE_unknown')).status).toBe(401);
      expect(asked).toEqual([]);
    });

    it('records the checker’s subject as the user in the audit log, and its refusals', async () => {
      const created = await cp.app.http.inject({
        method: 'POST',
        url: '/v1/images',
        headers: { authorization: 'Bearer web-member', 'content-type': 'application/json' },
        payload: JSON.stringify({ name: 'audited', project: 'web' }),
      });
      expect(created.statusCode).toBe(201);
      await cp.app.http.inject({
        method: 'POST',
        url: '/v1/images',
        headers: { authorization: 'Bearer nobody', 'content-type': 'application/json' },
        payload: JSON.stringify({ name: 'refused', project: 'web' }),
      });
      await cp.app.services.audit.flush();
      const rows = await cp.store.db
        .selectFrom('audit_log')
        .select(['action', 'outcome', 'user_name', 'user_id', 'token_id', 'authenticator', 'reason'])
        .where('route', '=', '/v1/images')
        .where('method', '=', 'POST')
        .orderBy('id')
        .execute();
      expect(rows.slice(-2)).toEqual([
        {
          action: 'image.create',
          outcome: 'ok',
          user_name: 'wendy',
          user_id: null,
          token_id: null,
          authenticator: 'kraut',
          reason: null,
        },
        {
          action: 'auth.failed',
          outcome: 'error',
          user_name: null,
          user_id: null,
          token_id: null,
          authenticator: 'kraut',
          reason: 'denied',
        },
      ]);
    });
  });
}

describe('requests without a checker configured', () => {
  it('are floe-token-only: any other header is 401, and nothing is asked', async () => {
    const t = storeTargets().find((x) => x.name === 'sqlite')!;
    const cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' });
    try {
      const res = await get(cp, '/v1/hosts', 'Custom op-token');
      expect(res.status).toBe(401);
      expect(asked).toEqual([]);
    } finally {
      await cp.close();
    }
  });

  it('a checker that does not listen fails closed with 503', async () => {
    const t = storeTargets().find((x) => x.name === 'sqlite')!;
    const checker = new ExternalChecker({ url: `http://127.0.0.1:${await freePort()}/`, timeoutMs: 500 });
    const cp = await startTestControlPlane(
      await t.open(),
      { FLOE_LOG_LEVEL: 'silent' },
      undefined,
      '127.0.0.1',
      () => ({
        checker: { checker, roles: {} },
      }),
    );
    try {
      expect((await get(cp, '/v1/hosts', 'Custom op-token')).status).toBe(503);
    } finally {
      await cp.close();
    }
  });
});
