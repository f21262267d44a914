import { connect } from 'node:tls';
import { ERROR_CODES, isErrorCode } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

/** Send `raw` bytes to the server over TLS and read the answer until it closes the connection. */
function rawRequest(url: string, raw: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), rejectUnauthorized: false }, () => socket.write(raw));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer')));
  });
}

describe('errors found before routing use the envelope', () => {
  let cp: TestControlPlane;
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open());
  });
  afterAll(async () => {
    await cp?.close();
  });

  const get = (url: string) =>
    cp.app.http.inject({ method: 'GET', url, headers: { authorization: `Bearer ${cp.adminToken}` } });

  it('a bad percent-encoding and an over-long path parameter are validation_failed on the path', async () => {
    for (const url of ['/v1/projects/%zz', `/v1/projects/${'a'.repeat(150)}`, `/v1/instances/${'%41'.repeat(120)}`]) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.json(), url).toMatchObject({ error: { code: 'validation_failed', details: { field: 'path' } } });
    }
  });

  it('a request Node refuses to parse (a NUL in a header) gets the envelope, not a bare 400', async () => {
    const answer = await rawRequest(cp.url, 'GET /v1/projects HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0000b\r\n\r\n');
    const [head, body] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 400 /);
    expect(head).toMatch(/content-type: application\/json/i);
    const parsed = JSON.parse(body!) as { error: { code: string } };
    expect(parsed.error.code).toBe('validation_failed');
    expect(isErrorCode(parsed.error.code)).toBe(true);
  });

  it('a request line and headers over the limit of Node are a 431 with the code of that status', async () => {
    const answer = await rawRequest(
      cp.url,
      `GET /v1/projects?project=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    const [head, body] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 431 /);
    const parsed = JSON.parse(body!) as { error: { code: string } };
    expect(parsed.error.code).toBe('headers_too_large');
    expect(isErrorCode(parsed.error.code) && ERROR_CODES[parsed.error.code].status).toBe(431);
  });

  it('a path under /docs/static/ that tries to leave it is a 404 or 400 in the envelope, over a real socket', async () => {
    const variants = [
      '/docs/static/../../../../etc/passwd',
      '/docs/static/..',
      '/docs/static/%2e%2e',
      '/docs/static/%2e%2e/%2e%2e/etc/passwd',
      '/docs/static/.%2e/.%2e/package.json',
      '/docs/static/..%2f..%2f..%2fetc%2fpasswd',
      '/docs/static/%252e%252e%252fpackage.json',
      '/docs/static/..%5c..%5cpackage.json',
      '/docs/static/..\\..\\package.json',
      '/docs/static/%00',
      '/docs/static/index.html%00',
      '/docs/static/..%00/',
      '/docs/static/%c0%ae%c0%ae/',
      '/docs/static/%2fetc%2fpasswd',
      '/docs/%2e%2e/v1/projects',
    ];
    for (const path of variants) {
      const answer = await rawRequest(cp.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      const [head, body] = answer.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head!)?.[1]);
      expect([400, 404], `${path}: ${head}`).toContain(status);
      expect(head, path).toMatch(/content-type: application\/json/i);
      const parsed = JSON.parse(body!) as { error: { code: string; message: string } };
      expect(isErrorCode(parsed.error.code), path).toBe(true);
      expect(body, path).not.toMatch(/root:|"workspaces"/);
    }
    // The files themselves are still served.
    const ok = await rawRequest(
      cp.url,
      'GET /docs/static/swagger-ui.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(ok).toMatch(/^HTTP\/1\.1 200 /);
  });
});
