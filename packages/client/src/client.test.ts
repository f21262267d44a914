import { webcrypto } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import * as x509 from '@peculiar/x509';
import type { Event, Operation } from '@floe/api';
import { afterEach, describe, expect, it } from 'vitest';
import { FloeApiError, FloeClient, SseParser, buildQuery, type SseMessage } from './index.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string, n: number) => void;

const servers: Server[] = [];
const clients: FloeClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
});

/** Starts a stub API on 127.0.0.1 that records every request. */
async function stub(handler: Handler, server: Server = createServer()): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body, seen.length);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const scheme = 'cert' in server ? 'https' : 'http';
  return { url: `${scheme}://127.0.0.1:${port}`, seen };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function client(url: string, extra: Partial<ConstructorParameters<typeof FloeClient>[0]> = {}): FloeClient {
  const c = new FloeClient({ url, token: 'secret-token', timeoutMs: 5000, ...extra });
  clients.push(c);
  return c;
}

function op(over: Partial<Operation>): Operation {
  return {
    id: 'op_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    project: 'default',
    kind: 'instance.start',
    status: 'running',
    progress: 0,
    message: '',
    resources: [],
    error: null,
    created_by: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    created_at: '2025-01-01T00:00:00.000Z',
    updated_at: '2025-01-01T00:00:00.000Z',
    finished_at: null,
    ...over,
  };
}

