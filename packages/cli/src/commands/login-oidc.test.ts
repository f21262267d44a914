import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LoginSession, OidcLoginStarted, OidcPollPending } from '@floe/api';
import { FloeApiError, type FloeClient } from '@floe/client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runWithClient, sampleUser } from '../testing.js';

const ada = sampleUser({ has_password: false });
const STARTED: OidcLoginStarted = {
  login_id: 'lgn_AAAAAAAAAAAAAAAAAAAAAA',
  authorization_url: 'https://id.example.org/auth?client_id=floe&state=s1',
  poll_secret: 'poll-secret-1',
  user_code: 'BCDF-GHJK',
  expires_at: new Date(Date.now() + 600_000).toISOString(),
};
const SESSION: LoginSession = { token: 'floe_session_1', expires_at: '2030-01-01T00:00:00.000Z', user: ada };
const PENDING: OidcPollPending = { status: 'pending', expires_at: STARTED.expires_at };

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'floe-cli-oidc-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A client whose polls answer `answers` in turn (the last one again), recording every call. */
function fakeClient(answers: (OidcPollPending | LoginSession | Error)[]) {
  const calls: unknown[][] = [];
  let i = 0;
  const client = {
    health: () => (calls.push(['health']), Promise.resolve({ status: 'ok', version: '9.9.9' })),
    oidc: {
      start: (...args: unknown[]) => (calls.push(['oidc.start', ...args]), Promise.resolve(STARTED)),
      poll: (...args: unknown[]) => {
        calls.push(['oidc.poll', ...args]);
        const a = answers[Math.min(i++, answers.length - 1)]!;
        return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
      },
    },
    close: () => Promise.resolve(),
  } as unknown as FloeClient;
  return { client, calls };
}

describe('floe login --oidc', () => {
  it('prints the URL, polls until the browser login is done, and saves the session in a context', async () => {
    const { client, calls } = fakeClient([PENDING, PENDING, SESSION]);
    const config = join(dir, 'config.json');
    const r = await runWithClient(
      ['login', 'https://floe.example:8443', '--oidc', 'corp-sso', '--context', 'work', '--poll-ms', '10'],
      client,
      { env: { FLOE_CONFIG: config, FLOE_TOKEN: '' } },
    );
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain(STARTED.authorization_url);
    expect(r.err).toContain('enter this code: BCDF-GHJK');
    expect(r.err).toContain('waiting for the login');
    expect(r.out).toContain('as ada until 2030-01-01T00:00:00.000Z; context "work"');
    expect(r.out).not.toContain('floe_session_1');
    expect(calls).toEqual([
      ['health'],
      ['oidc.start', 'corp-sso', { session_name: 'floe-cli' }],
      ['oidc.poll', STARTED.login_id, STARTED.poll_secret],
      ['oidc.poll', STARTED.login_id, STARTED.poll_secret],
      ['oidc.poll', STARTED.login_id, STARTED.poll_secret],
    ]);
    const saved = JSON.parse(readFileSync(config, 'utf8')) as {
      current: string;
      contexts: Record<string, { url: string; token: string }>;
    };
    expect(saved.current).toBe('work');
    expect(saved.contexts.work).toEqual({ url: 'https://floe.example:8443', token: 'floe_session_1' });
  });

  it('asks again when the server is busy or briefly unreachable', async () => {
    const busy = new FloeApiError({ status: 429, code: 'rate_limited', message: 'too many requests' });
    const gone = new FloeApiError({ status: 0, code: 'network_error', message: 'ECONNRESET' });
    const { client, calls } = fakeClient([busy, gone, PENDING, SESSION]);
    const r = await runWithClient(
      ['login', 'https://floe.example:8443', '--oidc', 'corp-sso', '--poll-ms', '10'],
      client,
      { env: { FLOE_CONFIG: join(dir, 'c.json') } },
    );
    expect(r.code, r.err).toBe(0);
    expect(calls.filter((c) => c[0] === 'oidc.poll')).toHaveLength(4);
  });

  it('with -o json prints only the result on stdout', async () => {
    const { client } = fakeClient([SESSION]);
    const r = await runWithClient(['login', 'https://floe.example:8443', '--oidc', 'corp-sso', '-o', 'json'], client, {
      env: { FLOE_CONFIG: join(dir, 'c.json') },
    });
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ context: 'floe.example', user: 'ada', version: '9.9.9' });
  });

  it('gives up after --timeout and saves nothing', async () => {
    const { client } = fakeClient([PENDING]);
    const config = join(dir, 'config.json');
    const t = Date.now();
    const r = await runWithClient(
      ['login', 'https://floe.example:8443', '--oidc', 'corp-sso', '--timeout', '1', '--poll-ms', '50'],
      client,
      { env: { FLOE_CONFIG: config } },
    );
    expect(r.code).toBe(1);
    expect(r.err).toContain('(login_timeout)');
    expect(Date.now() - t).toBeGreaterThanOrEqual(900);
    expect(() => readFileSync(config)).toThrow();
  });

  it('reports a refused login with the server’s code', async () => {
    const refused = new FloeApiError({
      status: 401,
      code: 'login_failed',
      message: 'The identity provider refused the login (access_denied).',
    });
    const { client } = fakeClient([PENDING, refused]);
    const r = await runWithClient(
      ['login', 'https://floe.example:8443', '--oidc', 'corp-sso', '--poll-ms', '10'],
      client,
      { env: { FLOE_CONFIG: join(dir, 'c.json') } },
    );
    expect(r.code).toBe(1);
    expect(r.err).toContain('access_denied');
    expect(r.err).toContain('login_failed');
  });

  it('refuses --token with --oidc, and a bad --timeout', async () => {
    const { client, calls } = fakeClient([SESSION]);
    const both = await runWithClient(['login', 'https://x.example', '--oidc', 'a', '--token', 't'], client);
    expect(both.code).toBe(2);
    const bad = await runWithClient(['login', 'https://x.example', '--oidc', 'a', '--timeout', '0'], client);
    expect(bad.code).toBe(2);
    expect(calls).toEqual([]);
  });
});
