import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FloeApiError, type FloeClient } from '@floe/client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runWithClient, sampleUser } from '../testing.js';

const USER = sampleUser({ display_name: '', email: null });
const SESSION = { token: 'floe_session', token_id: 'tok_1', expires_at: '2025-01-02T12:00:00.000Z', user: USER };

let dir: string;
let cfg: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'floe-cli-login-'));
  cfg = join(dir, 'config.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A client that records calls; `login` answers from the queue (an Error is thrown). */
function fakeClient(logins: Array<typeof SESSION | Error> = []) {
  const calls: unknown[][] = [];
  const client = {
    health: () => Promise.resolve({ status: 'ok', version: '0.1.0' }),
    projects: { list: () => Promise.resolve({ items: [], next_cursor: null }), get: () => Promise.resolve({}) },
    auth: {
      login: (body: unknown) => {
        calls.push(['auth.login', body]);
        const next = logins.shift() ?? SESSION;
        return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
      },
      logout: () => {
        calls.push(['auth.logout']);
        return Promise.resolve();
      },
    },
    users: {
      totpEnrol: () => {
        calls.push(['users.totpEnrol']);
        return Promise.resolve({
          secret: 'JBSWY3DPEHPK3PXP',
          uri: 'otpauth://totp/floe:ada?secret=JBSWY3DPEHPK3PXP',
          qr_terminal: '█▀▀▀▀▀█ QR',
          qr_png_base64: 'iVBORw0KGgo=',
          recovery_codes: ['abcd-efgh-jkmn', 'pqrs-tuvw-xyz2'],
        });
      },
      totpConfirm: (code: string) => (calls.push(['users.totpConfirm', code]), Promise.resolve()),
      totpDisable: (code: string) => (calls.push(['users.totpDisable', code]), Promise.resolve()),
      totpReset: (ref: string) => (calls.push(['users.totpReset', ref]), Promise.resolve()),
    },
    close: () => Promise.resolve(),
  };
  return { client: client as unknown as FloeClient, calls };
}

const env = () => ({ FLOE_CONFIG: cfg, FLOE_URL: '', FLOE_TOKEN: '' });
const totpRequired = () =>
  new FloeApiError({
    status: 401,
    code: 'totp_required',
    message: 'this user has TOTP: send the login again with totp_code',
  });

describe('floe login with a password', () => {
  it('asks for the username, the password (not echoed) and the TOTP code the server asks for, and saves the session', async () => {
    const { client, calls } = fakeClient([totpRequired(), SESSION]);
    const asked: string[] = [];
    const answers: Record<string, string> = {
      Username: 'ada',
      Password: 'pw of ada',
      'TOTP code (or a recovery code)': '123456',
    };
    const r = await runWithClient(['login', 'https://floe.example:8443', '--context', 'prod'], client, {
      env: env(),
      prompt: (q, o) => {
        asked.push(`${q}${o.secret ? ' (secret)' : ''}`);
        return Promise.resolve(answers[q]!);
      },
    });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(asked).toEqual(['Username', 'Password (secret)', 'TOTP code (or a recovery code)']);
    expect(calls).toEqual([
      ['auth.login', { username: 'ada', password: 'pw of ada', session_name: 'cli' }],
      ['auth.login', { username: 'ada', password: 'pw of ada', totp_code: '123456', session_name: 'cli' }],
    ]);
    expect(r.out).toContain('as ada, session until 2025-01-02T12:00:00.000Z');
    expect(JSON.parse(readFileSync(cfg, 'utf8')).contexts.prod).toEqual({
      url: 'https://floe.example:8443',
      token: 'floe_session',
    });
  });

  it('takes everything from flags and the environment in scripts, asking nothing', async () => {
    const { client, calls } = fakeClient();
    const r = await runWithClient(
      ['login', 'https://floe.example:8443', '--username', 'ada', '--totp', '654321'],
      client,
      {
        env: { ...env(), FLOE_PASSWORD: 'pw from env' },
      },
    );
    expect(r.code).toBe(0);
    expect(calls).toEqual([
      ['auth.login', { username: 'ada', password: 'pw from env', totp_code: '654321', session_name: 'cli' }],
    ]);
  });

  it('reads the password from stdin with --password-stdin', async () => {
    const { client, calls } = fakeClient();
    const r = await runWithClient(
      ['login', 'https://floe.example:8443', '--username', 'ada', '--password-stdin'],
      client,
      {
        env: env(),
        stdin: 'pw from stdin\n',
      },
    );
    expect(r.code).toBe(0);
    expect(calls[0]).toEqual(['auth.login', { username: 'ada', password: 'pw from stdin', session_name: 'cli' }]);
  });

  it('without a terminal says how to give what it cannot ask for, and saves nothing on a refused login', async () => {
    const { client } = fakeClient();
    const r = await runWithClient(['login', 'https://floe.example:8443'], client, { env: env() });
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('--username');
    const refused = fakeClient([
      new FloeApiError({
        status: 401,
        code: 'invalid_credentials',
        message: 'the username, password or code is wrong',
      }),
    ]);
    const bad = await runWithClient(['login', 'https://floe.example:8443', '--username', 'ada'], refused.client, {
      env: { ...env(), FLOE_PASSWORD: 'wrong' },
    });
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('invalid_credentials');
    expect(() => readFileSync(cfg)).toThrow();
  });
});

describe('floe logout', () => {
  it('revokes the session and removes the token from the context', async () => {
    writeFileSync(
      cfg,
      JSON.stringify({
        current: 'prod',
        contexts: { prod: { url: 'https://floe.example:8443', token: 'floe_session' } },
      }),
    );
    const { client, calls } = fakeClient();
    const r = await runWithClient(['logout'], client, { env: env() });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(calls).toEqual([['auth.logout']]);
    expect(JSON.parse(readFileSync(cfg, 'utf8')).contexts.prod).toEqual({ url: 'https://floe.example:8443' });
  });
});

describe('floe user totp', () => {
  it('enrol prints the QR code, the URI and the recovery codes; confirm, disable and reset pass the code or user on', async () => {
    const { client, calls } = fakeClient();
    const e = await runWithClient(['user', 'totp', 'enrol'], client);
    expect(e.code).toBe(0);
    expect(e.out).toContain('█▀▀▀▀▀█ QR');
    expect(e.out).toContain('otpauth://totp/floe:ada');
    expect(e.out).toContain('abcd-efgh-jkmn');
    expect((await runWithClient(['user', 'totp', 'confirm', '123456'], client)).code).toBe(0);
    expect((await runWithClient(['user', 'totp', 'disable', '654321'], client)).code).toBe(0);
    expect((await runWithClient(['user', 'totp', 'reset', 'bob'], client)).code).toBe(0);
    expect(calls).toEqual([
      ['users.totpEnrol'],
      ['users.totpConfirm', '123456'],
      ['users.totpDisable', '654321'],
      ['users.totpReset', 'bob'],
    ]);
  });
});
