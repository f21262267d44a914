import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { ERROR_CODES, isErrorCode } from '@floe/api';
import { freePort } from '@floe/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, kill, nodeArgs, ROOT, startAgent } from '../e2e/helpers.js';
import { generate, Rng, routesOf, type FuzzRequest } from './generate.js';

/**
 * A schema-driven fuzz test of the API: every path and method of docs/api/openapi.json, with hostile
 * parameters and bodies, with the admin token and without, against a real floed (and a local agent with the
 * fake VM driver) over a real socket. No answer may be a 5xx, every error answer is the envelope with a code
 * of the table and its status, and the server stays up. FLOE_FUZZ_SEED and FLOE_FUZZ_COUNT change the run
 * (`npm run fuzz` is a long one).
 */
const SEED = Number(process.env.FLOE_FUZZ_SEED ?? 20261207);
const COUNT = Number(process.env.FLOE_FUZZ_COUNT ?? 3000);
const CONCURRENCY = 6;
const BATCH = 250;

interface Answer {
  status: number;
  contentType: string;
  body: string;
  /** A stream (events, logs) that was still sending when the test stopped reading. */
  streaming: boolean;
}

describe('API fuzz from the OpenAPI document', () => {
  const data = mkdtempSync(path.join(os.tmpdir(), 'floe-fuzz-'));
  let floed: ChildProcess & { log?: string };
  let agent: ReturnType<typeof startAgent> | undefined;
  let url: string;
  let ca: string;
  let token: string;

  const env = (port: number): NodeJS.ProcessEnv => ({
    ...process.env,
    FLOE_DATA: data,
    FLOE_LISTEN: `127.0.0.1:${port}`,
    FLOE_LOG_LEVEL: 'error',
    FLOE_HEARTBEAT_MS: '1000',
    // The fuzz sends thousands of requests from one address, a fifth of them without a token.
    FLOE_RATE_LIMIT_PUBLIC: '0',
    FLOE_RATE_LIMIT_JOIN: '0',
    FLOE_RATE_LIMIT_AUTH_FAILURES: '0',
  });

  let keepAlive: https.Agent;

  function send(req: FuzzRequest): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const r = https.request(
        `${url}${req.path}`,
        {
          method: req.method,
          // An explicit length: Node sends the body of a GET, HEAD or DELETE neither chunked nor counted otherwise.
          headers: req.body === null ? req.headers : { ...req.headers, 'content-length': String(req.body.length) },
          ca,
          agent: keepAlive,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          const contentType = String(res.headers['content-type'] ?? '');
          const done = (streaming: boolean) => {
            clearTimeout(timer);
            resolve({
              status: res.statusCode ?? 0,
              contentType,
              body: Buffer.concat(chunks).toString('utf8'),
              streaming,
            });
          };
          // A stream (events, logs with follow) never ends by itself: stop reading after a while.
          const timer = setTimeout(() => {
            done(true);
            res.destroy();
          }, 3000);
          res.on('data', (c: Buffer) => {
            if (size < 1_000_000) chunks.push(c);
            size += c.length;
          });
          res.on('end', () => done(false));
          res.on('error', () => done(true));
        },
      );
      r.setTimeout(20_000, () => r.destroy(new Error(`no answer within 20 s: ${req.what}`)));
      r.on('error', reject);
      r.end(req.body ?? undefined);
    });
  }

  beforeAll(async () => {
    const port = await freePort();
    keepAlive = new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const init = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        nodeArgs('packages/server/src/main.ts', ['init', '--json']),
        { cwd: ROOT, env: env(port) },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
      ),
    );
    const made = JSON.parse(init) as { admin_token: string; agent_dir: string };
    token = made.admin_token;
    ca = readFileSync(path.join(data, 'pki', 'ca.crt'), 'utf8');
    url = `https://127.0.0.1:${port}`;
    floed = spawn(process.execPath, nodeArgs('packages/server/src/main.ts', ['run']), {
      cwd: ROOT,
      env: env(port),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    floed.log = '';
    const keep = (d: Buffer) => {
      floed.log = `${floed.log ?? ''}${String(d)}`.slice(-20_000);
    };
    floed.stdout!.on('data', keep);
    floed.stderr!.on('data', keep);
    await eventually(async () => (await send(get('/healthz'))).status === 200, 'floed listening', 60_000);
    agent = startAgent(url, made.agent_dir);
    await eventually(
      async () => {
        const hosts = JSON.parse((await send(get('/v1/hosts', token))).body) as {
          items: { status: { state: string } }[];
        };
        return hosts.items.some((h) => h.status.state === 'online');
      },
      'the local agent online',
      60_000,
    );
    // A few real resources, so valid-looking requests reach existing ones.
    await send(post('/v1/projects', { name: 'fuzz' }));
    await send(post('/v1/images', { name: 'fz-img' }));
  }, 180_000);

  afterAll(async () => {
    if (agent) await kill(agent);
    if (floed) await kill(floed, 'SIGTERM');
    keepAlive?.destroy();
    rmSync(data, { recursive: true, force: true });
  });

  const get = (p: string, t?: string): FuzzRequest => ({
    method: 'GET',
    path: p,
    headers: t === undefined ? {} : { authorization: `Bearer ${t}` },
    body: null,
    what: `GET ${p}`,
  });
  const post = (p: string, body: unknown): FuzzRequest => ({
    method: 'POST',
    path: p,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(body)),
    what: `POST ${p}`,
  });

  it(
    `answers ${COUNT} hostile requests (seed ${SEED}) without a 5xx, always in the envelope, and stays up`,
    async () => {
      const doc = JSON.parse(readFileSync(path.join(ROOT, 'docs', 'api', 'openapi.json'), 'utf8')) as {
        paths: Record<string, Record<string, unknown>>;
      };
      const routes = routesOf(doc);
      expect(routes.length).toBeGreaterThan(40);
      // Routes a browser visits (the OpenID callback) document their errors as an HTML page, not the envelope.
      const htmlErrors = new Set(
        Object.entries(doc.paths).flatMap(([p, item]) =>
          Object.entries(item)
            .filter(
              ([, op]) => (op as { responses?: Record<string, { content?: object }> }).responses?.['4XX']?.content,
            )
            .filter(
              ([, op]) =>
                'text/html' in (op as { responses: Record<string, { content: object }> }).responses['4XX']!.content,
            )
            .map(([m]) => `${m.toUpperCase()} ${p}`),
        ),
      );
      const rng = new Rng(SEED);
      const histogram = new Map<number, number>();
      const perRoute = new Set<string>();
      const failures: string[] = [];
      let sent = 0;
      let streams = 0;
      const started = Date.now();

      const check = (req: FuzzRequest, a: Answer) => {
        histogram.set(a.status, (histogram.get(a.status) ?? 0) + 1);
        if (a.streaming) streams++;
        const where = `${req.what}: ${req.method} ${req.path.slice(0, 200)} -> ${a.status} ${a.body.slice(0, 300)}`;
        if (a.status >= 500) failures.push(`5xx: ${where}`);
        if (a.status < 400 || req.method === 'HEAD') return;
        if (req.route !== undefined && htmlErrors.has(req.route) && /^text\/html/.test(a.contentType)) return;
        if (!/^application\/json/.test(a.contentType)) {
          failures.push(`not JSON (${a.contentType}): ${where}`);
          return;
        }
        let code: unknown;
        try {
          const parsed = JSON.parse(a.body) as { error?: { code?: unknown; message?: unknown } };
          code = parsed.error?.code;
          if (typeof parsed.error?.message !== 'string') failures.push(`no message: ${where}`);
        } catch {
          failures.push(`not the envelope: ${where}`);
          return;
        }
        if (typeof code !== 'string' || !isErrorCode(code)) failures.push(`code not in the table: ${where}`);
        else if (ERROR_CODES[code].status !== a.status) failures.push(`status is not the code's: ${where}`);
      };

      while (sent < COUNT) {
        const batch = Array.from({ length: Math.min(BATCH, COUNT - sent) }, () => generate(rng, routes, token));
        for (const r of batch) if (r.route !== undefined) perRoute.add(r.route);
        let next = 0;
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async () => {
            while (next < batch.length) {
              const req = batch[next++]!;
              try {
                check(req, await send(req));
              } catch (err) {
                // The server may refuse an oversized body before it is all sent, and close the connection.
                if (/oversized/.test(req.what) && /EPIPE|ECONNRESET/.test(String(err))) {
                  histogram.set(0, (histogram.get(0) ?? 0) + 1);
                  continue;
                }
                failures.push(`no answer: ${req.what}: ${req.method} ${req.path.slice(0, 200)}: ${String(err)}`);
              }
            }
          }),
        );
        sent += batch.length;
        // The server is up between batches, and answers.
        expect(floed.exitCode, `floed exited:\n${floed.log}`).toBeNull();
        const health = await send(get('/healthz'));
        expect(health.status, `healthz after ${sent} requests`).toBe(200);
        if (failures.length > 20) break;
      }

      const statuses = [...histogram.entries()].sort((a, b) => a[0] - b[0]);
      console.log(
        `[fuzz] seed ${SEED}: ${sent} requests in ${((Date.now() - started) / 1000).toFixed(1)} s, ` +
          `${streams} streams cut off; status histogram: ${statuses.map(([s, n]) => `${s === 0 ? 'closed early' : s}: ${n}`).join(', ')}`,
      );
      expect(failures.slice(0, 20), failures.slice(0, 20).join('\n')).toEqual([]);
      // Every operation of the document was tried.
      for (const r of routes)
        expect(perRoute.has(`${r.method} ${r.path}`) || sent < 500, `${r.method} ${r.path}`).toBe(true);
    },
    Math.max(300_000, COUNT * 200),
  );
});
