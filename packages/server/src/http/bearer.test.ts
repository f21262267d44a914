import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

describe('bearer tokens', () => {
  let cp: TestControlPlane;
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open());
  });
  afterAll(async () => {
    await cp?.close();
  });

  const get = (authorization: string) =>
    cp.app.http.inject({ method: 'GET', url: '/v1/projects', headers: { authorization } });

  it('takes `Bearer <token>` (the scheme in any case) and nothing looser', async () => {
    expect((await get(`Bearer ${cp.adminToken}`)).statusCode).toBe(200);
    expect((await get(`bearer ${cp.adminToken}`)).statusCode).toBe(200);
    for (const header of [
      `Bearer  ${cp.adminToken}`,
      `Bearer\t${cp.adminToken}`,
      `Bearer ${cp.adminToken} x`,
      `Bearer${cp.adminToken}`,
      `Basic ${cp.adminToken}`,
    ]) {
      const res = await get(header);
      expect(res.statusCode, header).toBe(401);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('unauthenticated');
    }
  });

  it('refuses a token the moment it expires, even while it is cached', async () => {
    const created = await cp.app.http.inject({
      method: 'POST',
      url: '/v1/tokens',
      headers: { authorization: `Bearer ${cp.adminToken}` },
      payload: { name: 'short-lived', projects: ['default'] },
    });
    expect(created.statusCode, created.body).toBe(201);
    const { secret, token } = created.json<{ secret: string; token: { id: string } }>();
    await cp.store.db
      .updateTable('tokens')
      .set({ expires_at: new Date(Date.now() + 400).toISOString() })
      .where('id', '=', token.id)
      .execute();
    expect((await get(`Bearer ${secret}`)).statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
    expect((await get(`Bearer ${secret}`)).statusCode).toBe(401);
  });

  it('a repeated ?access_token= (an array, before validation) is no token: 401, not a 500', async () => {
    const created = await cp.app.http.inject({
      method: 'POST',
      url: '/v1/projects',
      headers: { authorization: `Bearer ${cp.adminToken}` },
      payload: { name: 'query-token' },
    });
    expect(created.statusCode, created.body).toBe(201);
    for (const url of [
      `/v1/events?access_token=x&access_token=${cp.adminToken}`,
      '/v1/instances/any/console?project=query-token&access_token=a&access_token=b',
      '/v1/instances/any/logs?access_token[]=a',
    ]) {
      const res = await cp.app.http.inject({ method: 'GET', url });
      expect(res.statusCode, `${url}: ${res.body}`).toBe(401);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('unauthenticated');
    }
  });
});
