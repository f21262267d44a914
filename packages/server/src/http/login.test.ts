import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { generate } from 'otplib';
import { freePort } from '@floe/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { storeTargets } from '../db/testing.js';
import { startTestControlPlane, injectJson, type TestControlPlane } from '../testing.js';

const PASSWORD = 'correct horse battery';
const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

/** A login over the full HTTP stack, without a token. */
async function login(cp: TestControlPlane, body: Record<string, unknown>) {
  const res = await cp.app.http.inject({
    method: 'POST',
    url: '/v1/auth/login',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  });
  return { status: res.statusCode, headers: res.headers, text: res.body, body: JSON.parse(res.body) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe('POST /v1/auth/login and logout over HTTP', () => {
  let cp: TestControlPlane;
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open(), { FLOE_LOGIN_MAX_FAILURES_PER_USER: '3' });
    for (const name of ['hana', 'ivo'])
      expect((await injectJson(cp, 'POST', '/v1/users', { name, password: PASSWORD })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await cp?.close();
  });

  it('answers a session token, then the same 401 for unknown users and wrong passwords, then 429 with Retry-After', async () => {
    const ok = await login(cp, { username: 'hana', password: PASSWORD, session_name: 'cli' });
    expect(ok.status).toBe(200);
    expect(Object.keys(ok.body).sort()).toEqual(['expires_at', 'token', 'token_id', 'user']);
    expect(ok.body.token).toMatch(/^floe_/);
    expect((await injectJson(cp, 'GET', '/v1/users/me', undefined, ok.body.token)).body.name).toBe('hana');

    const unknown = await login(cp, { username: 'nobody-here', password: PASSWORD });
    const wrong = await login(cp, { username: 'hana', password: 'not the password' });
    expect(unknown.status).toBe(401);
    expect(unknown.body.error.code).toBe('invalid_credentials');
    expect(wrong.text).toBe(unknown.text);
    await login(cp, { username: 'hana', password: 'not the password' });
    await login(cp, { username: 'hana', password: 'not the password' });
    const locked = await login(cp, { username: 'hana', password: PASSWORD });
    expect(locked.status).toBe(429);
    expect(locked.body.error.code).toBe('rate_limited');
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(14 * 60);

    expect((await injectJson(cp, 'POST', '/v1/auth/logout', undefined, ok.body.token)).status).toBe(204);
    expect((await injectJson(cp, 'GET', '/v1/users/me', undefined, ok.body.token)).status).toBe(401);
  });

  it('enrols TOTP over HTTP, asks for it at login, and records every step in the audit log', async () => {
    const session = (await login(cp, { username: 'ivo', password: PASSWORD })).body.token as string;
    const enrol = await injectJson(cp, 'POST', '/v1/users/me/totp', undefined, session);
    expect(enrol.status).toBe(201);
    expect(enrol.body.qr_terminal.length).toBeGreaterThan(100);
    const into = Date.now() % 30_000;
    if (into > 26_000) await new Promise((r) => setTimeout(r, 30_000 - into + 200));
    const now = Date.now();
    const code = (ms: number) => generate({ secret: enrol.body.secret, epoch: Math.floor(ms / 1000), period: 30 });
    expect(
      (await injectJson(cp, 'POST', '/v1/users/me/totp/confirm', { code: await code(now - 30_000) }, session)).status,
    ).toBe(204);

    const required = await login(cp, { username: 'ivo', password: PASSWORD });
    expect([required.status, required.body.error.code]).toEqual([401, 'totp_required']);
    const bad = await login(cp, { username: 'ivo', password: PASSWORD, totp_code: 'abcd-efgh-jkmn' });
    expect([bad.status, bad.body.error.code]).toEqual([401, 'invalid_credentials']);
    const good = await login(cp, { username: 'ivo', password: PASSWORD, totp_code: await code(now) });
    expect(good.status).toBe(200);
    expect((await injectJson(cp, 'POST', '/v1/auth/logout', undefined, good.body.token)).status).toBe(204);
    expect((await injectJson(cp, 'DELETE', '/v1/users/ivo/totp', undefined, session)).status).toBe(403);
    expect((await injectJson(cp, 'DELETE', '/v1/users/ivo/totp')).status).toBe(204);
    expect((await login(cp, { username: 'ivo', password: PASSWORD })).status).toBe(200);

    await cp.app.services.audit.flush();
    const rows = await cp.store.db
      .selectFrom('audit_log')
      .select([
        'action',
        'reason',
        'user_name',
        'authenticator',
        'source_address',
        'outcome',
        'token_id',
        'resource_kind',
        'resource_id',
      ])
      .where('action', 'like', 'auth.%')
      .where('user_name', '=', 'ivo')
      .orderBy('id')
      .execute();
    expect(rows.map((r) => `${r.action}:${r.reason ?? ''}:${r.outcome}`)).toEqual([
      'auth.login::ok',
      'auth.login_failed:totp_required:error',
      'auth.totp_failed:bad_code:error',
      'auth.login::ok',
      'auth.logout::ok',
      'auth.login::ok',
    ]);
    for (const r of rows) expect(r.source_address).toBe('127.0.0.1');
    // A login names the session it made, as token and as resource; a logout the session it ended.
    expect(rows[0]!.token_id).toMatch(/^tok_/);
    expect([rows[0]!.resource_kind, rows[0]!.resource_id]).toEqual(['token', rows[0]!.token_id]);
    expect(rows[4]!.resource_id).toBe(rows[3]!.token_id);
    expect(rows[1]!.resource_kind).toBe('user');
    expect(rows.filter((r) => r.action !== 'auth.logout').every((r) => r.authenticator === 'local')).toBe(true);
    const failed = await cp.store.db
      .selectFrom('audit_log')
      .select(['reason', 'user_name'])
      .where('action', '=', 'auth.login_failed')
      .where('reason', '=', 'unknown_user')
      .execute();
    expect(failed.length).toBeGreaterThan(0);
    expect(failed[0]!.user_name).toBeNull();
  }, 60_000);
});

describe('no user enumeration through timing', () => {
  let cp: TestControlPlane;
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open(), {
      FLOE_LOGIN_MAX_FAILURES_PER_USER: '0',
      FLOE_LOGIN_MAX_FAILURES_PER_ADDRESS: '0',
    });
    await injectJson(cp, 'POST', '/v1/users', { name: 'jan', password: PASSWORD });
  }, 60_000);
  afterAll(async () => {
    await cp?.close();
  });

  it('takes about as long to refuse an unknown user as a wrong password', async () => {
    const unknown: number[] = [];
    const wrong: number[] = [];
    const timed = async (body: Record<string, unknown>, into: number[]) => {
      const t0 = performance.now();
      const res = await login(cp, body);
      into.push(performance.now() - t0);
      return res.text;
    };
    // Warm up (the dummy hash is made on first use), then interleave.
    await timed({ username: 'nobody', password: 'x' }, []);
    const answers = new Set<string>();
    for (let i = 0; i < 15; i++) {
      answers.add(await timed({ username: `nobody-${i}`, password: 'wrong password' }, unknown));
      answers.add(await timed({ username: 'jan', password: 'wrong password' }, wrong));
    }
    expect(answers.size).toBe(1);
    const ratio = median(unknown) / median(wrong);
    console.log(
      `login refusal medians: unknown ${median(unknown).toFixed(1)} ms, wrong password ${median(wrong).toFixed(1)} ms`,
    );
    expect(ratio).toBeGreaterThan(1 / 3);
    expect(ratio).toBeLessThan(3);
  }, 120_000);
});

