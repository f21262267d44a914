import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider from 'oidc-provider';

/** A user of the test provider. */
export interface TestOidcUser {
  readonly sub: string;
  readonly username: string;
  readonly name: string;
  readonly email: string;
  /** Normally names; anything else to test how a malformed claim is refused. */
  readonly groups: readonly string[] | Readonly<Record<string, unknown>>;
}

/** A client registered at the test provider. */
export interface TestOidcClient {
  readonly clientId: string;
  readonly clientSecret?: string;
  readonly auth: 'client_secret_basic' | 'client_secret_post' | 'none';
}

/** What the proxy in front of the provider does with a request; `up` passes it on. */
export type ProxyMode = 'up' | 'error' | 'hang';

/** Rewrites a JSON answer of the provider on its way to floe (path without query); undefined leaves it. */
export type AnswerRewrite = (path: string, body: Record<string, unknown>) => Record<string, unknown> | undefined;

/**
 * A real OpenID provider (`oidc-provider`) for tests, on 127.0.0.1, behind a
 * small proxy that is the issuer's address. The proxy lets a test count
 * requests, rewrite answers (tamper with a token), make the provider answer
 * 503 or hang, and swap the provider behind it (key rotation) while the
 * issuer stays the same.
 */
export interface TestOidcProvider {
  readonly issuer: string;
  /** Where the test's "browser" lands at the end: served by the test, records each query. */
  readonly redirectUri: string;
  readonly clients: readonly TestOidcClient[];
  /** Requests the proxy saw, by path. */
  readonly requests: Map<string, number>;
  mode: (path: string) => ProxyMode;
  rewrite: AnswerRewrite | undefined;
  /** Act as the browser: follow the authorization URL, log in as `user` and consent; the query the redirect URI received. */
  browse(authorizationUrl: string, user: string): Promise<URLSearchParams>;
  /** A new signing key; the provider is restarted, publishing the new key first and the old one after it. */
  rotateKeys(): Promise<void>;
  /** The key ids the provider publishes now, the signing one first. */
  readonly kids: readonly string[];
  stop(): Promise<void>;
}

const CALLBACK = '/callback';

async function listen(server: http.Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

async function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
}

