import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { authenticatorContract } from '@floe/testkit/auth-contract';
import { freePort } from '@floe/testkit';
import { ExternalChecker, type CheckerOptions } from './checker.js';
import { mapRoles } from './roles.js';

type Handler = (body: Record<string, unknown>, res: http.ServerResponse) => void;

/** A real HTTP checker on 127.0.0.1 whose behaviour each test sets. */
let server: http.Server;
let url: string;
let handler: Handler;
const seen: Record<string, unknown>[] = [];
const seenHeaders: http.IncomingHttpHeaders[] = [];

const USERS: Record<string, string> = { alice: 'alice pw' };

/** The checker's default behaviour: Basic credentials for logins, a bearer token for requests. */
const sensible: Handler = (body, res) => {
  const auth = typeof body.authorization === 'string' ? body.authorization : '';
  const json = (v: unknown): void => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(v));
  };
  if (auth.startsWith('Basic ')) {
    const [user, ...rest] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
    const pw = rest.join(':');
    if (!(user! in USERS)) return json({ allow: false, reason: 'unknown_user' });
    if (USERS[user!] !== pw) return json({ allow: false, reason: 'bad_credentials' });
    return json({ allow: true, user: { subject: user, groups: ['staff'] } });
  }
  if (auth === 'Bearer good') {
    return json({
      allow: true,
      user: { subject: 'svc', displayName: 'Service', email: 'svc@example.org' },
      roles: [{ role: 'member', project: String(body.project) }, { role: 'operator' }],
    });
  }
  json({ allow: false });
};

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString()));
    req.on('end', () => {
      if (req.url === '/elsewhere') {
        // Where the redirect case points: an answer that must not be followed to.
        res.writeHead(200).end('{"allow":true,"user":{"subject":"redirected"}}');
        return;
      }
      const body = JSON.parse(data) as Record<string, unknown>;
      seen.push(body);
      seenHeaders.push(req.headers);
      handler(body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/check`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});
beforeEach(() => {
  handler = sensible;
  seen.length = 0;
  seenHeaders.length = 0;
});

authenticatorContract('external checker', async () => {
  handler = sensible;
  return {
    authenticator: new ExternalChecker({ url, cacheTtlMs: 0, negativeCacheTtlMs: 0 }),
    user: { username: 'alice', password: 'alice pw', subject: 'alice', groups: ['staff'] },
    unavailable: async () => new ExternalChecker({ url: `http://127.0.0.1:${await freePort()}/check` }),
    timing: false,
    cleanup: async () => {},
  };
});

