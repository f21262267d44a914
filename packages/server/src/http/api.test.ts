import type { ClientRequest } from 'node:http';
import https from 'node:https';
import { ERROR_CODES, isErrorCode, type ErrorCode, type HostFacts, type Instance, type Operation } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../app.js';
import type { Database } from '../db/schema.js';
import { storeTargets } from '../db/testing.js';
import { newId } from '../ids.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';

// The control plane's HTTP API, end to end against a real store on both dialects.
// There is no agent: hosts are registered and marked online through the services,
// so operations stay pending.

/** A decoded answer. */
interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

interface CallOptions {
  /** Bearer token; undefined uses the admin token, null sends none. */
  token?: string | null;
  body?: unknown;
  /** A raw body, sent as is (with `headers['content-type']`). */
  raw?: string;
  headers?: Record<string, string>;
}

const BASE_FACTS: HostFacts = {
  hostname: 'test',
  agent_version: '0.0.0',
  arch: 'x86_64',
  kernel: '6.1.0',
  cpus: 4,
  memory_mib: 8192,
  disk_free_gib: 100,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'test host' },
  accelerator: 'tcg',
  wireguard_kernel: false,
  vm_driver: 'fake',
};

/** Register a host and mark it online, as its agent's hello would. */
async function onlineHost(app: App, name: string, facts: Partial<HostFacts> = {}): Promise<string> {
  const { id } = await app.services.hosts.ensureLocal(name, async () => ({ serial: 'x' }));
  await app.services.hosts.markOnline(id, { ...BASE_FACTS, hostname: name, ...facts }, 'test');
  return id;
}

/** Every error answer must be the one envelope, with a known code and that code's status. */
function checkEnvelope(res: Res): void {
  const where = `${res.status} ${JSON.stringify(res.body)}`;
  expect(String(res.headers['content-type']), where).toMatch(/^application\/json/);
  expect(res.body !== null && typeof res.body === 'object' && !Array.isArray(res.body), where).toBe(true);
  expect(Object.keys(res.body), where).toEqual(['error']);
  const e = res.body.error;
  expect(
    Object.keys(e).every((k) => k === 'code' || k === 'message' || k === 'details'),
    where,
  ).toBe(true);
  expect(typeof e.code === 'string' && isErrorCode(e.code), where).toBe(true);
  expect(ERROR_CODES[e.code as ErrorCode].status, where).toBe(res.status);
  expect(typeof e.message === 'string' && e.message.length > 0, where).toBe(true);
  if ('details' in e)
    expect(e.details !== null && typeof e.details === 'object' && !Array.isArray(e.details), where).toBe(true);
}

/** Assert an error answer: status from ERROR_CODES, the code, and (for validation) the field. */
function expectError(res: Res, code: ErrorCode, field?: string): void {
  expect(res.body?.error?.code, JSON.stringify(res.body)).toBe(code);
  expect(res.status).toBe(ERROR_CODES[code].status);
  checkEnvelope(res);
  if (field !== undefined) expect(res.body.error.details?.field, JSON.stringify(res.body)).toBe(field);
}

function decode(status: number, headers: Res['headers'], text: string): Res {
  let body: unknown = text;
  if (String(headers['content-type'] ?? '').startsWith('application/json') && text !== '') body = JSON.parse(text);
  const res = { status, headers, body };
  if (status >= 400) checkEnvelope(res);
  return res;
}

/** Talks to one test control plane: `inject` where TLS does not matter, real HTTPS where it does. */
class Api {
  constructor(readonly cp: TestControlPlane) {}

  private headers(opts: CallOptions): Record<string, string> {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? this.cp.adminToken : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (opts.body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
    return headers;
  }

  private payload(opts: CallOptions): string | undefined {
    return opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  }

  /** In-process request (no socket). */
  async call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, opts: CallOptions = {}): Promise<Res> {
    const payload = this.payload(opts);
    const res = await this.cp.app.http.inject({
      method,
      url,
      headers: this.headers(opts),
      ...(payload === undefined ? {} : { payload }),
    });
    return decode(res.statusCode, res.headers as Res['headers'], res.body);
  }

  get(url: string, opts?: CallOptions) {
    return this.call('GET', url, opts);
  }
  post(url: string, body?: unknown, opts: CallOptions = {}) {
    return this.call('POST', url, { ...opts, body });
  }
  patch(url: string, body: unknown, opts: CallOptions = {}) {
    return this.call('PATCH', url, {
      ...opts,
      body,
      headers: { 'content-type': 'application/merge-patch+json', ...opts.headers },
    });
  }
  del(url: string, opts?: CallOptions) {
    return this.call('DELETE', url, opts);
  }