describe('requests and errors', () => {
  it('turns the error envelope into a FloeApiError with status, code, details and request id', async () => {
    const { url } = await stub((_req, res) =>
      json(
        res,
        404,
        { error: { code: 'instance_not_found', message: 'instance "web" not found', details: { id: 'web' } } },
        { 'x-request-id': 'req-7' },
      ),
    );
    const err = await client(url)
      .instances.get('web')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloeApiError);
    const e = err as FloeApiError;
    expect(e.status).toBe(404);
    expect(e.code).toBe('instance_not_found');
    expect(e.message).toBe('instance "web" not found');
    expect(e.details).toEqual({ id: 'web' });
    expect(e.requestId).toBe('req-7');
  });

  it('reports a non-floe error body as invalid_response and an unreachable server as network_error', async () => {
    const { url } = await stub((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<h1>Bad Gateway</h1>');
    });
    const bad = (await client(url)
      .projects.list()
      .catch((e: unknown) => e)) as FloeApiError;
    expect(bad.code).toBe('invalid_response');
    expect(bad.status).toBe(502);

    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((r) => probe.close(() => r()));
    const down = (await client(`http://127.0.0.1:${port}`)
      .health()
      .catch((e: unknown) => e)) as FloeApiError;
    expect(down).toBeInstanceOf(FloeApiError);
    expect(down.code).toBe('network_error');
    expect(down.status).toBe(0);
    expect(down.details.cause).toBe('ECONNREFUSED');
  });

  it('sends the token, encodes repeated labels and the project, and escapes path segments', async () => {
    const { url, seen } = await stub((_req, res) => json(res, 200, { items: [], next_cursor: null }));
    const c = client(`${url}/prefix/`);
    await c.instances.list({ label: ['env=prod', 'tier'], project: 'shop', limit: 5 });
    await c.instances.history('we b/x', { limit: 2 });
    expect(seen[0]?.url).toBe('/prefix/v1/instances?label=env%3Dprod&label=tier&project=shop&limit=5');
    expect(new URL(seen[0]!.url, url).searchParams.getAll('label')).toEqual(['env=prod', 'tier']);
    expect(seen[0]?.headers.authorization).toBe('Bearer secret-token');
    expect(seen[0]?.headers['user-agent']).toMatch(/^floe-client\//);
    expect(seen[1]?.url).toBe('/prefix/v1/instances/we%20b%2Fx/history?limit=2');
    expect(buildQuery({ a: undefined, b: null, c: false })).toBe('?c=false');
  });

  it('sends PATCH as a merge patch with If-Match and reads the ETag', async () => {
    const { url, seen } = await stub((_req, res) => json(res, 200, { name: 'shop', revision: 5 }, { etag: '"5"' }));
    const c = client(url);
    await c.projects.update('shop', { labels: { env: 'prod', old: null } }, { ifMatch: 4 });
    expect(seen[0]?.method).toBe('PATCH');
    expect(seen[0]?.headers['content-type']).toBe('application/merge-patch+json');
    expect(seen[0]?.headers['if-match']).toBe('"4"');
    expect(JSON.parse(seen[0]!.body)).toEqual({ labels: { env: 'prod', old: null } });
    const res = await c.send('GET', '/v1/projects/shop');
    expect(res.etag).toBe('5');
  });

  it('sends a fresh Idempotency-Key on every POST, or the given one', async () => {
    const { url, seen } = await stub((_req, res) => json(res, 201, { id: 'x' }));
    const c = client(url);
    await c.projects.create({ name: 'a' });
    await c.projects.create({ name: 'b' });
    await c.projects.create({ name: 'c' }, { idempotencyKey: 'my-key' });
    const keys = seen.map((s) => s.headers['idempotency-key']);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[0]).not.toBe(keys[1]);
    expect(keys[2]).toBe('my-key');
    expect(seen[0]?.headers['content-type']).toBe('application/json');
    expect(seen.every((s) => s.method === 'POST')).toBe(true);
  });

  it('retries a POST once after a connection reset, with the same Idempotency-Key', async () => {
    const { url, seen } = await stub((req, res, _body, n) => {
      if (n === 1)
        req.socket.destroy(); // drop the first attempt without an answer
      else json(res, 202, op({ id: 'op_01JB8X0Q3E6M2T9K4V7W5YB1C4' }));
    });
    const result = await client(url).instances.start('web', { project: 'shop' });
    expect(result.id).toBe('op_01JB8X0Q3E6M2T9K4V7W5YB1C4');
    expect(seen).toHaveLength(2);
    expect(seen[0]?.url).toBe('/v1/instances/web/start?project=shop');
    expect(seen[1]?.headers['idempotency-key']).toBe(seen[0]?.headers['idempotency-key']);
  });

  it('does not retry forever: a second reset is a network_error', async () => {
    const { url, seen } = await stub((req) => req.socket.destroy());
    const err = (await client(url)
      .projects.create({ name: 'x' })
      .catch((e: unknown) => e)) as FloeApiError;
    expect(err.code).toBe('network_error');
    expect(seen).toHaveLength(2);
  });

  it('listAll follows next_cursor to the last page', async () => {
    const pages: Record<string, { items: { name: string }[]; next_cursor: string | null }> = {
      '': { items: [{ name: 'a' }, { name: 'b' }], next_cursor: 'c1' },
      c1: { items: [{ name: 'c' }], next_cursor: 'c2' },
      c2: { items: [{ name: 'd' }], next_cursor: null },
    };
    const { url, seen } = await stub((req, res) => {
      const cursor = new URL(req.url ?? '/', 'http://x').searchParams.get('cursor') ?? '';
      json(res, 200, pages[cursor]);
    });
    const all = await client(url).images.listAll({ project: 'shop', label: 'os=debian' });
    expect(all.map((i) => i.name)).toEqual(['a', 'b', 'c', 'd']);
    expect(seen.map((s) => s.url)).toEqual([
      '/v1/images?project=shop&label=os%3Ddebian',
      '/v1/images?project=shop&label=os%3Ddebian&cursor=c1',
      '/v1/images?project=shop&label=os%3Ddebian&cursor=c2',
    ]);
  });
});

