import type { OidcLoginStarted } from '@floe/api';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { OidcAuthenticator } from '../auth/oidc.js';
import { startTestOidcProvider, type TestOidcProvider } from '../auth/oidc-testing.js';
import { openStore } from '../db/index.js';
import { storeTargets } from '../db/testing.js';
import { completeLoginForTests } from '../services/oidc-logins-testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';

const ALICE = { sub: 'u-2001', username: 'alice', name: 'Alice', email: 'alice@example.org', groups: ['devs'] };

let tp: TestOidcProvider;
beforeAll(async () => {
  tp = await startTestOidcProvider([ALICE]);
}, 30_000);
afterAll(async () => {
  await tp?.stop();
});
beforeEach(() => {
  tp.mode = () => 'up';
  tp.rewrite = undefined;
});

function authenticator(name: string): OidcAuthenticator {
  return new OidcAuthenticator({
    name,
    issuer: tp.issuer,
    clientId: 'floe',
    clientSecret: 'floe-secret-basic',
    redirectUri: tp.redirectUri,
    scopes: ['profile', 'email', 'groups'],
    timeoutMs: 2000,
  });
}

/** A control plane with the OpenID authenticator `corp`; completeLogin calls are recorded. */
async function startWithOidc(
  store: Parameters<typeof startTestControlPlane>[0],
  calls: string[],
  shared?: TestControlPlane,
) {
  return startTestControlPlane(
    store,
    { FLOE_LOG_LEVEL: 'silent' },
    shared === undefined ? undefined : { ca: shared.ca, pki: shared.pki },
    '127.0.0.1',
    (s) => ({
      oidc: {
        authenticators: new Map([['corp', authenticator('corp')]]),
        completeLogin: completeLoginForTests(s, calls),
      },
    }),
  );
}

async function start(cp: TestControlPlane, body?: unknown) {
  const res = await injectJson(cp, 'POST', '/v1/auth/oidc/corp/start', body, '');
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as OidcLoginStarted;
}

/** The browser's return to floe: the provider's query, carried to floe's callback as the redirect would. */
async function callback(cp: TestControlPlane, query: URLSearchParams | string) {
  const res = await cp.app.http.inject({ method: 'GET', url: `/v1/auth/oidc/callback?${query.toString()}` });
  return { status: res.statusCode, html: res.body, type: String(res.headers['content-type']) };
}

/** The person types `code` into floe's page: the page's form, posted as the browser would. */
async function confirm(cp: TestControlPlane, html: string, code: string) {
  const secret = /name="confirm" value="([^"]+)"/.exec(html)?.[1];
  if (secret === undefined) throw new Error(`the page has no confirmation form: ${html}`);
  const res = await cp.app.http.inject({
    method: 'POST',
    url: '/v1/auth/oidc/confirm',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ confirm: secret, code }).toString(),
  });
  return { status: res.statusCode, html: res.body };
}