describe('external checker', () => {
  const checker = (o: Partial<CheckerOptions> = {}): ExternalChecker =>
    new ExternalChecker({ url, timeoutMs: 500, ...o });
  const request = { authorization: 'Bearer good', method: 'GET', path: '/v1/instances', project: 'web' } as const;

  it('sends the header with the request details and takes the user and roles it answers', async () => {
    const r = await checker({ headers: { 'x-floe-checker-key': 'k1' } }).check({ ...request, resource: 'inst_1' });
    expect(seen).toEqual([{ purpose: 'request', ...request, resource: 'inst_1' }]);
    expect(seenHeaders[0]!['x-floe-checker-key']).toBe('k1');
    expect(r).toEqual({
      ok: true,
      authenticator: 'checker',
      subject: 'svc',
      displayName: 'Service',
      email: 'svc@example.org',
      groups: [],
      roles: [{ role: 'member', project: 'web' }, { role: 'operator' }],
    });
    if (r.ok) expect(mapRoles(r, {})).toEqual({ operator: true, projects: { web: 'member' } });
    expect(await checker().check({ ...request, authorization: 'Bearer bad' })).toMatchObject({
      ok: false,
      reason: 'denied',
    });
  });

  it('reuses an allow and a deny for their TTLs, apart per header and request, within a bounded cache', async () => {
    let now = 1_000_000;
    const c = checker({ now: () => now, cacheTtlMs: 10_000, negativeCacheTtlMs: 2000, cacheEntries: 2 });
    await c.check(request);
    await c.check(request);
    expect(seen).toHaveLength(1);
    await c.check({ ...request, project: 'other' });
    expect(seen).toHaveLength(2);
    await c.check({ ...request, authorization: 'Bearer bad' });
    await c.check({ ...request, authorization: 'Bearer bad' });
    expect(seen).toHaveLength(3);
    // Three answers, room for two: the first one was dropped.
    await c.check(request);
    expect(seen).toHaveLength(4);
    now += 2500; // the deny expired, the allow not yet
    await c.check({ ...request, authorization: 'Bearer bad' });
    expect(seen).toHaveLength(5);
    now += 10_000;
    await c.check(request);
    expect(seen).toHaveLength(6);
  });

  it('asks once for a burst of the same question, and apart for different ones', async () => {
    const c = checker({ cacheTtlMs: 10_000 });
    const answers = await Promise.all([
      ...Array.from({ length: 20 }, () => c.check(request)),
      c.check({ ...request, project: 'other' }),
    ]);
    expect(answers.every((a) => a.ok)).toBe(true);
    expect(seen).toHaveLength(2);
    // A failed answer is shared by the burst that waited for it, and not kept for the next one.
    handler = () => {};
    const down = checker({ timeoutMs: 200 });
    const failed = await Promise.all(Array.from({ length: 5 }, () => down.check({ ...request, project: 'x' })));
    expect(failed.every((a) => !a.ok && a.reason === 'unavailable')).toBe(true);
    expect(seen).toHaveLength(3);
    handler = sensible;
    expect(await down.check({ ...request, project: 'x' })).toMatchObject({ ok: true });
    expect(seen).toHaveLength(4);
  });

  const broken: [string, Handler][] = [
    ['a 500', (_b, res) => res.writeHead(500).end('{"allow":true,"user":{"subject":"x"}}')],
    ['a 403', (_b, res) => res.writeHead(403).end('{"allow":true,"user":{"subject":"x"}}')],
    ['a 204', (_b, res) => res.writeHead(204).end()],
    ['a redirect', (_b, res) => res.writeHead(307, { location: url.replace('/check', '/elsewhere') }).end()],
    ['no JSON', (_b, res) => res.writeHead(200).end('allow')],
    ['allow as a string', (_b, res) => res.writeHead(200).end('{"allow":"true","user":{"subject":"x"}}')],
    ['allow without a user', (_b, res) => res.writeHead(200).end('{"allow":true}')],
    [
      'an unknown role',
      (_b, res) => res.writeHead(200).end('{"allow":true,"user":{"subject":"x"},"roles":[{"role":"root"}]}'),
    ],
    ['an empty subject', (_b, res) => res.writeHead(200).end('{"allow":true,"user":{"subject":""}}')],
    [
      'an answer over 64 KiB',
      (_b, res) =>
        res.writeHead(200).end(JSON.stringify({ allow: true, user: { subject: 'x', groups: ['g'.repeat(70_000)] } })),
    ],
    ['no answer within the timeout', () => {}],
  ];
  it.each(broken)('fails closed on %s, and does not cache that', async (_what, h) => {
    handler = h;
    const c = checker({ timeoutMs: 300 });
    const started = Date.now();
    const r = await c.check(request);
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(JSON.stringify(r)).not.toContain('Bearer good');
    handler = sensible;
    expect(await c.check(request)).toMatchObject({ ok: true, subject: 'svc' });
  });

  it('never puts the header or the password into a result', async () => {
    const c = checker();
    for (const r of [
      await c.verifyPassword('alice', 'wrong secret'),
      await c.check({ ...request, authorization: 'Bearer sekrit' }),
    ]) {
      expect(JSON.stringify(r)).not.toMatch(/sekrit|wrong secret|Basic/);
    }
  });
});
