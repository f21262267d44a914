import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '@floe/testkit';
import { buildAuthChain, parseAuthConfig } from './config.js';
import { OidcAuthenticator, type OidcLoginStart, type OidcOptions } from './oidc.js';
import { startTestOidcProvider, type TestOidcProvider } from './oidc-testing.js';
import { mapRoles } from './roles.js';
import type { AuthFailure } from './types.js';

const ALICE = {
  sub: 'u-1001',
  username: 'alice',
  name: 'Alice Example',
  email: 'alice@example.org',
  groups: ['devs', 'Admins'],
};

let tp: TestOidcProvider;

beforeAll(async () => {
  tp = await startTestOidcProvider([
    ALICE,
    { sub: 'u-1002', username: 'mallory', name: 'M', email: 'm@example.org', groups: { admins: true } },
  ]);
}, 30_000);
afterAll(async () => {
  await tp?.stop();
});
beforeEach(() => {
  tp.mode = () => 'up';
  tp.rewrite = undefined;
});

function client(id = 'floe', extra: Partial<OidcOptions> = {}): OidcAuthenticator {
  const c = tp.clients.find((x) => x.clientId === id)!;
  return new OidcAuthenticator({
    issuer: tp.issuer,
    clientId: c.clientId,
    ...(c.clientSecret !== undefined ? { clientSecret: c.clientSecret } : {}),
    clientAuth: c.auth,
    redirectUri: tp.redirectUri,
    scopes: ['profile', 'email', 'groups'],
    timeoutMs: 2000,
    ...extra,
  });
}

async function begin(a: OidcAuthenticator): Promise<OidcLoginStart> {
  const start = await a.beginLogin();
  if (!start.ok) throw new Error(`beginLogin failed: ${start.detail}`);
  return start;
}

/** A login up to the browser's return: what the redirect URI received. */
async function toCallback(a: OidcAuthenticator, user = 'alice') {
  const start = await begin(a);
  const q = await tp.browse(start.authorizationUrl, user);
  const callback = {
    code: q.get('code') ?? undefined,
    state: q.get('state') ?? undefined,
    iss: q.get('iss') ?? undefined,
  };
  return { start, callback };
}

/** Every failure's detail is free of the code, the secrets and any token. */
function expectClean(r: AuthFailure, ...secrets: (string | undefined)[]): void {
  for (const s of [...secrets, 'floe-secret-basic', 'floe-secret-post', 'eyJ']) {
    if (s !== undefined) expect(r.detail ?? '').not.toContain(s);
  }
}