async function poll(cp: TestControlPlane, login_id: string, poll_secret: string) {
  return injectJson(cp, 'POST', '/v1/auth/oidc/poll', { login_id, poll_secret }, '');
}

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`OpenID login over HTTP on ${t.name}`, () => {
    let cp: TestControlPlane;
    const calls: string[] = [];

    beforeAll(async () => {
      cp = await startWithOidc(await t.open(), calls);
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
    });

    it('starts, comes back through the callback, and gives a working session token exactly once', async () => {
      const started = await start(cp, { session_name: 'laptop' });
      expect(started.login_id).toMatch(/^lgn_/);
      const url = new URL(started.authorization_url);
      expect(url.origin).toBe(tp.issuer);
      expect(url.searchParams.get('code_challenge_method')).toBe('S256');
      expect(started.authorization_url).not.toContain(started.poll_secret);

      // The browser has not come back yet.
      const waiting = await poll(cp, started.login_id, started.poll_secret);
      expect(waiting.status).toBe(202);
      expect(waiting.body).toEqual({ status: 'pending', expires_at: started.expires_at });

      expect(started.user_code).toMatch(/^[B-DF-HJ-NP-TV-XZ]{4}-[B-DF-HJ-NP-TV-XZ]{4}$/);
      const q = await tp.browse(started.authorization_url, 'alice');
      const page = await callback(cp, q);
      expect(page.status).toBe(200);
      expect(page.type).toContain('text/html');
      expect(page.html).toContain('enter the code your terminal shows');
      expect(page.html).not.toContain(q.get('code')!);
      expect(page.html).not.toContain(started.user_code);
      // Not collected until the browser that came back confirms with the terminal's code.
      expect((await poll(cp, started.login_id, started.poll_secret)).status).toBe(202);
      const done = await confirm(cp, page.html, ` ${started.user_code.toLowerCase().replace('-', ' ')} `);
      expect(done.status).toBe(200);
      expect(done.html).toContain('login complete');
      expect(done.html).not.toContain('floe_');

      const got = await poll(cp, started.login_id, started.poll_secret);
      expect(got.status, JSON.stringify(got.body)).toBe(200);
      expect(got.body.token).toMatch(/^floe_/);
      expect(got.body.user).toMatchObject({ name: 'alice', email: 'alice@example.org' });
      expect(Date.parse(got.body.expires_at)).toBeGreaterThan(Date.now());
      const me = await injectJson(cp, 'GET', '/v1/users/me', undefined, got.body.token);
      expect(me.status).toBe(200);
      expect(me.body.name).toBe('alice');
      const sessions = await cp.store.db.selectFrom('tokens').select('name').where('name', '=', 'laptop').execute();
      expect(sessions).toHaveLength(1);

      // Once only: polling again, with or without the right secret, gives nothing more.
      expect((await poll(cp, started.login_id, started.poll_secret)).body.error.code).toBe('login_expired');
      expect((await poll(cp, started.login_id, 'x'.repeat(43))).status).toBe(401);
      // Nor does the session token ever rest in the database.
      const row = await cp.store.db
        .selectFrom('login_requests')
        .selectAll()
        .where('id', '=', started.login_id)
        .executeTakeFirstOrThrow();
      expect(JSON.stringify(row)).not.toContain(got.body.token);
      expect(JSON.stringify(row)).not.toContain(started.poll_secret);
      expect(JSON.stringify(row)).not.toContain(q.get('state')!);

      await cp.app.services.audit.flush();
      const audit = await cp.store.db
        .selectFrom('audit_log')
        .select(['action', 'outcome', 'user_name', 'authenticator', 'resource_id'])
        .where('resource_id', '=', started.login_id)
        .orderBy('id')
        .execute();
      expect(audit.map((a) => `${a.action} ${a.outcome} ${a.user_name ?? '-'} ${a.authenticator ?? '-'}`)).toEqual([
        'auth.oidc_start ok - corp',
        'auth.login ok alice corp',
        'auth.oidc_poll error - -',
        'auth.oidc_poll error - -',
      ]);
      const back = await cp.store.db
        .selectFrom('audit_log')
        .select(['outcome', 'user_name', 'authenticator'])
        .where('action', '=', 'auth.oidc_callback')
        .execute();
      expect(back).toContainEqual({ outcome: 'ok', user_name: 'alice', authenticator: 'corp' });
    });

    it('spends the state on its first return: a replay is refused and makes no second session', async () => {
      const started = await start(cp);
      const q = await tp.browse(started.authorization_url, 'alice');
      const page = await callback(cp, q);
      expect(page.status).toBe(200);
      const before = calls.length;
      const again = await callback(cp, q);
      expect(again.status).toBe(400);
      expect(again.html).toContain('already came back here once');
      expect(again.html).not.toContain('name="confirm"');
      expect((await confirm(cp, page.html, started.user_code)).status).toBe(200);
      expect((await poll(cp, started.login_id, started.poll_secret)).status).toBe(200);
      expect(calls.length).toBe(before + 1);
    });

    it('does not hand a login finished in someone else’s browser to whoever started it', async () => {
      // Someone starts a login and gets another person to open its URL; that person is signed in at the provider.
      const started = await start(cp);
      const page = await callback(cp, await tp.browse(started.authorization_url, 'alice'));
      expect(page.html).toContain('If you did not start a login');
      // Whoever started it has the code, but not the page's secret, which only that browser got.
      const forged = await confirm(
        cp,
        page.html.replace(/name="confirm" value="[^"]+"/, 'name="confirm" value="guess"'),
        started.user_code,
      );
      expect(forged.status).toBe(400);
      // The person does not know the code: a few tries, then the login ends and nothing can be collected.
      for (let left = 4; left >= 1; left--) {
        const wrong = await confirm(cp, page.html, 'BBBB-BBBB');
        expect(wrong.status).toBe(401);
        expect(wrong.html).toContain(`${left} tries left`);
        expect((await poll(cp, started.login_id, started.poll_secret)).status).toBe(202);
      }
      const last = await confirm(cp, page.html, 'BBBB-BBBB');
      expect(last.html).toContain('typed wrong too often');
      expect(last.html).not.toContain('name="confirm"');
      expect((await confirm(cp, page.html, started.user_code)).status).toBe(400);
      const res = await poll(cp, started.login_id, started.poll_secret);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('login_failed');
      // A malformed form gets a page too, not a JSON error.
      const bad = await cp.app.http.inject({
        method: 'POST',
        url: '/v1/auth/oidc/confirm',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'code=x',
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.headers['content-type']).toContain('text/html');
    });

    it('refuses a wrong poll secret and an unknown login alike, without spending the login', async () => {
      const started = await start(cp);
      const wrong = await poll(cp, started.login_id, `${started.poll_secret.slice(0, -2)}xx`);
      expect(wrong.status).toBe(401);
      expect(wrong.body.error.code).toBe('unauthenticated');
      const unknown = await poll(cp, 'lgn_AAAAAAAAAAAAAAAAAAAAAA', started.poll_secret);
      expect(unknown.status).toBe(401);
      expect(unknown.body.error.message).toBe(wrong.body.error.message);
      expect((await poll(cp, started.login_id, started.poll_secret)).status).toBe(202);
    });

    it('ends an expired login: the callback and the poll say so', async () => {
      const started = await start(cp);
      const q = await tp.browse(started.authorization_url, 'alice');
      await cp.store.db
        .updateTable('login_requests')
        .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
        .where('id', '=', started.login_id)
        .execute();
      const page = await callback(cp, q);
      expect(page.status).toBe(410);
      expect(page.html).toContain('expired');
      const res = await poll(cp, started.login_id, started.poll_secret);
      expect(res.status).toBe(410);
      expect(res.body.error.code).toBe('login_expired');
    });

    it('ends the login when the provider refused it, and tells the poller why', async () => {
      const started = await start(cp);
      const state = new URL(started.authorization_url).searchParams.get('state')!;
      const page = await callback(cp, new URLSearchParams({ error: 'access_denied', state }));
      expect(page.status).toBe(401);
      expect(page.html).toContain('refused the login (access_denied)');
      const res = await poll(cp, started.login_id, started.poll_secret);
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({ code: 'login_failed' });
      expect(res.body.error.message).toContain('access_denied');
      expect((await poll(cp, started.login_id, started.poll_secret)).status).toBe(410);
    });

    it('checks the query: no state, an unknown state, a repeated parameter, markup in the error', async () => {
      expect((await callback(cp, 'code=abc')).status).toBe(400);
      expect((await callback(cp, 'code=abc&state=never-made')).html).toContain('unknown');
      const started = await start(cp);
      const state = new URL(started.authorization_url).searchParams.get('state')!;
      const repeated = await callback(cp, `code=a&state=${state}&state=${state}`);
      expect(repeated.status).toBe(400);
      expect(repeated.html).toContain('not one floe accepts');
      // The state was not spent by the malformed return; a provider error with markup is shown inertly.
      const page = await callback(cp, new URLSearchParams({ error: '<script>x</script>', state }));
      expect(page.html).not.toContain('<script>');
      expect(page.html).toContain('(&lt;script&gt;x&lt;/script&gt;)');
      const other = new URL((await start(cp)).authorization_url).searchParams.get('state')!;
      const controls = await callback(cp, new URLSearchParams({ error: 'a\nb', state: other }));
      expect(controls.html).toContain('refused the login (error)');
    });

    it('refuses a code the provider did not issue, and the login ends', async () => {
      const started = await start(cp);
      const state = new URL(started.authorization_url).searchParams.get('state')!;
      const page = await callback(cp, new URLSearchParams({ code: 'forged', state }));
      expect(page.status).toBe(401);
      expect(page.html).toContain('invalid_grant');
      expect((await poll(cp, started.login_id, started.poll_secret)).body.error.code).toBe('login_failed');
    });

    it('answers 404 for an authenticator that is not configured, 503 when the provider is down', async () => {
      const res = await injectJson(cp, 'POST', '/v1/auth/oidc/nope/start', undefined, '');
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('authenticator_not_found');
      tp.mode = () => 'error';
      const down = await startWithOidc(await t.open(), []);
      try {
        const r = await injectJson(down, 'POST', '/v1/auth/oidc/corp/start', undefined, '');
        expect(r.status).toBe(503);
        expect(r.body.error.code).toBe('authenticator_unavailable');
      } finally {
        await down.close();
      }
    });
  });
}