describe('images.import', () => {
  it('POSTs the source to /v1/images/import with ?wait and the Idempotency-Key, and answers image and operation', async () => {
    const answer = {
      image: { id: 'img_1', name: 'debian-12', status: { state: 'importing' } },
      operation: op({ kind: 'image.import', status: 'pending' }),
    };
    const { url, seen } = await stub((_req, res) => json(res, 202, answer));
    const source = { url: 'https://mirror.example/debian.qcow2', checksum_url: 'https://mirror.example/SHA512SUMS' };
    const got = await client(url).images.import({ name: 'debian-12', source }, { wait: 5, idempotencyKey: 'k-1' });
    expect(got).toEqual(answer);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/v1/images/import?wait=5' });
    expect(seen[0]!.headers['idempotency-key']).toBe('k-1');
    expect(JSON.parse(seen[0]!.body)).toEqual({ name: 'debian-12', source });
  });

  it('rejects with the stable code of the error', async () => {
    const { url } = await stub((_req, res) =>
      json(res, 400, {
        error: { code: 'image_url_unsupported', message: 'only http and https', details: { field: 'source.url' } },
      }),
    );
    const err = await client(url)
      .images.import({ name: 'x', source: { url: 'file:///etc/shadow' } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloeApiError);
    expect((err as FloeApiError).code).toBe('image_url_unsupported');
    expect((err as FloeApiError).status).toBe(400);
  });
});

describe('SseParser', () => {
  const stream =
    '\uFEFF: keepalive\n' +
    'id: 1\nevent: resource.created\ndata: {"a":\ndata: 1}\n\n' +
    ': keepalive\r\n' +
    'id: 2\r\nevent: log\r\ndata: é ünïcode\r\n\r\n' +
    'data:no-space\rid: 3\r\r' +
    'retry: 1500\nid: 4\n\n' + // no data: nothing dispatched, but the id counts
    'event: x\ndata\n\n';

  const expected: SseMessage[] = [
    { event: 'resource.created', data: '{"a":\n1}', id: '1' },
    { event: 'log', data: 'é ünïcode', id: '2' },
    { event: 'message', data: 'no-space', id: '3' },
    { event: 'x', data: '', id: '4' },
  ];

  it('parses a whole stream: comments, CRLF and CR, multi-line data, BOM, persistent ids, retry', () => {
    const p = new SseParser();
    expect(p.push(stream)).toEqual(expected);
    expect(p.lastEventId).toBe('4');
    expect(p.retryMs).toBe(1500);
  });

  it('gives the same messages however the bytes are split', () => {
    const bytes = new TextEncoder().encode(stream);
    for (const size of [1, 2, 3, 7, 13]) {
      const p = new SseParser();
      const out: SseMessage[] = [];
      for (let i = 0; i < bytes.length; i += size) out.push(...p.push(bytes.subarray(i, i + size)));
      expect(out, `chunks of ${size}`).toEqual(expected);
    }
  });

  it('keeps an unfinished message until its blank line arrives', () => {
    const p = new SseParser();
    expect(p.push('id: 9\ndata: x')).toEqual([]);
    expect(p.push('\n')).toEqual([]);
    expect(p.push('\n')).toEqual([{ event: 'message', data: 'x', id: '9' }]);
  });
});

function sseEvent(seq: number, type = 'instance.state'): string {
  const ev: Event = {
    seq,
    id: `evt_01JB8X0Q3E6M2T9K4V7W5YB1C${seq}`,
    time: '2025-01-01T00:00:00.000Z',
    type,
    project: 'default',
    kind: 'instance',
    resource_id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    data: { state: 'running', n: seq },
    actor: null,
  };
  return `id: ${seq}\nevent: ${type}\ndata: ${JSON.stringify(ev)}\n\n`;
}

describe('events.stream', () => {
  it('parses events split across writes and reconnects with Last-Event-ID after a drop', async () => {
    const { url, seen } = await stub((req, res, _body, n) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (n === 1) {
        const text = `: keepalive\n\n${sseEvent(1)}${sseEvent(2)}`;
        res.write(text.slice(0, 40));
        setTimeout(() => {
          res.write(text.slice(40));
          setTimeout(() => req.socket.destroy(), 20); // the connection drops
        }, 20);
      } else {
        res.write(sseEvent(2) + sseEvent(3)); // the server replays 2; the client must skip it
      }
    });
    const ac = new AbortController();
    const got: Event[] = [];
    for await (const ev of client(url).events.stream(
      { project: 'default', kind: ['instance', 'operation'] },
      { signal: ac.signal, reconnectDelayMs: 10 },
    )) {
      got.push(ev);
      if (got.length === 3) ac.abort();
    }
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(got[0]?.data).toEqual({ state: 'running', n: 1 });
    expect(seen).toHaveLength(2);
    expect(seen[0]?.headers.accept).toBe('text/event-stream');
    expect(seen[0]?.headers['last-event-id']).toBeUndefined();
    expect(seen[0]?.url).toBe('/v1/events?project=default&kind=instance&kind=operation');
    expect(seen[1]?.headers['last-event-id']).toBe('2');
    expect(new URL(seen[1]!.url, url).searchParams.get('since')).toBe('2');
  });

  it('throws API errors such as forbidden instead of reconnecting', async () => {
    const { url, seen } = await stub((_req, res) => json(res, 403, { error: { code: 'forbidden', message: 'no' } }));
    const it = client(url).events.stream({}, { reconnectDelayMs: 10 });
    const err = (await it.next().catch((e: unknown) => e)) as FloeApiError;
    expect(err.code).toBe('forbidden');
    expect(seen).toHaveLength(1);
  });
});