describe('OpenID Connect login against a real provider', () => {
  it('logs in with PKCE, maps the claims, and the groups give roles', async () => {
    const a = client();
    const { start, callback } = await toCallback(a);
    const url = new URL(start.authorizationUrl);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('state')).toBe(start.pending.state);
    expect(url.searchParams.get('nonce')).toBe(start.pending.nonce);
    // The verifier itself never goes to the browser.
    expect(start.authorizationUrl).not.toContain(start.pending.codeVerifier);

    const r = await a.completeLogin(callback, start.pending);
    expect(r).toEqual({
      ok: true,
      authenticator: 'oidc',
      subject: 'u-1001',
      username: 'alice',
      displayName: 'Alice Example',
      email: 'alice@example.org',
      groups: ['devs', 'Admins'],
    });
    const roles = mapRoles(r as { groups: readonly string[] }, {
      operators: ['admins'],
      projects: [
        { project: 'web', member: ['devs'] },
        { project: 'db', owner: ['dba'] },
      ],
    });
    expect(roles).toEqual({ operator: true, projects: { web: 'member' } });
  });

  it('makes new state, nonce and verifier for each login', async () => {
    const a = client();
    const [x, y] = [await begin(a), await begin(a)];
    expect(
      new Set([x.pending.state, y.pending.state, x.pending.nonce, y.pending.nonce, x.pending.codeVerifier]).size,
    ).toBe(5);
    expect(x.pending.codeVerifier.length).toBeGreaterThanOrEqual(43);
  });

  it('authenticates with client_secret_post, and as a public client with PKCE alone', async () => {
    for (const id of ['floe-post', 'floe-public']) {
      const a = client(id);
      const { start, callback } = await toCallback(a);
      expect(await a.completeLogin(callback, start.pending)).toMatchObject({ ok: true, subject: 'u-1001' });
    }
  });

  it('takes the username and groups from configured claims', async () => {
    const a = client('floe', { claims: { username: 'email', groups: 'preferred_username' } });
    const { start, callback } = await toCallback(a);
    expect(await a.completeLogin(callback, start.pending)).toMatchObject({
      ok: true,
      username: 'alice@example.org',
      groups: ['alice'],
    });
  });

  it('refuses a return with the wrong state before using its code', async () => {
    const a = client();
    const { start, callback } = await toCallback(a);
    const tokenCalls = tp.requests.get('/token') ?? 0;
    for (const state of [`${callback.state}x`, '', undefined, (await begin(a)).pending.state]) {
      const r = await a.completeLogin({ ...callback, state }, start.pending);
      expect(r).toMatchObject({ ok: false, reason: 'bad_credentials', detail: 'oidc: state does not match the login' });
    }
    expect(tp.requests.get('/token') ?? 0).toBe(tokenCalls);
    // The code was not spent: the right return still logs in.
    expect(await a.completeLogin(callback, start.pending)).toMatchObject({ ok: true });
  });

  it('refuses a replayed code', async () => {
    const a = client();
    const { start, callback } = await toCallback(a);
    expect(await a.completeLogin(callback, start.pending)).toMatchObject({ ok: true });
    const again = await a.completeLogin(callback, start.pending);
    expect(again).toMatchObject({ ok: false, reason: 'bad_credentials' });
    expect((again as AuthFailure).detail).toContain('invalid_grant');
    expectClean(again as AuthFailure, callback.code);
  });

  it('refuses a code with another login’s PKCE verifier', async () => {
    const a = client();
    const { start, callback } = await toCallback(a);
    const other = await begin(a);
    const r = await a.completeLogin(callback, { ...start.pending, codeVerifier: other.pending.codeVerifier });
    expect(r).toMatchObject({ ok: false, reason: 'bad_credentials' });
  });

  it('refuses an ID token whose signature was tampered with', async () => {
    const a = client();
    const { start, callback } = await toCallback(a);
    tp.rewrite = (path, body) => {
      if (path !== '/token') return undefined;
      const [h, p, s] = String(body.id_token).split('.');
      const flipped = (s![0] === 'A' ? 'B' : 'A') + s!.slice(1);
      return { ...body, id_token: `${h}.${p}.${flipped}` };
    };
    const r = await a.completeLogin(callback, start.pending);
    expect(r).toMatchObject({
      ok: false,
      reason: 'bad_credentials',
      detail: 'oidc: ID token: signature does not verify',
    });
    expectClean(r as AuthFailure, callback.code);
  });

  it('refuses an ID token whose claims were changed (signature no longer matches)', async () => {
    const a = client();
    const { start, callback } = await toCallback(a);
    tp.rewrite = (path, body) => {
      if (path !== '/token') return undefined;
      const [h, p, s] = String(body.id_token).split('.');
      const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
      const forged = Buffer.from(JSON.stringify({ ...claims, groups: ['dba'] })).toString('base64url');
      return { ...body, id_token: `${h}.${forged}.${s}` };
    };
    expect(await a.completeLogin(callback, start.pending)).toMatchObject({ ok: false, reason: 'bad_credentials' });
  });

  it('refuses a real ID token issued to another client (audience)', async () => {
    const a = client();
    const mine = await begin(a);
    // Another client's login, made with this login's nonce, so only the audience differs.
    const b = client('other');
    const theirs = await begin(b);
    const url = new URL(theirs.authorizationUrl);
    url.searchParams.set('nonce', mine.pending.nonce);
    const q = await tp.browse(url.toString(), 'alice');
    let stolen = '';
    tp.rewrite = (path, body) => {
      if (path === '/token') stolen = String(body.id_token);
      return undefined;
    };
    const own = await b.completeLogin(
      { code: q.get('code')!, state: q.get('state')! },
      { ...theirs.pending, nonce: mine.pending.nonce },
    );
    expect(own).toMatchObject({ ok: true });
    const mq = await tp.browse(mine.authorizationUrl, 'alice');
    tp.rewrite = (path, body) => (path === '/token' ? { ...body, id_token: stolen } : undefined);
    const r = await a.completeLogin({ code: mq.get('code')!, state: mq.get('state')! }, mine.pending);
    expect(r).toMatchObject({ ok: false, reason: 'bad_credentials' });
    expect((r as AuthFailure).detail).toContain('claim aud');
  });

  it('refuses an expired ID token, and tolerates a small clock skew', async () => {
    const later = (ms: number) => client('floe', { now: () => Date.now() + ms, clockSkewSec: 60 });
    const expired = later(3600_000 + 120_000);
    let { start, callback } = await toCallback(expired);
    const r = await expired.completeLogin(callback, start.pending);
    expect(r).toMatchObject({ ok: false, reason: 'bad_credentials', detail: 'oidc: ID token: expired (exp)' });

    const skewed = later(3600_000 + 20_000);
    ({ start, callback } = await toCallback(skewed));
    expect(await skewed.completeLogin(callback, start.pending)).toMatchObject({ ok: true });
  });

  it('refuses an ID token issued in the future', async () => {
    const behind = client('floe', { now: () => Date.now() - 600_000, clockSkewSec: 60 });
    const { start, callback } = await toCallback(behind);
    const r = await behind.completeLogin(callback, start.pending);
    expect(r).toMatchObject({ ok: false, reason: 'bad_credentials' });
    expect((r as AuthFailure).detail).toMatch(/iat/);
  });

  it('refuses an ID token with another nonce', async () => {
    const a = client();
    const { start, callback } = await toCallback(a);
    const r = await a.completeLogin(callback, { ...start.pending, nonce: (await begin(a)).pending.nonce });
    expect(r).toMatchObject({
      ok: false,
      reason: 'bad_credentials',
      detail: 'oidc: ID token: nonce does not match the login',
    });
  });

  it('answers denied when the provider refused the user', async () => {
    const a = client();
    const start = await begin(a);
    const r = await a.completeLogin({ error: 'access_denied', state: start.pending.state }, start.pending);
    expect(r).toMatchObject({ ok: false, reason: 'denied', detail: 'oidc: provider answered access_denied' });
  });

  it('refuses a return naming another issuer', async () => {
    const a = client();
    const { start, callback } = await toCallback(a);
    expect(callback.iss).toBe(tp.issuer);
    const r = await a.completeLogin({ ...callback, iss: 'https://evil.example' }, start.pending);
    expect(r).toMatchObject({ ok: false, reason: 'bad_credentials' });
  });

  it('still verifies after the provider rotates its keys, fetching the keys once more', async () => {
    const a = client('floe', { jwksCooldownMs: 60_000 });
    let { start, callback } = await toCallback(a);
    expect(await a.completeLogin(callback, start.pending)).toMatchObject({ ok: true });
    const jwksBefore = tp.requests.get('/jwks') ?? 0;
    await tp.rotateKeys();
    expect(tp.kids).toEqual(['key-2', 'key-1']);
    let kid = '';
    tp.rewrite = (path, body) => {
      if (path === '/token')
        kid = (JSON.parse(Buffer.from(String(body.id_token).split('.')[0]!, 'base64url').toString()) as { kid: string })
          .kid;
      return undefined;
    };
    ({ start, callback } = await toCallback(a));
    const rotated = await a.completeLogin(callback, start.pending);
    expect(rotated, JSON.stringify(rotated)).toMatchObject({ ok: true });
    expect(kid).toBe('key-2');
    expect(tp.requests.get('/jwks')).toBe(jwksBefore + 1);
    // A known key id does not fetch the keys again.
    ({ start, callback } = await toCallback(a));
    expect(await a.completeLogin(callback, start.pending)).toMatchObject({ ok: true });
    expect(tp.requests.get('/jwks')).toBe(jwksBefore + 1);
  });

  it('fetches the keys for unknown key ids at most once per cooldown', async () => {
    const a = client('floe', { jwksCooldownMs: 60_000 });
    let { start, callback } = await toCallback(a);
    expect(await a.completeLogin(callback, start.pending)).toMatchObject({ ok: true });
    const jwksBefore = tp.requests.get('/jwks') ?? 0;
    let n = 0;
    tp.rewrite = (path, body) => {
      if (path !== '/token') return undefined;
      const [, p, s] = String(body.id_token).split('.');
      const h = Buffer.from(JSON.stringify({ alg: 'RS256', kid: `unknown-${n++}` })).toString('base64url');
      return { ...body, id_token: `${h}.${p}.${s}` };
    };
    for (let i = 0; i < 3; i++) {
      ({ start, callback } = await toCallback(a));
      const r = await a.completeLogin(callback, start.pending);
      expect(r).toMatchObject({ ok: false, reason: 'bad_credentials' });
    }
    expect(tp.requests.get('/jwks')).toBe(jwksBefore + 1);
  });

  it('uses the discovery document it fetched until it expires', async () => {
    const before = tp.requests.get('/.well-known/openid-configuration') ?? 0;
    const a = client();
    for (let i = 0; i < 3; i++) await begin(a);
    expect(tp.requests.get('/.well-known/openid-configuration')).toBe(before + 1);
  });
});

