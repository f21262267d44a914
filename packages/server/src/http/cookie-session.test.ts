import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';
import { csrfRefusal, csrfTokenFor, parseCookies, sessionCookies } from './cookie-session.js';
import { wantsWebPage } from './web.js';

const PASSWORD = 'correct horse battery';

describe('cookie and CSRF rules', () => {
  it('parses cookie headers, first name wins, junk skipped', () => {
    expect(parseCookies('a=1; floe_session=floe_x; a=2; junk; =v; q="quoted"')).toEqual({
      a: '1',
      floe_session: 'floe_x',
      q: 'quoted',
    });
    expect(parseCookies(undefined)).toEqual({});
  });

  it('sets the session HttpOnly and SameSite=Strict, the CSRF token readable, Secure on https', () => {
    expect(sessionCookies('floe_s', 3600.7, false)).toEqual([
      'floe_session=floe_s; Path=/; Max-Age=3600; SameSite=Strict; HttpOnly',
      `floe_csrf=${csrfTokenFor('floe_s')}; Path=/; Max-Age=3600; SameSite=Strict`,
    ]);
    expect(sessionCookies('floe_s', 10, true)[0]).toBe(
      'floe_session=floe_s; Path=/; Max-Age=10; SameSite=Strict; Secure; HttpOnly',
    );
  });

  it('asks changes for the session’s own token and WebSockets for the same origin', () => {
    const base = { sessionSecret: 'floe_a', websocket: false, origin: undefined, host: 'floe.example:8443' };
    expect(csrfRefusal({ ...base, method: 'GET', csrfHeader: undefined })).toBeNull();
    expect(csrfRefusal({ ...base, method: 'POST', csrfHeader: undefined })).toMatch(/missing/);
    expect(csrfRefusal({ ...base, method: 'DELETE', csrfHeader: csrfTokenFor('floe_b') })).toMatch(/wrong/);
    expect(csrfRefusal({ ...base, method: 'PATCH', csrfHeader: [csrfTokenFor('floe_a')] })).toMatch(/missing/);
    expect(csrfRefusal({ ...base, method: 'PUT', csrfHeader: csrfTokenFor('floe_a') })).toBeNull();
    const ws = { ...base, method: 'GET', csrfHeader: undefined, websocket: true };
    expect(csrfRefusal({ ...ws, origin: 'https://floe.example:8443' })).toBeNull();
    expect(csrfRefusal({ ...ws, origin: 'https://evil.example' })).toMatch(/evil/);
    expect(csrfRefusal({ ...ws, origin: 'null' })).toMatch(/not a URL/);
  });

  it('sends the web page only for HTML GETs outside the API', () => {
    expect(wantsWebPage('GET', '/instances/web', 'text/html,*/*')).toBe(true);
    expect(wantsWebPage('GET', '/v1/instances', 'text/html')).toBe(false);
    expect(wantsWebPage('GET', '/docs/x', 'text/html')).toBe(false);
    expect(wantsWebPage('GET', '/instances', 'application/json')).toBe(false);
    expect(wantsWebPage('POST', '/instances', 'text/html')).toBe(false);
  });
});

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`browser sessions over HTTP (${target.name})`, () => {
    let cp: TestControlPlane;
    let cookie = '';
    let csrf = '';
    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open());
      expect((await injectJson(cp, 'POST', '/v1/users', { name: 'rosa', password: PASSWORD })).status).toBe(201);
      const res = await cp.app.http.inject({
        method: 'POST',
        url: '/v1/auth/session',
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ username: 'rosa', password: PASSWORD }),
      });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json<{ csrf_token: string; user: { name: string }; token?: string }>();
      expect(body.user.name).toBe('rosa');
      expect(body.token, 'the session secret never reaches scripts').toBeUndefined();
      const set = [res.headers['set-cookie']].flat() as string[];
      expect(set[0]).toMatch(/^floe_session=floe_[^;]+; Path=\/; Max-Age=\d+; SameSite=Strict; HttpOnly$/);
      expect(set[1]).toBe(`floe_csrf=${body.csrf_token}; ${set[1]!.split('; ').slice(1).join('; ')}`);
      expect(set[1]).not.toMatch(/HttpOnly/);
      cookie = set.map((c) => c.split(';')[0]).join('; ');
      csrf = body.csrf_token;
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
    });

    const send = (method: string, url: string, headers: Record<string, string> = {}, body?: unknown) =>
      cp.app.http.inject({
        method: method as 'GET',
        url,
        headers: { cookie, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });

    it('reads with the cookie alone and changes only with the CSRF token', async () => {
      const me = await send('GET', '/v1/users/me');
      expect(me.statusCode, me.body).toBe(200);
      expect(me.json<{ name: string }>().name).toBe('rosa');
      const bare = await send('POST', '/v1/tokens', {}, { name: 'from-a-form' });
      expect(bare.statusCode).toBe(403);
      expect(bare.json<{ error: { code: string } }>().error.code).toBe('csrf_failed');
      const wrong = await send('POST', '/v1/tokens', { 'x-csrf-token': csrfTokenFor('floe_other') }, { name: 'x' });
      expect(wrong.json<{ error: { code: string } }>().error.code).toBe('csrf_failed');
      const ok = await send('POST', '/v1/tokens', { 'x-csrf-token': csrf }, { name: 'from-the-ui' });
      expect(ok.statusCode, ok.body).toBe(201);
      // A bearer token wins over the cookie and needs no CSRF token.
      const bearer = await send('POST', '/v1/projects', { authorization: `Bearer ${cp.adminToken}` }, { name: 'p1' });
      expect(bearer.statusCode, bearer.body).toBe(201);
    });

    it('never accepts the cookie without the CSRF token on any route that changes something', async () => {
      const mutating = cp.app.routes.filter((r) => !r.public && !['GET', 'HEAD', 'OPTIONS'].includes(r.method));
      expect(mutating.length).toBeGreaterThanOrEqual(40);
      const wrongAnswers: string[] = [];
      for (const r of mutating) {
        const url = r.url.replace(/:[a-z_]+/g, 'x').replace('*', 'x');
        const res = await send(r.method, url, {}, r.method === 'DELETE' ? undefined : {});
        const code = res.statusCode === 403 ? res.json<{ error: { code: string } }>().error.code : res.statusCode;
        if (code !== 'csrf_failed') wrongAnswers.push(`${r.method} ${r.url}: ${code}`);
      }
      expect(wrongAnswers).toEqual([]);
    });

    it('refuses a WebSocket with the cookie from another origin', async () => {
      const res = await send('GET', '/v1/events', {
        upgrade: 'websocket',
        connection: 'Upgrade',
        origin: 'https://evil.example',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      });
      expect(res.statusCode).toBe(403);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('csrf_failed');
    });

    it('logs out: clears both cookies and the session ends', async () => {
      expect((await send('POST', '/v1/auth/logout')).statusCode).toBe(403);
      const out = await send('POST', '/v1/auth/logout', { 'x-csrf-token': csrf });
      expect(out.statusCode, out.body).toBe(204);
      const set = [out.headers['set-cookie']].flat() as string[];
      expect(set.map((c) => c.split(';')[0])).toEqual(['floe_session=', 'floe_csrf=']);
      expect(set.every((c) => c.includes('Max-Age=0'))).toBe(true);
      const after = await send('GET', '/v1/users/me');
      expect(after.statusCode).toBe(401);
    });
  });
}
