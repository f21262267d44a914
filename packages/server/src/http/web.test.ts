import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installWeb } from './web.js';

// The built web UI's assets go out compressed to browsers that accept it, from the copies the build wrote,
// and as they are to clients that do not; the bytes are the same once decoded.

describe('web assets', () => {
  let dir = '';
  let http: FastifyInstance;
  const js = `export const rows = [${Array.from({ length: 400 }, (_, i) => `"row ${i}"`).join(',')}];\n`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-web-'));
    await mkdir(join(dir, 'assets'));
    await writeFile(join(dir, 'index.html'), '<!doctype html><title>floe</title>');
    await writeFile(join(dir, 'assets', 'app-abc.js'), js);
    await writeFile(join(dir, 'assets', 'app-abc.js.gz'), gzipSync(js));
    await writeFile(join(dir, 'assets', 'app-abc.js.br'), brotliCompressSync(js));
    await writeFile(join(dir, 'assets', 'plain-abc.js'), 'export {};\n');
    http = Fastify();
    await installWeb(http, `${dir}/`);
    await http.ready();
  });
  afterAll(async () => {
    await http?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (url: string, encoding?: string) =>
    http.inject({ method: 'GET', url, headers: encoding === undefined ? {} : { 'accept-encoding': encoding } });

  it('sends the brotli copy, else the gzip copy, else the file, always as JavaScript', async () => {
    const br = await get('/assets/app-abc.js', 'gzip, deflate, br');
    expect(br.statusCode).toBe(200);
    expect(br.headers['content-encoding']).toBe('br');
    expect(br.headers['content-type']).toMatch(/javascript/);
    expect(br.headers.vary).toMatch(/accept-encoding/i);
    expect(brotliDecompressSync(br.rawPayload).toString()).toBe(js);
    expect(br.rawPayload.length).toBeLessThan(js.length / 2);

    const gz = await get('/assets/app-abc.js', 'gzip');
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.rawPayload).toString()).toBe(js);

    const plain = await get('/assets/app-abc.js', 'identity');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body).toBe(js);
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });

  it('sends a file without copies as it is, and refuses names outside the assets', async () => {
    const small = await get('/assets/plain-abc.js', 'br, gzip');
    expect(small.statusCode).toBe(200);
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(small.body).toBe('export {};\n');
    expect((await get('/assets/missing.js', 'br')).statusCode).toBe(404);
    expect((await get('/assets/..%2Findex.html', 'br')).statusCode).toBe(404);
  });
});