const pg = storeTargets().find((t) => t.name === 'postgres')!;
describe.skipIf(pg.skip)('OpenID login across two control planes on PostgreSQL', () => {
  let cp1: TestControlPlane;
  let cp2: TestControlPlane;
  const calls: string[] = [];

  beforeAll(async () => {
    const store1 = await pg.open();
    cp1 = await startWithOidc(store1, calls);
    cp2 = await startWithOidc(await openStore({ url: store1.options.url! }), calls, cp1);
  }, 60_000);
  afterAll(async () => {
    await cp2?.close(); // first: the test database is dropped with the first store
    await cp1?.close();
  });

  it('starts on one, comes back to the other, and is collected from the first', async () => {
    const started = await start(cp1);
    const q = await tp.browse(started.authorization_url, 'alice');
    const page = await callback(cp2, q);
    expect(page.status).toBe(200);
    expect((await confirm(cp1, page.html, started.user_code)).status).toBe(200);
    const got = await poll(cp1, started.login_id, started.poll_secret);
    expect(got.status).toBe(200);
    expect((await injectJson(cp2, 'GET', '/v1/users/me', undefined, got.body.token)).body.name).toBe('alice');
    expect((await poll(cp2, started.login_id, started.poll_secret)).status).toBe(410);
  });
});