describe('a backend that does not answer', () => {
  let cp: TestControlPlane;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-login-down-'));
    const file = path.join(dir, 'auth.json');
    await writeFile(
      file,
      JSON.stringify({
        chain: [
          { kind: 'local' },
          {
            kind: 'ldap',
            name: 'down',
            url: `ldap://127.0.0.1:${await freePort()}`,
            timeoutMs: 1000,
            bind: { mode: 'template', dnTemplate: 'uid={username},dc=x' },
          },
        ],
      }),
    );
    cp = await startTestControlPlane(await sqlite.open(), { FLOE_AUTH_CONFIG: file });
    await injectJson(cp, 'POST', '/v1/users', { name: 'kai', password: PASSWORD });
  }, 60_000);
  afterAll(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 503 when the user may live there, and does not count it as a failure', async () => {
    for (let i = 0; i < 6; i++) {
      const down = await login(cp, { username: 'in-ldap', password: PASSWORD });
      expect([down.status, down.body.error.code]).toEqual([503, 'auth_unavailable']);
    }
    // Local users are answered by the local entry first: a right password works, a wrong one is 401.
    expect((await login(cp, { username: 'kai', password: PASSWORD })).status).toBe(200);
    expect((await login(cp, { username: 'kai', password: 'wrong password' })).body.error.code).toBe(
      'invalid_credentials',
    );
    await cp.app.services.audit.flush();
    const rows = await cp.store.db
      .selectFrom('audit_log')
      .select(['reason', 'authenticator'])
      .where('action', '=', 'auth.login_failed')
      .where('reason', '=', 'unavailable')
      .execute();
    expect(rows.length).toBe(6);
    expect(rows[0]!.authenticator).toBe('down');
  }, 60_000);
});

describe('FLOE_AUTH_CONFIG', () => {
  it('defaults to local passwords and stops the start on a bad file, naming the place', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'floe-authcfg-'));
    try {
      expect(loadConfig({ FLOE_DATA: dir }).auth.chain).toEqual([{ kind: 'local' }]);
      const file = path.join(dir, 'auth.json');
      await writeFile(
        file,
        JSON.stringify({ chain: [{ kind: 'local' }, { kind: 'ldap', url: 'http://x', bind: {} }] }),
      );
      expect(() => loadConfig({ FLOE_DATA: dir, FLOE_AUTH_CONFIG: file })).toThrow(`${file}/chain/1/url`);
      await writeFile(file, '{ not json');
      expect(() => loadConfig({ FLOE_DATA: dir, FLOE_AUTH_CONFIG: file })).toThrow(
        /FLOE_AUTH_CONFIG .*auth\.json is not valid JSON/,
      );
      expect(() => loadConfig({ FLOE_DATA: dir, FLOE_AUTH_CONFIG: path.join(dir, 'missing.json') })).toThrow(
        /cannot be read: ENOENT/,
      );
      await writeFile(file, JSON.stringify({ chain: [{ kind: 'htpasswd', file: 'users' }] }));
      expect(loadConfig({ FLOE_DATA: dir, FLOE_AUTH_CONFIG: file }).authBaseDir).toBe(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