  /** A real HTTPS request to the listening server, trusting only the test CA. */
  https(method: string, path: string, opts: CallOptions = {}): Promise<Res> {
    const payload = this.payload(opts);
    return new Promise((resolve, reject) => {
      const req = https.request(
        new URL(path, this.cp.url),
        { method, headers: this.headers(opts), ca: this.cp.ca.certPem, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            try {
              resolve(decode(res.statusCode ?? 0, res.headers, Buffer.concat(chunks).toString('utf8')));
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Create a project and an image `img` in it. */
  async project(name: string, labels?: Record<string, string>): Promise<void> {
    expect((await this.post('/v1/projects', { name, ...(labels ? { labels } : {}) })).status).toBe(201);
    expect((await this.post('/v1/images', { name: 'img', project: name })).status).toBe(201);
  }

  /** Create a small instance; answers the 202 body. */
  async instance(
    project: string,
    name: string,
    extra: Record<string, unknown> = {},
    opts: CallOptions = {},
  ): Promise<{ instance: Instance; operation: Operation }> {
    const res = await this.post(
      '/v1/instances',
      { name, project, image: 'img', vcpus: 1, memory_mib: 128, ...extra },
      opts,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body;
  }

  /** Rows in a table. */
  async count(table: keyof Database): Promise<number> {
    const row = await this.cp.store.db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Open `/v1/events` as Server-Sent Events over HTTPS; resolves once the stream has started. */
  sse(path: string, opts: { token?: string; headers?: Record<string, string> } = {}): Promise<SseStream> {
    return new Promise((resolve, reject) => {
      const headers = { ...this.headers({ token: opts.token }), accept: 'text/event-stream', ...opts.headers };
      const req = https.request(
        new URL(path, this.cp.url),
        { method: 'GET', headers, ca: this.cp.ca.certPem, agent: false },
        (res) => {
          const stream = new SseStream(req, res.statusCode ?? 0, String(res.headers['content-type']));
          res.setEncoding('utf8');
          let started = false;
          res.on('data', (chunk: string) => {
            stream.feed(chunk);
            if (!started && stream.comments.length > 0) {
              started = true;
              resolve(stream);
            }
          });
          res.on('error', () => undefined);
          res.on('end', () => {
            if (!started) reject(new Error(`event stream ended before it started (status ${res.statusCode})`));
          });
        },
      );
      req.on('error', (err) => {
        if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
      });
      req.end();
    });
  }
}

/** One SSE message. */
interface SseMessage {
  id: string | null;
  event: string | null;
  data: any;
}

/** A parsed Server-Sent Events stream. */
class SseStream {
  readonly messages: SseMessage[] = [];
  readonly comments: string[] = [];
  private buffer = '';
  private waiters: Array<() => void> = [];

  constructor(
    private readonly req: ClientRequest,
    readonly status: number,
    readonly contentType: string,
  ) {}

  feed(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) !== -1) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const msg: SseMessage = { id: null, event: null, data: undefined };
      let data: string[] | null = null;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
        else if (line.startsWith('id: ')) msg.id = line.slice(4);
        else if (line.startsWith('event: ')) msg.event = line.slice(7);
        else if (line.startsWith('data: ')) (data ??= []).push(line.slice(6));
      }
      if (data !== null) {
        msg.data = JSON.parse(data.join('\n'));
        this.messages.push(msg);
      }
    }
    for (const w of this.waiters.splice(0)) w();
  }

  /** The first message matching `pred`, waiting up to `ms`. */
  async next(pred: (m: SseMessage) => boolean, ms = 5000): Promise<SseMessage> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.messages.find(pred);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `no matching event within ${ms} ms; got: ${this.messages.map((m) => `${m.id}:${m.event}`).join(', ')}`,
        );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.req.destroy();
  }
}

const sortIds = (items: Array<{ id: string }>) => items.map((i) => i.id).sort();

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`control plane API on ${target.name}`, () => {
    let cp: TestControlPlane;
    let api: Api;
    /** A 4-CPU/8 GiB host and a big one, so the suite's instances fit. */
    let smallHost: string;

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_BODY_LIMIT: String(128 * 1024),
        // The hosts have no agent sending heartbeats: keep them online for the whole suite.
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        FLOE_LOG_LEVEL: 'silent',
      });
      api = new Api(cp);
      smallHost = await onlineHost(cp.app, 'node-small');
      await onlineHost(cp.app, 'node-big', { cpus: 128, memory_mib: 262_144 });
    });

    afterAll(async () => {
      await cp?.close();
    });

    // ------------------------------------------------------------ auth
    describe('authentication and authorization', () => {
      it('needs a valid bearer token, except for health, the spec and the docs', async () => {
        expectError(await api.https('GET', '/v1/projects', { token: null }), 'unauthenticated');
        expectError(await api.https('GET', '/v1/projects', { token: 'floe_not-a-real-token' }), 'unauthenticated');
        expectError(
          await api.https('GET', '/v1/projects', { token: null, headers: { authorization: 'Basic YWRtaW46YWRtaW4=' } }),
          'unauthenticated',
        );
        expectError(
          await api.https('GET', `/v1/instances/${newId('instance')}`, { token: 'floe_x' }),
          'unauthenticated',
        );

        const ok = await api.https('GET', '/v1/projects');
        expect(ok.status).toBe(200);
        expect(ok.body.items.map((p: { name: string }) => p.name)).toContain('default');

        const health = await api.https('GET', '/healthz', { token: null });
        expect(health.status).toBe(200);
        expect(health.body).toMatchObject({ status: 'ok', database: target.name });
        const spec = await api.https('GET', '/v1/openapi.json', { token: null });
        expect(spec.status).toBe(200);
        expect(spec.body.openapi).toBe('3.1.0');
        expect(Object.keys(spec.body.paths)).toContain('/v1/instances');
        const docs = await api.https('GET', '/docs', { token: null });
        expect(docs.status).toBeLessThan(400);
        const page = await api.https('GET', '/docs/', { token: null });
        expect(page.status).toBe(200);
        expect(page.body).toContain('<html');
      });

      it('keeps a project-scoped token inside its projects and away from admin actions', async () => {
        await api.project('auth-a');
        await api.project('auth-b');
        const a = await api.instance('auth-a', 'mine');
        const b = await api.instance('auth-b', 'theirs');
        const created = await api.post('/v1/tokens', { name: 'team-a', projects: ['auth-a'] });
        expect(created.status).toBe(201);
        expect(created.body.token).toMatchObject({ admin: false, projects: ['auth-a'] });
        const tok = created.body.secret as string;
        expect(tok).toMatch(/^floe_/);

        // Own project: visible.
        const own = await api.https('GET', `/v1/instances/${a.instance.id}`, { token: tok });
        expect(own.status).toBe(200);
        expect(own.body.name).toBe('mine');
        const ownList = await api.https('GET', '/v1/instances', { token: tok });
        expect(ownList.body.items.map((i: Instance) => i.id)).toEqual([a.instance.id]);

        // Other project: not found, never forbidden, so existence does not leak.
        expectError(await api.https('GET', `/v1/instances/${b.instance.id}`, { token: tok }), 'instance_not_found');
        expectError(
          await api.https('GET', '/v1/instances/theirs?project=auth-b', { token: tok }),
          'instance_not_found',
        );
        expectError(await api.https('GET', `/v1/instances/${newId('instance')}`, { token: tok }), 'instance_not_found');
        expectError(await api.https('GET', `/v1/operations/${b.operation.id}`, { token: tok }), 'operation_not_found');
        expectError(await api.https('GET', '/v1/projects/auth-b', { token: tok }), 'project_not_found');
        expectError(
          await api.https('POST', `/v1/instances/${b.instance.id}/stop`, { token: tok }),
          'instance_not_found',
        );
        const theirs = await api.https('GET', '/v1/instances?project=auth-b', { token: tok });
        expect(theirs.status).toBe(200);
        expect(theirs.body).toEqual({ items: [], next_cursor: null });
        const projects = await api.https('GET', '/v1/projects', { token: tok });
        expect(projects.body.items.map((p: { name: string }) => p.name)).toEqual(['auth-a']);

        // Admin-only actions.
        expectError(await api.https('POST', '/v1/projects', { token: tok, body: { name: 'sneaky' } }), 'forbidden');
        expectError(await api.https('GET', '/v1/hosts', { token: tok }), 'forbidden');
        expectError(await api.https('POST', '/v1/hosts/join-tokens', { token: tok }), 'forbidden');
        const join = await api.https('POST', '/v1/hosts/join-tokens'); // admin, no body at all
        expect(join.status).toBe(201);
        expect(join.body.token).toMatch(/^floejoin_/);
        expectError(await api.https('GET', `/v1/hosts/${smallHost}`, { token: tok }), 'forbidden');
        expectError(
          await api.https('POST', '/v1/tokens', { token: tok, body: { name: 'escalate', admin: true } }),
          'forbidden',
        );
        expectError(
          await api.https('POST', '/v1/machine-types', {
            token: tok,
            body: { name: 'mine', vcpus: 1, memory_mib: 128 },
          }),
          'forbidden',
        );
        expectError(await api.get('/v1/projects/sneaky'), 'project_not_found');

        // Revoked: rejected at once.
        expect((await api.del(`/v1/tokens/${created.body.token.id}`)).status).toBe(204);
        expectError(await api.https('GET', '/v1/instances', { token: tok }), 'unauthenticated');
        expectError(await api.del(`/v1/tokens/${created.body.token.id}`), 'token_not_found');
      });
    });

    // ------------------------------------------------------------ validation
    describe('validation and error codes', () => {
      beforeAll(async () => {
        await api.project('val');
      });

      it('names the invalid field', async () => {
        expectError(await api.post('/v1/projects', { name: 'Bad_Name' }), 'validation_failed', 'name');
        expectError(await api.post('/v1/projects', { name: 'ok-name', colour: 'red' }), 'validation_failed', 'colour');
        expectError(await api.post('/v1/projects', {}), 'validation_failed', 'name');
        expectError(await api.post('/v1/projects', { name: 'x', labels: 'env=prod' }), 'validation_failed', 'labels');
        const base = { name: 'v1', project: 'val', image: 'img' };
        expectError(
          await api.post('/v1/instances', { ...base, vcpus: 0, memory_mib: 256 }),
          'validation_failed',
          'vcpus',
        );
        expectError(
          await api.post('/v1/instances', { ...base, vcpus: 1, memory_mib: 'lots' }),
          'validation_failed',
          'memory_mib',
        );
        expectError(
          await api.post('/v1/instances', {
            ...base,
            vcpus: 1,
            memory_mib: 256,
            ssh_keys: { key: 'ssh-ed25519 AAAA' },
          }),
          'validation_failed',
          'ssh_keys',
        );
        expectError(
          await api.post('/v1/instances', { ...base, vcpus: 1, memory_mib: 256, restart_policy: 'sometimes' }),
          'validation_failed',
          'restart_policy',
        );
        expectError(await api.post('/v1/instances', { ...base, vcpus: 1 }), 'validation_failed', 'machine_type');
        expectError(
          await api.patch('/v1/projects/val', { labels: { 'bad key!': 'x' } }),
          'validation_failed',
          'labels.bad key!',
        );
        expectError(
          await api.post('/v1/images', { name: 'bad-labels', project: 'val', labels: { '-x': 'y' } }),
          'validation_failed',
          'labels.-x',
        );
        expectError(
          await api.patch('/v1/projects/val', { labels: { ok: 'bad value!' } }),
          'validation_failed',
          'labels.ok',
        );
        expect((await api.get('/v1/projects/val')).body).toMatchObject({ revision: 1, labels: {} });
        expectError(await api.get('/v1/images/bad-labels?project=val'), 'image_not_found');
        expectError(await api.patch('/v1/projects/val', { name: 'renamed' }), 'validation_failed', 'name');
        expectError(
          await api.call('POST', '/v1/projects', { raw: '{"name": ', headers: { 'content-type': 'application/json' } }),
          'validation_failed',
          'body',
        );
        expectError(await api.get('/v1/instances?limit=0'), 'validation_failed', 'limit');
        expectError(
          await api.patch('/v1/projects/val', {}, { headers: { 'if-match': 'nope' } }),
          'validation_failed',
          'If-Match',
        );
        // None of the rejected creates left anything behind.
        expectError(await api.get('/v1/instances/v1?project=val'), 'instance_not_found');
        expectError(await api.get('/v1/projects/ok-name'), 'project_not_found');
      });

      it('answers 404 naming the kind for unknown ids and names', async () => {
        const cases: Array<[string, ErrorCode]> = [
          [`/v1/instances/${newId('instance')}`, 'instance_not_found'],
          ['/v1/instances/nope?project=val', 'instance_not_found'],
          [`/v1/images/${newId('image')}`, 'image_not_found'],
          ['/v1/images/nope?project=val', 'image_not_found'],
          [`/v1/projects/${newId('project')}`, 'project_not_found'],
          ['/v1/projects/nope', 'project_not_found'],
          [`/v1/machine-types/${newId('machine_type')}`, 'machine_type_not_found'],
          ['/v1/machine-types/nope', 'machine_type_not_found'],
          [`/v1/operations/${newId('operation')}`, 'operation_not_found'],
          [`/v1/hosts/${newId('host')}`, 'host_not_found'],
          ['/v1/hosts/nope', 'host_not_found'],
          [`/v1/instances/${newId('instance')}/history`, 'instance_not_found'],
        ];
        for (const [url, code] of cases) {
          const res = await api.get(url);
          expectError(res, code);
          expect(res.body.error.message, url).toContain('not found');
        }
        expectError(await api.post(`/v1/operations/${newId('operation')}/cancel`), 'operation_not_found');
        expectError(await api.del(`/v1/tokens/${newId('token')}`), 'token_not_found');
        expectError(
          await api.post('/v1/instances', { name: 'x', project: 'val', image: 'nope', vcpus: 1, memory_mib: 128 }),
          'image_not_found',
        );
        expectError(
          await api.post('/v1/instances', { name: 'x', project: 'val', image: 'img', machine_type: 'nope' }),
          'machine_type_not_found',
        );
        expectError(
          await api.post('/v1/instances', { name: 'x', project: 'nope', image: 'img', vcpus: 1, memory_mib: 128 }),
          'project_not_found',
        );
        expectError(await api.get('/v1/nothing-here'), 'not_found');
        expectError(await api.call('DELETE', '/v1/instances'), 'not_found');
      });

      it('answers 409 on a name clash', async () => {
        expectError(await api.post('/v1/projects', { name: 'val' }), 'name_conflict', 'name');
        expectError(await api.post('/v1/images', { name: 'img', project: 'val' }), 'name_conflict', 'name');
        expectError(
          await api.post('/v1/machine-types', { name: 'small', vcpus: 1, memory_mib: 256 }),
          'name_conflict',
          'name',
        );
        await api.instance('val', 'twin');
        const before = await api.count('operations');
        expectError(
          await api.post('/v1/instances', { name: 'twin', project: 'val', image: 'img', vcpus: 1, memory_mib: 128 }),
          'name_conflict',
          'name',
        );
        expect(await api.count('operations')).toBe(before);
      });

      it('rejects oversized bodies, non-JSON bodies, big metadata and bad selectors', async () => {
        const big = { name: 'big', metadata: { blob: 'x'.repeat(200 * 1024) } };
        expectError(await api.post('/v1/projects', big), 'payload_too_large');
        expectError(
          await api.call('POST', '/v1/projects', { raw: 'name=plain', headers: { 'content-type': 'text/plain' } }),
          'unsupported_media_type',
        );
        expectError(
          await api.call('PATCH', '/v1/projects/val', {
            raw: '<labels/>',
            headers: { 'content-type': 'application/xml' },
          }),
          'unsupported_media_type',
        );
        const meta = { blob: 'x'.repeat(65 * 1024) };
        expectError(await api.post('/v1/projects', { name: 'meta', metadata: meta }), 'metadata_too_large', 'metadata');
        expectError(
          await api.post('/v1/instances', {
            name: 'meta',
            project: 'val',
            image: 'img',
            vcpus: 1,
            memory_mib: 128,
            metadata: meta,
          }),
          'metadata_too_large',
          'metadata',
        );
        expectError(await api.patch('/v1/projects/val', { metadata: meta }), 'metadata_too_large', 'metadata');
        expectError(await api.get('/v1/projects/meta'), 'project_not_found');
        expectError(await api.get('/v1/instances?cursor=garbage'), 'invalid_cursor', 'cursor');
        expectError(
          await api.get(`/v1/projects?cursor=${Buffer.from('inst_nope').toString('base64url')}`),
          'invalid_cursor',
          'cursor',
        );
        expectError(await api.get('/v1/operations?cursor=garbage'), 'invalid_cursor');
        expectError(await api.get('/v1/instances?label=%21bad'), 'invalid_label_selector', 'label');
        expectError(await api.get('/v1/images?label=env%3D%20spaces'), 'invalid_label_selector', 'label');
        expectError(await api.get('/v1/hosts?label=='), 'invalid_label_selector', 'label');
      });

      it('creates nothing when no host has room', async () => {
        const tables = ['instances', 'operations', 'history', 'events', 'resource_labels'] as const;
        const before = await Promise.all(tables.map((t) => api.count(t)));
        const res = await api.post('/v1/instances', {
          name: 'huge',
          project: 'val',
          image: 'img',
          vcpus: 256,
          memory_mib: 4 * 1024 * 1024,
          labels: { size: 'huge' },
        });
        expectError(res, 'no_host_capacity');
        expect(res.body.error.details.requested).toEqual({ vcpus: 256, memory_mib: 4 * 1024 * 1024 });
        expect(await Promise.all(tables.map((t) => api.count(t)))).toEqual(before);
        expectError(await api.get('/v1/instances/huge?project=val'), 'instance_not_found');
      });
    });

    // ------------------------------------------------------------ resources
    describe('resources', () => {
      it('creates, reads, updates and deletes projects', async () => {
        const created = await api.post('/v1/projects', {
          name: 'crud-p',
          description: 'first',
          labels: { team: 'core' },
          metadata: { owner: { email: 'a@example.org' } },
        });
        expect(created.status).toBe(201);
        const p = created.body;
        expect(p).toMatchObject({
          name: 'crud-p',
          description: 'first',
          labels: { team: 'core' },
          metadata: { owner: { email: 'a@example.org' } },
          revision: 1,
        });
        expect(p.id).toMatch(/^prj_/);
        expect(created.headers.etag).toBe('"1"');
        expect((await api.get(`/v1/projects/${p.id}`)).body).toEqual(p);
        expect((await api.get('/v1/projects/crud-p')).body).toEqual(p);
        expect((await api.get('/v1/projects')).body.items.map((x: { id: string }) => x.id)).toContain(p.id);
        const patched = await api.patch('/v1/projects/crud-p', {
          description: 'second',
          metadata: { owner: null, tier: 1 },
        });
        expect(patched.status).toBe(200);
        expect(patched.body).toMatchObject({
          description: 'second',
          metadata: { tier: 1 },
          labels: { team: 'core' },
          revision: 2,
        });
        expect(patched.body.metadata).not.toHaveProperty('owner');
        expect((await api.del('/v1/projects/crud-p')).status).toBe(204);
        expectError(await api.get(`/v1/projects/${p.id}`), 'project_not_found');
      });

      it('refuses to delete a project that still has images', async () => {
        await api.project('busy');
        expectError(await api.del('/v1/projects/busy'), 'in_use');
      });

      it('creates, reads, updates and deletes images and machine types', async () => {
        await api.project('crud-i');
        const img = await api.post('/v1/images', {
          name: 'debian',
          project: 'crud-i',
          os: 'debian-12',
          min_disk_gib: 2,
          labels: { os: 'debian' },
        });
        expect(img.status).toBe(201);
        expect(img.body).toMatchObject({
          name: 'debian',
          project: 'crud-i',
          spec: { format: 'qcow2', os: 'debian-12', min_disk_gib: 2, public: false },
          status: { state: 'pending', sha256: null },
        });
        const got = await api.get('/v1/images/debian?project=crud-i');
        expect(got.body).toEqual(img.body);
        expect(got.headers.etag).toBe('"1"');
        expectError(await api.get('/v1/images/debian'), 'image_not_found'); // names resolve in ?project=, default "default"
        const patched = await api.patch(`/v1/images/${img.body.id}?project=crud-i`, {
          spec: { os: 'debian-13' },
          labels: { os: null, arch: 'amd64' },
        });
        expect(patched.body).toMatchObject({ spec: { os: 'debian-13' }, labels: { arch: 'amd64' }, revision: 2 });
        expect(patched.body.labels).not.toHaveProperty('os');
        expect(
          (await api.get('/v1/images?project=crud-i')).body.items.map((i: { name: string }) => i.name).sort(),
        ).toEqual(['debian', 'img']);
        expect((await api.del('/v1/images/debian?project=crud-i')).status).toBe(204);
        expectError(await api.get(`/v1/images/${img.body.id}`), 'image_not_found');

        const builtins = await api.get('/v1/machine-types?limit=1000');
        expect(builtins.body.items.map((t: { name: string }) => t.name)).toEqual(
          expect.arrayContaining(['nano', 'small', 'xlarge']),
        );
        const mt = await api.post('/v1/machine-types', {
          name: 'crud-mt',
          vcpus: 3,
          memory_mib: 3072,
          labels: { custom: 'yes' },
        });
        expect(mt.status).toBe(201);
        expect(mt.body).toMatchObject({
          name: 'crud-mt',
          spec: { vcpus: 3, memory_mib: 3072, disk_gib: 10 },
          builtin: false,
        });
        expect((await api.get('/v1/machine-types/crud-mt')).body).toEqual(mt.body);
        const sized = await api.instance('crud-i', 'sized', {
          machine_type: 'crud-mt',
          vcpus: undefined,
          memory_mib: undefined,
        });
        expect(sized.instance.spec).toMatchObject({
          machine_type: 'crud-mt',
          vcpus: 3,
          memory_mib: 3072,
          disk_gib: 10,
        });
        expect((await api.del('/v1/machine-types/crud-mt')).status).toBe(204);
        expectError(await api.get(`/v1/machine-types/${mt.body.id}`), 'machine_type_not_found');
        expectError(await api.del('/v1/images/img?project=crud-i'), 'in_use');
      });

      it('creates, reads, updates, stops and deletes instances', async () => {
        await api.project('crud-vm');
        const { instance, operation } = await api.instance('crud-vm', 'web-1', {
          labels: { role: 'web' },
          ssh_keys: ['ssh-ed25519 AAAAC3 test'],
          user_data: '#!/bin/sh\necho hi\n',
        });
        expect(instance).toMatchObject({
          name: 'web-1',
          project: 'crud-vm',
          labels: { role: 'web' },
          revision: 1,
          spec: {
            vcpus: 1,
            memory_mib: 128,
            machine_type: null,
            power_state: 'running',
            restart_policy: 'never',
            ssh_keys: ['ssh-ed25519 AAAAC3 test'],
            user_data: '#!/bin/sh\necho hi\n',
          },
          status: { state: 'scheduled' },
        });
        expect(instance.status.host).toMatch(/^host_/);
        expect(operation.kind).toBe('instance.create');
        const byName = await api.get('/v1/instances/web-1?project=crud-vm');
        expect(byName.body).toEqual(instance);
        expect((await api.get(`/v1/instances/${instance.id}`)).body).toEqual(instance);
        const patched = await api.patch(`/v1/instances/${instance.id}`, {
          spec: { restart_policy: 'always' },
          metadata: { note: 'x' },
        });
        expect(patched.body).toMatchObject({
          spec: { restart_policy: 'always' },
          metadata: { note: 'x' },
          revision: 2,
        });
        // As curl sends it: POST without a body.
        const plainStop = await api.https('POST', `/v1/instances/${instance.id}/stop`);
        expect(plainStop.status).toBe(202);
        expect(plainStop.body).toMatchObject({ kind: 'instance.stop', status: 'pending' });
        expectError(
          await api.post(`/v1/instances/${instance.id}/stop`, { force: 'yes please' }),
          'validation_failed',
          'force',
        );
        const stop = await api.post(`/v1/instances/${instance.id}/stop`, { force: true });
        expect(stop.status).toBe(202);
        expect(stop.body).toMatchObject({ kind: 'instance.stop', status: 'pending' });
        expect(stop.headers.location).toBe(`/v1/operations/${stop.body.id}`);
        expect((await api.get(`/v1/instances/${instance.id}`)).body.spec.power_state).toBe('stopped');
        const start = await api.post(`/v1/instances/web-1/start?project=crud-vm`);
        expect(start.status).toBe(202);
        expect(start.body.kind).toBe('instance.start');
        // The stop was superseded by the start.
        expect((await api.get(`/v1/operations/${stop.body.id}`)).body.status).toBe('cancelled');
        const del = await api.del(`/v1/instances/${instance.id}`);
        expect(del.status).toBe(202);
        expect(del.body).toMatchObject({ kind: 'instance.delete', status: 'pending' });
        // Without an agent, the record stays until the host confirms.
        expect((await api.get(`/v1/instances/${instance.id}`)).status).toBe(200);
        expectError(await api.post(`/v1/instances/${instance.id}/start`), 'invalid_state');
      });

      it('filters every list by labels: key=value, key, and several (AND)', async () => {
        await api.project('lbl');
        const sets: Array<Record<string, string>> = [
          { env: 'prod', tier: 'web' },
          { env: 'prod' },
          { env: 'dev', tier: 'web' },
          {},
        ];
        const kinds: Array<{ list: string; create: (i: number, labels: Record<string, string>) => Promise<string> }> = [
          {
            list: '/v1/projects',
            create: async (i, labels) => (await api.post('/v1/projects', { name: `lbl-p${i}`, labels })).body.id,
          },
          {
            list: '/v1/images?project=lbl',
            create: async (i, labels) =>
              (await api.post('/v1/images', { name: `lbl-i${i}`, project: 'lbl', labels })).body.id,
          },
          {
            list: '/v1/machine-types',
            create: async (i, labels) =>
              (await api.post('/v1/machine-types', { name: `lbl-m${i}`, vcpus: 1, memory_mib: 128, labels })).body.id,
          },
          {
            list: '/v1/instances?project=lbl',
            create: async (i, labels) => (await api.instance('lbl', `lbl-v${i}`, { labels })).instance.id,
          },
          {
            list: '/v1/hosts',
            create: async (i, labels) => {
              const { id } = await cp.app.services.hosts.ensureLocal(`lbl-h${i}`, async () => ({ serial: 'x' }));
              const res = await api.patch(`/v1/hosts/${id}`, { labels });
              expect(res.status).toBe(200);
              return id;
            },
          },
        ];
        for (const kind of kinds) {
          const ids: string[] = [];
          for (const [i, labels] of sets.entries()) ids.push(await kind.create(i, labels));
          const sep = kind.list.includes('?') ? '&' : '?';
          const select = async (q: string) => {
            const res = await api.get(`${kind.list}${sep}${q}&limit=1000`);
            expect(res.status, `${kind.list} ${q}`).toBe(200);
            return sortIds(res.body.items);
          };
          expect(await select('label=env=prod'), kind.list).toEqual([ids[0], ids[1]].sort());
          expect(await select('label=env'), kind.list).toEqual([ids[0], ids[1], ids[2]].sort());
          expect(await select('label=env=prod&label=tier=web'), kind.list).toEqual([ids[0]]);
          expect(await select('label=env%3Dprod%2Ctier'), kind.list).toEqual([ids[0]]);
          expect(await select('label=tier&label=env=dev'), kind.list).toEqual([ids[2]]);
          expect(await select('label=env=staging'), kind.list).toEqual([]);
        }
      });

      it('walks 250 instances in pages of 100 without duplicates or gaps', async () => {
        await api.project('paging');
        const created: string[] = [];
        for (let i = 0; i < 250; i++)
          created.push((await api.instance('paging', `p-${String(i).padStart(3, '0')}`)).instance.id);
        const seen: string[] = [];
        const sizes: number[] = [];
        let cursor: string | null = null;
        do {
          const res: Res = await api.get(
            `/v1/instances?project=paging&limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
          );
          expect(res.status).toBe(200);
          sizes.push(res.body.items.length);
          seen.push(...res.body.items.map((i: Instance) => i.id));
          cursor = res.body.next_cursor;
        } while (cursor !== null && sizes.length < 10);
        expect(sizes).toEqual([100, 100, 50]);
        expect(new Set(seen).size).toBe(250);
        expect(seen).toEqual([...created].sort());
        expect(seen).toEqual(created); // ids are time-ordered: the list is creation order
        // A page of the default size, and the default project not mixed in.
        const first = await api.get('/v1/instances?project=paging');
        expect(first.body.items).toHaveLength(100);
        expect(first.body.next_cursor).not.toBeNull();
      });

      it('applies PATCH as a JSON merge patch, with ETag and If-Match', async () => {
        await api.project('etag');
        const { instance } = await api.instance('etag', 'e-1', {
          labels: { a: '1', b: '2' },
          metadata: { keep: true, drop: 'x', nested: { x: 1, y: 2 } },
        });
        const got = await api.get(`/v1/instances/${instance.id}`);
        expect(got.headers.etag).toBe(`"${got.body.revision}"`);
        expect(got.body.revision).toBe(1);

        const stale = await api.patch(
          `/v1/instances/${instance.id}`,
          { labels: { a: null } },
          { headers: { 'if-match': '"7"' } },
        );
        expectError(stale, 'revision_mismatch');
        expect(stale.body.error.details).toMatchObject({ current: 1, expected: 7 });
        expect((await api.get(`/v1/instances/${instance.id}`)).body.labels).toEqual({ a: '1', b: '2' });

        const ok = await api.patch(
          `/v1/instances/${instance.id}`,
          { labels: { a: null, c: '3' }, metadata: { drop: null, nested: { y: null, z: 3 } } },
          { headers: { 'if-match': '"1"' } },
        );
        expect(ok.status).toBe(200);
        expect(ok.body.revision).toBe(2);
        expect(ok.headers.etag).toBe('"2"');
        expect(ok.body.labels).toEqual({ b: '2', c: '3' });
        expect(ok.body.metadata).toEqual({ keep: true, nested: { x: 1, z: 3 } });
        // The label index follows the merge: the removed label no longer matches.
        expect((await api.get('/v1/instances?project=etag&label=a')).body.items).toEqual([]);
        expect(sortIds((await api.get('/v1/instances?project=etag&label=c=3')).body.items)).toEqual([instance.id]);
        // W/ and unquoted forms are accepted; plain JSON works for PATCH too.
        const weak = await api.call('PATCH', `/v1/instances/${instance.id}`, {
          body: { labels: { d: '4' } },
          headers: { 'if-match': 'W/"2"' },
        });
        expect(weak.body.revision).toBe(3);
        expectError(
          await api.patch(`/v1/instances/${instance.id}`, {}, { headers: { 'if-match': '2' } }),
          'revision_mismatch',
        );
        expectError(
          await api.del(`/v1/instances/${instance.id}`, { headers: { 'if-match': '"1"' } }),
          'revision_mismatch',
        );
        await api.post('/v1/projects', { name: 'etag-p' });
        expectError(
          await api.patch('/v1/projects/etag-p', { description: 'x' }, { headers: { 'if-match': '"2"' } }),
          'revision_mismatch',
        );
        expect(
          (await api.patch('/v1/projects/etag-p', { description: 'x' }, { headers: { 'if-match': '"1"' } })).headers
            .etag,
        ).toBe('"2"');
      });

      it('keeps the history of an instance with before and after', async () => {
        await api.project('hist');
        const { instance } = await api.instance('hist', 'h-1');
        await api.patch(`/v1/instances/${instance.id}`, { labels: { team: 'ops' } });
        await api.post(`/v1/instances/${instance.id}/stop`);
        await api.post(`/v1/instances/${instance.id}/restart`);
        const res = await api.get(`/v1/instances/${instance.id}/history`);
        expect(res.status).toBe(200);
        const items = res.body.items as Array<{
          action: string;
          revision: number;
          actor: string;
          kind: string;
          resource_id: string;
          before: Instance | null;
          after: Instance | null;
        }>;
        expect(items.map((h) => h.action)).toEqual(['create', 'update', 'stop', 'restart']);
        expect(items.map((h) => h.revision)).toEqual([1, 2, 3, 4]);
        for (const h of items) {
          expect(h.kind).toBe('instance');
          expect(h.resource_id).toBe(instance.id);
          expect(h.actor).toMatch(/^tok_/);
        }
        expect(items[0]!.before).toBeNull();
        expect(items[0]!.after).toMatchObject({ id: instance.id, name: 'h-1', revision: 1 });
        expect(items[1]!.before!.labels).toEqual({});
        expect(items[1]!.after!.labels).toEqual({ team: 'ops' });
        expect(items[2]!.before!.spec.power_state).toBe('running');
        expect(items[2]!.after!.spec.power_state).toBe('stopped');
        expect(items[3]!.after!.spec.power_state).toBe('running');
        const page = await api.get(`/v1/instances/h-1/history?project=hist&limit=2`);
        expect(page.body.items.map((h: { action: string }) => h.action)).toEqual(['create', 'update']);
        const rest = await api.get(`/v1/instances/${instance.id}/history?limit=2&cursor=${page.body.next_cursor}`);
        expect(rest.body.items.map((h: { action: string }) => h.action)).toEqual(['stop', 'restart']);
        expect(rest.body.next_cursor).toBeNull();
      });
    });

    // ------------------------------------------------------------ operations
    describe('operations', () => {
      beforeAll(async () => {
        await api.project('ops');
      });

      it('answers 202 with the pending operation; cancelling undoes the create', async () => {
        const hostBefore = (await api.get(`/v1/hosts/${smallHost}`)).body.status.allocated;
        const res = await api.post('/v1/instances', {
          name: 'o-1',
          project: 'ops',
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
        });
        expect(res.status).toBe(202);
        expect(Object.keys(res.body).sort()).toEqual(['instance', 'operation']);
        const { instance, operation } = res.body as { instance: Instance; operation: Operation };
        expect(res.headers.location).toBe(`/v1/instances/${instance.id}`);
        expect(operation).toMatchObject({
          status: 'pending',
          kind: 'instance.create',
          project: 'ops',
          progress: 0,
          error: null,
          finished_at: null,
        });
        expect(operation.resources).toEqual([{ kind: 'instance', id: instance.id, name: 'o-1' }]);
        const got = await api.get(`/v1/operations/${operation.id}`);
        expect(got.status).toBe(200);
        expect(got.body).toEqual(operation);
        const listed = await api.get('/v1/operations?project=ops&status=pending');
        expect(listed.body.items.map((o: Operation) => o.id)).toContain(operation.id);

        const cancelled = await api.post(`/v1/operations/${operation.id}/cancel`);
        expect(cancelled.status).toBe(200);
        expect(cancelled.body).toMatchObject({ id: operation.id, status: 'cancelled' });
        expect(cancelled.body.finished_at).not.toBeNull();
        expectError(await api.get(`/v1/instances/${instance.id}`), 'instance_not_found');
        expect((await api.get('/v1/instances?project=ops')).body.items.map((i: Instance) => i.id)).not.toContain(
          instance.id,
        );
        expect((await api.get(`/v1/operations/${operation.id}`)).body.status).toBe('cancelled');
        expectError(await api.post(`/v1/operations/${operation.id}/cancel`), 'operation_not_cancellable');
        expect((await api.get(`/v1/hosts/${smallHost}`)).body.status.allocated).toEqual(hostBefore);
        // The name is free again.
        await api.instance('ops', 'o-1');
      });

      it('cancelling a pending stop restores the power state', async () => {
        const { instance } = await api.instance('ops', 'o-2');
        const stop = await api.post(`/v1/instances/${instance.id}/stop`);
        expect((await api.get(`/v1/instances/${instance.id}`)).body.spec.power_state).toBe('stopped');
        expect((await api.post(`/v1/operations/${stop.body.id}/cancel`)).body.status).toBe('cancelled');
        expect((await api.get(`/v1/instances/${instance.id}`)).body.spec.power_state).toBe('running');
      });

      it('?wait= returns after the wait with the operation still pending', async () => {
        const { operation } = await api.instance('ops', 'o-3');
        const t0 = Date.now();
        const res = await api.https('GET', `/v1/operations/${operation.id}?wait=1`);
        const took = Date.now() - t0;
        expect(res.status).toBe(200);
        expect(res.body.status).toBe('pending');
        expect(took).toBeGreaterThanOrEqual(900);
        expect(took).toBeLessThan(5000);
        // A wait ends early when the operation ends.
        const t1 = Date.now();
        const waiting = api.https('GET', `/v1/operations/${operation.id}?wait=10`);
        await new Promise((r) => setTimeout(r, 200));
        await api.post(`/v1/operations/${operation.id}/cancel`);
        const done = await waiting;
        expect(done.body.status).toBe('cancelled');
        expect(Date.now() - t1).toBeLessThan(5000);
      });
    });

    // ------------------------------------------------------------ idempotency
    describe('Idempotency-Key', () => {
      beforeAll(async () => {
        await api.project('idem');
      });

      it('replays POST /v1/instances and creates nothing new', async () => {
        const body = { name: 'i-1', project: 'idem', image: 'img', vcpus: 1, memory_mib: 128 };
        const headers = { 'idempotency-key': 'create-i-1' };
        const first = await api.post('/v1/instances', body, { headers });
        expect(first.status).toBe(202);
        expect(first.headers['idempotent-replayed']).toBeUndefined();
        const counts = await Promise.all(
          (['instances', 'operations', 'history', 'events'] as const).map((t) => api.count(t)),
        );
        const again = await api.post('/v1/instances', body, { headers });
        expect(again.status).toBe(202);
        expect(again.headers['idempotent-replayed']).toBe('true');
        expect(again.body.instance.id).toBe(first.body.instance.id);
        expect(again.body.operation.id).toBe(first.body.operation.id);
        expect(again.body).toEqual(first.body);
        expect(
          await Promise.all((['instances', 'operations', 'history', 'events'] as const).map((t) => api.count(t))),
        ).toEqual(counts);

        expectError(await api.post('/v1/instances', { ...body, vcpus: 2 }, { headers }), 'idempotency_key_reused');
        expectError(await api.post('/v1/instances', { ...body, name: 'i-2' }, { headers }), 'idempotency_key_reused');
        expectError(await api.get('/v1/instances/i-2?project=idem'), 'instance_not_found');
        // Keys belong to the token: another token may use the same key.
        const other = await api.post('/v1/tokens', { name: 'idem-2', projects: ['idem'] });
        const mine = await api.post('/v1/instances', { ...body, name: 'i-3' }, { headers, token: other.body.secret });
        expect(mine.status).toBe(202);
        expect(mine.headers['idempotent-replayed']).toBeUndefined();
      });

      it('replays POST /v1/projects, including failures', async () => {
        const headers = { 'idempotency-key': 'project-k' };
        const first = await api.post('/v1/projects', { name: 'idem-p' }, { headers });
        expect(first.status).toBe(201);
        const again = await api.post('/v1/projects', { name: 'idem-p' }, { headers });
        expect(again.status).toBe(201);
        expect(again.headers['idempotent-replayed']).toBe('true');
        expect(again.body).toEqual(first.body);
        expect(
          (await api.get('/v1/projects?limit=1000')).body.items.filter((p: { name: string }) => p.name === 'idem-p'),
        ).toHaveLength(1);
        expectError(await api.post('/v1/projects', { name: 'idem-q' }, { headers }), 'idempotency_key_reused');
        expectError(await api.get('/v1/projects/idem-q'), 'project_not_found');
        // A final 4xx is replayed as well.
        const clash = await api.post('/v1/projects', { name: 'idem-p' }, { headers: { 'idempotency-key': 'clash' } });
        expectError(clash, 'name_conflict');
        const clash2 = await api.post('/v1/projects', { name: 'idem-p' }, { headers: { 'idempotency-key': 'clash' } });
        expectError(clash2, 'name_conflict');
        expect(clash2.headers['idempotent-replayed']).toBe('true');
        expectError(
          await api.post('/v1/projects', { name: 'idem-r' }, { headers: { 'idempotency-key': 'x'.repeat(201) } }),
          'validation_failed',
          'Idempotency-Key',
        );
      });
    });

    // ------------------------------------------------------------ events
    describe('events', () => {
      beforeAll(async () => {
        await api.project('ev');
        await api.project('ev-other');
      });

      it('streams Server-Sent Events with seq ids and resumes with Last-Event-ID', async () => {
        const subscribers = () => (cp.app.services.bus as unknown as { listeners: Set<unknown> }).listeners.size;
        const idle = subscribers();
        const stream = await api.sse('/v1/events?project=ev');
        expect(subscribers()).toBe(idle + 1);
        let lastSeq: number;
        try {
          expect(stream.status).toBe(200);
          expect(stream.contentType).toMatch(/^text\/event-stream/);
          const { instance, operation } = await api.instance('ev', 'ev-1');
          const created = await stream.next(
            (m) => m.event === 'resource.created' && m.data.resource_id === instance.id,
          );
          const opCreated = await stream.next(
            (m) => m.event === 'operation.created' && m.data.resource_id === operation.id,
          );
          expect(created.data).toMatchObject({
            type: 'resource.created',
            kind: 'instance',
            project: 'ev',
            data: { name: 'ev-1' },
          });
          expect(opCreated.data.data.operation).toMatchObject({
            id: operation.id,
            status: 'pending',
            kind: 'instance.create',
          });
          for (const m of stream.messages) {
            expect(m.id).toBe(String(m.data.seq));
            expect(m.event).toBe(m.data.type);
            expect(m.data.project).toBe('ev');
          }
          const seqs = stream.messages.map((m) => m.data.seq as number);
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
          expect(new Set(seqs).size).toBe(seqs.length);
          lastSeq = Math.max(...seqs);
        } finally {
          stream.close();
        }

        // Missed while disconnected: replayed on reconnect, nothing older.
        const missed = await api.instance('ev', 'ev-2');
        const resumed = await api.sse('/v1/events?project=ev', { headers: { 'last-event-id': String(lastSeq) } });
        try {
          await resumed.next((m) => m.event === 'resource.created' && m.data.resource_id === missed.instance.id);
          await resumed.next((m) => m.event === 'operation.created' && m.data.resource_id === missed.operation.id);
          const live = await api.instance('ev', 'ev-3');
          await resumed.next((m) => m.event === 'resource.created' && m.data.resource_id === live.instance.id);
          const seqs = resumed.messages.map((m) => m.data.seq as number);
          expect(Math.min(...seqs)).toBeGreaterThan(lastSeq);
          expect(seqs).toEqual([...new Set(seqs)].sort((a, b) => a - b));
        } finally {
          resumed.close();
        }
        // Closed streams unsubscribe.
        for (let i = 0; i < 50 && subscribers() !== idle; i++) await new Promise((r) => setTimeout(r, 20));
        expect(subscribers()).toBe(idle);
      });

      it("shows a project-scoped token only its projects' events", async () => {
        const tok = (await api.post('/v1/tokens', { name: 'ev-reader', projects: ['ev'] })).body.secret as string;
        const stream = await api.sse('/v1/events', { token: tok });
        try {
          const foreign = await api.instance('ev-other', 'not-yours');
          const own = await api.instance('ev', 'yours');
          // Events arrive in seq order, so the foreign ones (earlier) would be here by now.
          await stream.next((m) => m.event === 'operation.created' && m.data.resource_id === own.operation.id);
          expect(stream.messages.length).toBeGreaterThanOrEqual(2);
          for (const m of stream.messages) expect(m.data.project).toBe('ev');
          expect(
            stream.messages.some(
              (m) => m.data.resource_id === foreign.instance.id || m.data.resource_id === foreign.operation.id,
            ),
          ).toBe(false);
        } finally {
          stream.close();
        }
        // Asking for another project by name gives nothing either.
        const page = await api.https('GET', '/v1/events?since=0&project=ev-other', { token: tok });
        expect(page.status).toBe(200);
        expect(page.body.items).toEqual([]);
        const mine = await api.https('GET', '/v1/events?since=0', { token: tok });
        expect(mine.body.items.length).toBeGreaterThan(0);
        for (const e of mine.body.items) expect(e.project).toBe('ev');
        expectError(await api.https('GET', '/v1/events?since=0', { token: null }), 'unauthenticated');
      });

      it('answers a JSON page of events after ?since=', async () => {
        const res = await api.get('/v1/events?since=0');
        expect(res.status).toBe(200);
        expect(Object.keys(res.body).sort()).toEqual(['items', 'next_cursor']);
        const items = res.body.items as Array<{ seq: number; type: string; id: string }>;
        expect(items).toHaveLength(100);
        expect(items[0]!.seq).toBeGreaterThan(0);
        for (let i = 1; i < items.length; i++) expect(items[i]!.seq).toBeGreaterThan(items[i - 1]!.seq);
        expect(res.body.next_cursor).toBe(String(items[99]!.seq));
        const next = await api.get(`/v1/events?since=${res.body.next_cursor}`);
        expect(next.body.items[0].seq).toBeGreaterThan(items[99]!.seq);
        const filtered = await api.get('/v1/events?since=0&project=ev&type=operation&kind=operation');
        expect(filtered.body.items.length).toBeGreaterThan(0);
        for (const e of filtered.body.items)
          expect(e).toMatchObject({ project: 'ev', kind: 'operation', type: expect.stringMatching(/^operation\./) });
        expectError(await api.get('/v1/events?since=-1'), 'validation_failed', 'since');
      });
    });
  });
}