async function signingKey(kid: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

/** Start the provider with `users` and three clients (basic, post, public) plus `other`, a second confidential one. */
export async function startTestOidcProvider(users: readonly TestOidcUser[]): Promise<TestOidcProvider> {
  const requests = new Map<string, number>();
  const received: URLSearchParams[] = [];
  const callbackServer = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (u.pathname === CALLBACK) received.push(u.searchParams);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('back at floe');
  });
  const redirectUri = `http://127.0.0.1:${await listen(callbackServer)}${CALLBACK}`;

  const clients: TestOidcClient[] = [
    { clientId: 'floe', clientSecret: 'floe-secret-basic', auth: 'client_secret_basic' },
    { clientId: 'floe-post', clientSecret: 'floe-secret-post', auth: 'client_secret_post' },
    { clientId: 'floe-public', auth: 'none' },
    { clientId: 'other', clientSecret: 'other-secret', auth: 'client_secret_basic' },
  ];

  let upstreamPort = 0;
  const proxy = http.createServer();
  const issuer = `http://127.0.0.1:${await listen(proxy)}`;
  let keys: JWK[] = [await signingKey('key-1')];
  let generation = 1;

  const makeProvider = (): Provider =>
    new Provider(issuer, {
      clients: clients.map((c) => ({
        client_id: c.clientId,
        ...(c.clientSecret !== undefined ? { client_secret: c.clientSecret } : {}),
        token_endpoint_auth_method: c.auth,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      })),
      jwks: { keys },
      pkce: { required: () => true },
      // The claims floe reads are put in the ID token itself.
      conformIdTokenClaims: false,
      claims: {
        openid: ['sub'],
        profile: ['name', 'preferred_username'],
        email: ['email'],
        groups: ['groups'],
      },
      scopes: ['openid', 'profile', 'email', 'groups'],
      features: { devInteractions: { enabled: true } },
      cookies: { keys: ['test-cookie-key'] },
      ttl: { IdToken: 3600, AccessToken: 600, AuthorizationCode: 60, Grant: 600, Interaction: 600, Session: 600 },
      findAccount: (_ctx, id) => {
        const user = users.find((u) => u.sub === id);
        if (user === undefined) return undefined;
        return {
          accountId: user.sub,
          claims: () => ({
            sub: user.sub,
            preferred_username: user.username,
            name: user.name,
            email: user.email,
            groups: Array.isArray(user.groups) ? [...(user.groups as string[])] : { ...user.groups },
          }),
        };
      },
    });

  /** The provider's Koa handler as a plain request listener (it handles its own errors). */
  const serve = (): http.Server => {
    const handle = makeProvider().callback();
    return http.createServer((req, res) => void handle(req, res));
  };
  let upstream = serve();
  upstreamPort = await listen(upstream);

  const tp: TestOidcProvider = {
    issuer,
    redirectUri,
    clients,
    requests,
    mode: () => 'up',
    rewrite: undefined,
    get kids() {
      return keys.map((k) => k.kid!);
    },
    async browse(authorizationUrl, user) {
      const jar = new Map<string, string>();
      const before = received.length;
      let url = authorizationUrl;
      let init: RequestInit = {};
      for (let step = 0; step < 20; step++) {
        const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
        const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...init.headers, cookie } });
        for (const c of res.headers.getSetCookie()) {
          const [pair] = c.split(';');
          const eq = pair!.indexOf('=');
          const name = pair!.slice(0, eq).trim();
          const value = pair!.slice(eq + 1).trim();
          if (value === '') jar.delete(name);
          else jar.set(name, value);
        }
        const location = res.headers.get('location');
        if (res.status >= 300 && res.status < 400 && location !== null) {
          await res.body?.cancel();
          url = new URL(location, url).toString();
          init = {};
          if (url.startsWith(redirectUri)) {
            await (await fetch(url)).text();
            if (received.length === before) throw new Error('the redirect URI received nothing');
            return received[received.length - 1]!;
          }
          continue;
        }
        const html = await res.text();
        const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
        const prompt = /name="prompt" value="([^"]+)"/.exec(html)?.[1];
        if (res.status !== 200 || action === undefined || prompt === undefined) {
          throw new Error(
            `the provider answered ${res.status} without a form: ${html
              .replace(/<style>[\s\S]*<\/style>/, '')
              .replace(/<[^>]+>/g, ' ')
              .replace(/\s+/g, ' ')
              .slice(0, 600)}`,
          );
        }
        url = new URL(action.replace(/&amp;/g, '&'), url).toString();
        const form = new URLSearchParams({ prompt });
        if (prompt === 'login') {
          // The login form takes the account id, which is the subject.
          form.set('login', users.find((u) => u.username === user)?.sub ?? user);
          form.set('password', 'any');
        }
        init = {
          method: 'POST',
          body: form.toString(),
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        };
      }
      throw new Error('the login did not come back to the redirect URI');
    },
    async rotateKeys() {
      generation++;
      keys = [await signingKey(`key-${generation}`), ...keys];
      const next = serve();
      const nextPort = await listen(next);
      const old = upstream;
      upstream = next;
      upstreamPort = nextPort;
      await close(old);
    },
    async stop() {
      await Promise.all([close(proxy), close(upstream), close(callbackServer)]);
    },
  };

  proxy.on('request', (req, res) => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    requests.set(path, (requests.get(path) ?? 0) + 1);
    const mode = tp.mode(path);
    if (mode === 'hang') return; // never answers; closed by stop()
    if (mode === 'error') {
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"temporarily_unavailable"}');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = { ...req.headers };
      delete headers['content-length'];
      const body = Buffer.concat(chunks);
      const up = http.request(
        {
          host: '127.0.0.1',
          port: upstreamPort,
          method: req.method,
          path: req.url,
          headers: { ...headers, 'content-length': body.length },
        },
        (ures) => {
          const parts: Buffer[] = [];
          ures.on('data', (c: Buffer) => parts.push(c));
          ures.on('end', () => {
            let out = Buffer.concat(parts);
            const type = String(ures.headers['content-type'] ?? '');
            if (tp.rewrite !== undefined && type.includes('json') && out.length > 0) {
              const changed = tp.rewrite(path, JSON.parse(out.toString('utf8')) as Record<string, unknown>);
              if (changed !== undefined) out = Buffer.from(JSON.stringify(changed));
            }
            const raw: string[] = [];
            for (let i = 0; i < ures.rawHeaders.length; i += 2) {
              const name = ures.rawHeaders[i]!.toLowerCase();
              if (name === 'content-length' || name === 'transfer-encoding' || name === 'connection') continue;
              raw.push(ures.rawHeaders[i]!, ures.rawHeaders[i + 1]!);
            }
            raw.push('content-length', String(out.length));
            res.writeHead(ures.statusCode ?? 502, raw).end(out);
          });
        },
      );
      up.on('error', () => res.writeHead(502).end());
      up.end(body);
    });
  });

  return tp;
}