describe('OpenID Connect provider failures', () => {
  it('answers unavailable when nothing listens at the issuer', async () => {
    const a = new OidcAuthenticator({
      issuer: `http://127.0.0.1:${await freePort()}`,
      clientId: 'floe',
      redirectUri: tp.redirectUri,
    });
    const r = await a.beginLogin();
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect((r as AuthFailure).detail).toContain('ECONNREFUSED');
  });

  it('answers unavailable when the provider answers 503 or does not answer in time', async () => {
    tp.mode = () => 'error';
    expect(await client().beginLogin()).toMatchObject({
      ok: false,
      reason: 'unavailable',
      detail: 'oidc: discovery: HTTP 503',
    });
    tp.mode = () => 'hang';
    const t = Date.now();
    const r = await client('floe', { timeoutMs: 300 }).beginLogin();
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect((r as AuthFailure).detail).toContain('no answer within 300 ms');
    expect(Date.now() - t).toBeLessThan(2000);
  });

  it('stops waiting when the caller gives up, without ending the fetch others share', async () => {
    tp.mode = (path) => (path.startsWith('/.well-known') ? 'hang' : 'up');
    const a = client('floe', { timeoutMs: 1000 });
    const gaveUp = new AbortController();
    const t = Date.now();
    const [left, waited] = await Promise.all([
      a.beginLogin({ signal: gaveUp.signal }),
      a.beginLogin(),
      new Promise((r) => setTimeout(r, 100)).then(() => gaveUp.abort()),
    ]);
    expect(left).toMatchObject({ ok: false, reason: 'unavailable', detail: 'oidc: the caller gave up' });
    expect(waited).toMatchObject({ ok: false, reason: 'unavailable', detail: expect.stringContaining('1000 ms') });
    expect(Date.now() - t).toBeGreaterThanOrEqual(900);
  });

  it('answers unavailable when the token endpoint or the keys fail after discovery', async () => {
    for (const broken of ['/token', '/jwks']) {
      const a = client();
      const { start, callback } = await toCallback(a);
      tp.mode = (path) => (path === broken ? 'error' : 'up');
      const r = await a.completeLogin(callback, start.pending);
      expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
      expectClean(r as AuthFailure, callback.code);
      tp.mode = () => 'up';
    }
  });

  it('answers unavailable for a discovery document of another issuer, or without S256', async () => {
    tp.rewrite = (path, body) =>
      path.startsWith('/.well-known') ? { ...body, issuer: 'https://evil.example' } : undefined;
    expect(await client().beginLogin()).toMatchObject({ ok: false, reason: 'unavailable' });
    tp.rewrite = (path, body) =>
      path.startsWith('/.well-known') ? { ...body, code_challenge_methods_supported: ['plain'] } : undefined;
    expect(await client().beginLogin()).toMatchObject({ ok: false, reason: 'unavailable' });
    tp.rewrite = (path, body) => (path.startsWith('/.well-known') ? { ...body, token_endpoint: 42 } : undefined);
    expect(await client().beginLogin()).toMatchObject({ ok: false, reason: 'unavailable' });
  });

  it('answers unavailable when the provider refuses floe’s client secret', async () => {
    const a = client('floe', { clientSecret: 'wrong-secret' });
    const { start, callback } = await toCallback(a);
    const r = await a.completeLogin(callback, start.pending);
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect((r as AuthFailure).detail).toContain('invalid_client');
    expectClean(r as AuthFailure, 'wrong-secret', callback.code);
  });

  it('takes a missing groups claim as no groups, a single name as one group', async () => {
    const a = client('floe', { claims: { groups: 'no_such_claim' } });
    const b = client('floe', { claims: { groups: 'azp_or_aud_is_not_used', username: 'sub' } });
    for (const [x, groups] of [
      [a, []],
      [client('floe', { claims: { groups: 'preferred_username' } }), ['alice']],
    ] as const) {
      const { start, callback } = await toCallback(x);
      expect(await x.completeLogin(callback, start.pending)).toMatchObject({ ok: true, groups });
    }
    const { start, callback } = await toCallback(b);
    expect(await b.completeLogin(callback, start.pending)).toMatchObject({ ok: true, username: 'u-1001' });
  });

  it('answers unavailable for a groups claim that is not a list of names', async () => {
    const a = client();
    const { start, callback } = await toCallback(a, 'mallory');
    const r = await a.completeLogin(callback, start.pending);
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect((r as AuthFailure).detail).toContain('ID token claim groups refused');
  });
});

