import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Operation } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { startImageServer, type ImageServer } from '../testing-image-server.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';

const QEMU_IMG = spawnSync('qemu-img', ['--version']).status === 0;
if (!QEMU_IMG) console.warn('[floe] image error tests skipped: qemu-img is not installed (Debian package qemu-utils)');

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

/** Something that looks like a path of this machine: "/" after a space, quote or the start, then a name and "/". */
const ABSOLUTE_PATH = /(^|[\s'"`(=])\/[\w.-]+\//;

/** A message shown to the client names no file of the server. */
function expectNoPath(message: string, cp: TestControlPlane): void {
  expect(message).not.toContain(cp.dataDir);
  expect(message).not.toContain(tmpdir());
  expect(message).not.toMatch(ABSOLUTE_PATH);
}

describe.skipIf(!QEMU_IMG)('image errors name no file of the server', () => {
  let cp: TestControlPlane;
  let work: string;
  let server: ImageServer;
  let damaged: Buffer;
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open());
    work = await mkdtemp(join(tmpdir(), 'floe-image-errors-'));
    // A qcow2 whose L1 table offset is not aligned: the header checks pass, qemu-img cannot open it.
    const file = join(work, 'damaged.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '1M']);
    damaged = readFileSync(file);
    damaged.writeBigUInt64BE(0x1234567n, 40);
    server = await startImageServer({ 'damaged.qcow2': damaged });
  });
  afterAll(async () => {
    await server?.close();
    await cp?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('an upload qemu-img cannot open: its reason, without the path of the upload', async () => {
    expect((await injectJson(cp, 'POST', '/v1/images', { name: 'damaged' })).status).toBe(201);
    const res = await cp.app.http.inject({
      method: 'PUT',
      url: '/v1/images/damaged/file',
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/octet-stream' },
      payload: damaged,
    });
    const { error } = res.json<{ error: { code: string; message: string } }>();
    expect(res.statusCode, res.body).toBe(422);
    expect(error.code).toBe('image_format_unsupported');
    expect(error.message).toMatch(/L1 table offset invalid/);
    expectNoPath(res.body, cp);
  });

  it('an import that fails on the control plane (its image directory is broken): no path in the operation', async () => {
    // A file where the image directory should be: creating the download fails with an fs error naming it.
    await rm(join(cp.dataDir, 'images'), { recursive: true, force: true });
    await writeFile(join(cp.dataDir, 'images'), 'not a directory');
    const res = await injectJson(cp, 'POST', '/v1/images/import?wait=20', {
      name: 'broken-dir',
      source: { url: `${server.url}/files/damaged.qcow2` },
    });
    expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
    const op = (res.body as { operation: Operation }).operation;
    expect(op.status, JSON.stringify(op)).toBe('failed');
    expectNoPath(JSON.stringify(op), cp);
    expect(op.error?.message).toMatch(/ENOTDIR|EEXIST/);
  });
});