describe('operations.wait', () => {
  it('long-polls until a terminal status and reports each change', async () => {
    const states = [
      op({ progress: 10, message: 'placing' }),
      op({ progress: 10, message: 'placing' }),
      op({ progress: 60, message: 'booting', updated_at: '2025-01-01T00:00:05.000Z' }),
      op({ status: 'succeeded', progress: 100, message: 'done' }),
    ];
    const { url, seen } = await stub((_req, res, _b, n) => json(res, 200, states[Math.min(n, states.length) - 1]));
    const updates: string[] = [];
    const final = await client(url).operations.wait('op_01JB8X0Q3E6M2T9K4V7W5YB1C3', {
      onUpdate: (o) => updates.push(`${o.status}:${o.progress}`),
    });
    expect(final.status).toBe('succeeded');
    expect(updates).toEqual(['running:10', 'running:60', 'succeeded:100']);
    expect(seen).toHaveLength(4);
    expect(seen[0]?.url).toBe('/v1/operations/op_01JB8X0Q3E6M2T9K4V7W5YB1C3?wait=30');
  });

  it('resolves with a failed operation; returns a finished one without asking; times out otherwise', async () => {
    const failed = op({ status: 'failed', error: { code: 'no_host_capacity', message: 'no room' } });
    const { url, seen } = await stub((_req, res) => json(res, 200, failed));
    const c = client(url);
    const res = await c.operations.wait(op({}), { pollSeconds: 2 });
    expect(res.status).toBe('failed');
    expect(res.error?.code).toBe('no_host_capacity');
    expect(seen[0]?.url).toMatch(/\?wait=2$/);
    const done = op({ status: 'succeeded' });
    expect(await c.operations.wait(done)).toBe(done);
    expect(seen).toHaveLength(1);

    const { url: url2 } = await stub((_req, res) => json(res, 200, op({})));
    const err = (await client(url2)
      .operations.wait('op_01JB8X0Q3E6M2T9K4V7W5YB1C3', { timeoutMs: 300 })
      .catch((e: unknown) => e)) as FloeApiError;
    expect(err.code).toBe('operation_timeout');
  });
});

describe("https with floe's own CA", () => {
  it('trusts the given CA and rejects the server without it', async () => {
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const subtle = webcrypto.subtle;
    const notBefore = new Date(Date.now() - 60_000);
    const notAfter = new Date(Date.now() + 3600_000);
    const caKeys = await subtle.generateKey(alg, true, ['sign', 'verify']);
    const ca = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01',
      name: 'CN=floe test CA',
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      ],
    });
    const leafKeys = await subtle.generateKey(alg, true, ['sign', 'verify']);
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: '02',
      subject: 'CN=127.0.0.1',
      issuer: ca.subject,
      notBefore,
      notAfter,
      signingKey: caKeys.privateKey,
      publicKey: leafKeys.publicKey,
      signingAlgorithm: alg,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }])],
    });
    const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', leafKeys.privateKey)).toString('base64');
    const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
    const server = createHttpsServer({ key, cert: leaf.toString('pem') });
    const { url } = await stub((_req, res) => json(res, 200, { status: 'ok', version: '1.2.3' }), server);
    expect(url.startsWith('https://127.0.0.1:')).toBe(true);

    expect(await client(url, { ca: ca.toString('pem') }).health()).toEqual({ status: 'ok', version: '1.2.3' });
    const err = (await client(url)
      .health()
      .catch((e: unknown) => e)) as FloeApiError;
    expect(err.code).toBe('network_error');
  });
});