describe('OpenID Connect configuration', () => {
  it('is an entry of the chain that answers passwords with unknown_user', async () => {
    const config = parseAuthConfig({
      chain: [
        {
          kind: 'oidc',
          issuer: tp.issuer,
          clientId: 'floe',
          clientSecret: 'floe-secret-basic',
          redirectUri: tp.redirectUri,
          claims: { groups: 'groups' },
        },
      ],
    });
    const chain = buildAuthChain(config);
    expect(await chain.verifyPassword('alice', 'pw')).toMatchObject({ ok: false, reason: 'unknown_user' });
  });

  it('refuses plain http to another host, a secret with a public client, and unknown settings', () => {
    const base = {
      kind: 'oidc',
      issuer: 'https://id.example.org',
      clientId: 'floe',
      redirectUri: 'https://floe.example.org/cb',
    };
    expect(() => parseAuthConfig({ chain: [base] })).not.toThrow();
    expect(() => parseAuthConfig({ chain: [{ ...base, issuer: 'http://id.example.org' }] })).toThrow(
      /chain\/0\/issuer/,
    );
    expect(() => parseAuthConfig({ chain: [{ ...base, clientAuth: 'none', clientSecret: 's3cret' }] })).toThrow(
      /clientAuth/,
    );
    expect(() => parseAuthConfig({ chain: [{ ...base, clientAuth: 'client_secret_post' }] })).toThrow(
      /needs clientSecret/,
    );
    expect(() => parseAuthConfig({ chain: [{ ...base, clientSecret: 'a', clientSecretFile: 'b' }] })).toThrow(
      /at most one/,
    );
    expect(() => parseAuthConfig({ chain: [{ ...base, pkce: false }] })).toThrow(/not a known setting/);
    try {
      parseAuthConfig({ chain: [{ ...base, clientSecret: 7 }] });
    } catch (err) {
      expect((err as Error).message).not.toContain('7');
    }
  });
});
