import https from 'node:https';
import { isErrorCode } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { storeTargets } from '../db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

/** '' for every limit: the production defaults, not the test harness's. */
const PRODUCTION_LIMITS = { FLOE_RATE_LIMIT_PUBLIC: '', FLOE_RATE_LIMIT_JOIN: '', FLOE_RATE_LIMIT_AUTH_FAILURES: '' };

/** A GET over a real TLS socket: status, headers, body. */
function httpsGet(
  cp: TestControlPlane,
  path: string,
  token?: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${cp.url}${path}`,
      { method: 'GET', ca: cp.ca.certPem, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** A 429 in the envelope with `rate_limited` and a Retry-After of whole seconds within the window. */
function expectLimited(status: number, headers: Record<string, unknown>, body: string): void {
  expect(status, body).toBe(429);
  expect(String(headers['content-type'])).toMatch(/^application\/json/);
  const parsed = JSON.parse(body) as { error: { code: string; message: string } };
  expect(parsed.error.code).toBe('rate_limited');
  expect(isErrorCode(parsed.error.code)).toBe(true);
  const retry = Number(headers['retry-after']);
  expect(Number.isInteger(retry) && retry >= 1 && retry <= 60, `Retry-After ${String(headers['retry-after'])}`).toBe(
    true,
  );
}

describe('rate limits with the production defaults', () => {
  let cp: TestControlPlane;
  const limits = loadConfig({}).rateLimits;
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open(), PRODUCTION_LIMITS);
  });
  afterAll(async () => {
    await cp?.close();
  });

  /** A request from `address`, through the whole HTTP stack. */
  const from = (address: string, method: 'GET' | 'POST', url: string, token?: string, payload?: unknown) =>
    cp.app.http.inject({
      method,
      url,
      remoteAddress: address,
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
    });
  const limited = (res: Awaited<ReturnType<typeof from>>) => expectLimited(res.statusCode, res.headers, res.body);

  it('are the documented defaults', () => {
    expect(limits).toEqual({ windowMs: 60_000, publicRequests: 300, joins: 10, authFailures: 30 });
    expect(cp.config.rateLimits).toEqual(limits);
  });

  it('never count requests with a valid token', async () => {
    for (let i = 0; i < limits.authFailures * 3; i++) {
      const res = await from('192.0.2.1', 'GET', '/v1/projects', cp.adminToken);
      expect(res.statusCode, res.body).toBe(200);
    }
  });

  it('slow token guessing: past the failures allowed, the address is refused before its token is checked', async () => {
    for (let i = 0; i <= limits.authFailures; i++) {
      const res = await from('192.0.2.2', 'GET', '/v1/projects', `floe_guess${i}`);
      expect(res.statusCode, `attempt ${i + 1}`).toBe(401);
    }
    limited(await from('192.0.2.2', 'GET', '/v1/projects', 'floe_another-guess'));
    // Even the right token: a guess that hits is not told apart from one that misses.
    limited(await from('192.0.2.2', 'GET', '/v1/projects', cp.adminToken));
    // Another address is not affected.
    expect((await from('192.0.2.3', 'GET', '/v1/projects', cp.adminToken)).statusCode).toBe(200);
  });

  it('agent endpoints count requests without a host certificate as failed authentications', async () => {
    for (let i = 0; i <= limits.authFailures; i++) {
      const res = await from('192.0.2.7', 'GET', '/v1/agent/images/img_x');
      expect(res.statusCode, res.body).toBe(401);
    }
    limited(await from('192.0.2.7', 'GET', '/v1/agent/images/img_x'));
  });

  it('host joins', async () => {
    const body = { token: 'floejoin_not-a-real-one', name: 'node-x', csr: 'x'.repeat(200) };
    for (let i = 0; i < limits.joins; i++) {
      const res = await from('192.0.2.4', 'POST', '/v1/hosts/join', undefined, body);
      expect(res.statusCode, res.body).toBeLessThan(429);
    }
    limited(await from('192.0.2.4', 'POST', '/v1/hosts/join', undefined, body));
    expect((await from('192.0.2.5', 'POST', '/v1/hosts/join', undefined, body)).statusCode).not.toBe(429);
  });

  it('the other unauthenticated endpoints: /healthz, the OpenAPI document and /docs share one count', async () => {
    const urls = ['/healthz', '/v1/openapi.json', '/docs/json', '/docs/static/index.html'];
    const statuses = new Set<number>();
    for (let i = 0; i < limits.publicRequests; i++) {
      const res = await from('192.0.2.6', 'GET', urls[i % urls.length]!);
      statuses.add(res.statusCode);
    }
    expect([...statuses]).not.toContain(429);
    for (const url of urls) limited(await from('192.0.2.6', 'GET', url));
  });

  it('over a real socket, keyed by the client address', async () => {
    for (let i = 0; i <= limits.authFailures; i++)
      expect((await httpsGet(cp, '/v1/projects', 'floe_x')).status).toBe(401);
    const res = await httpsGet(cp, '/v1/projects', cp.adminToken);
    expectLimited(res.status, res.headers, res.body);
  });
});

describe('rate limit settings', () => {
  it('are read from FLOE_RATE_LIMIT_*; 0 turns one off; nonsense fails at start', () => {
    const c = loadConfig({
      FLOE_RATE_LIMIT_WINDOW_S: '10',
      FLOE_RATE_LIMIT_PUBLIC: '0',
      FLOE_RATE_LIMIT_JOIN: '3',
      FLOE_RATE_LIMIT_AUTH_FAILURES: '5',
    });
    expect(c.rateLimits).toEqual({ windowMs: 10_000, publicRequests: 0, joins: 3, authFailures: 5 });
    expect(() => loadConfig({ FLOE_RATE_LIMIT_JOIN: 'lots' })).toThrow(/FLOE_RATE_LIMIT_JOIN/);
    expect(() => loadConfig({ FLOE_RATE_LIMIT_WINDOW_S: '0' })).toThrow(/FLOE_RATE_LIMIT_WINDOW_S/);
  });
});
