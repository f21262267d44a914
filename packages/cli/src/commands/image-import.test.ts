import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Image } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The CLI never depends on the server package; only this test borrows it to run a real control plane.
import { storeTargets } from '../../../server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../../server/src/testing.js';
import { run } from '../program.js';
import { uploadLine } from './image-import.js';
import { OutputBuffer as Buf } from '../testing.js';

const QEMU_IMG = spawnSync('qemu-img', ['--version']).status === 0;
if (!QEMU_IMG) console.warn('[floe] image import tests skipped: qemu-img is not installed (Debian package qemu-utils)');

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../../..');

const sha256Of = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

it('formats progress lines with and without a total', () => {
  expect(uploadLine(512, 2048)).toBe('upload 512 B / 2.0 KiB (25%)');
  expect(uploadLine(3 * 1024 * 1024, null)).toBe('upload 3.0 MiB');
});

describe.skipIf(!QEMU_IMG || storeTargets()[0]!.skip !== null)('floe image import against a control plane', () => {
  let cp: TestControlPlane;
  let dir: string;
  let env: Record<string, string>;

  async function floe(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    const out = new Buf();
    const err = new Buf();
    const code = await run(argv, { stdout: out, stderr: err, env, stdinIsTTY: false });
    return { code, out: out.text, err: err.text };
  }

  beforeAll(async () => {
    cp = await startTestControlPlane(await storeTargets()[0]!.open());
    dir = await mkdtemp(join(tmpdir(), 'floe-cli-import-'));
    writeFileSync(join(dir, 'ca.pem'), cp.ca.certPem);
    env = {
      FLOE_CONFIG: join(dir, 'config.json'),
      FLOE_URL: cp.url,
      FLOE_TOKEN: cp.adminToken,
      FLOE_CA: join(dir, 'ca.pem'),
    };
  });
  afterAll(async () => {
    await cp?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('imports a qcow2: the image is ready with its sha256, progress in plain lines', async () => {
    const file = join(dir, 'small.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '4M']);
    const r = await floe(['image', 'import', file, '--name', 'small', '--os', 'test-os', '--min-disk-gib', '2']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^upload .* \(100%\)$/m);
    expect(r.out).toContain('ready');
    const img = await cp.app.services.images.get(cp.admin, 'small', 'default');
    expect(img.status).toMatchObject({ state: 'ready', sha256: sha256Of(file) });
    expect(img.spec).toMatchObject({ os: 'test-os', min_disk_gib: 2, format: 'qcow2' });

    // -o json: the image and nothing else.
    const again = join(dir, 'again.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', again, '5M']);
    const j = await floe([
      '-o',
      'json',
      'image',
      'import',
      again,
      '--name',
      'again',
      '--sha256',
      sha256Of(again).toUpperCase(),
    ]);
    expect(j.code, j.err).toBe(0);
    const shown = JSON.parse(j.out) as Image;
    expect(shown.status).toMatchObject({
      state: 'ready',
      sha256: sha256Of(again),
      virtual_size_bytes: 5 * 1024 * 1024,
    });

    // A name whose image already has a file is refused before anything is sent.
    const dup = await floe(['image', 'import', again, '--name', 'again']);
    expect(dup.code).toBe(1);
    expect(dup.err).toContain('(name_conflict)');
  });

  it('fails with the code and leaves no image when the sha256 differs', async () => {
    const file = join(dir, 'wrong.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '1M']);
    const r = await floe(['image', 'import', file, '--name', 'wrong', '--sha256', 'b'.repeat(64)]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: .*\(image_checksum_mismatch\)\n$/);
    await expect(cp.app.services.images.get(cp.admin, 'wrong', 'default')).rejects.toMatchObject({
      code: 'image_not_found',
    });
    // A backing file is refused the same way.
    const evil = join(dir, 'evil.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-u', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/shadow', evil, '1M']);
    const e = await floe(['image', 'import', evil, '--name', 'evil']);
    expect(e.code).toBe(1);
    expect(e.err).toContain('(image_backing_file_forbidden)');
    await expect(cp.app.services.images.get(cp.admin, 'evil', 'default')).rejects.toMatchObject({
      code: 'image_not_found',
    });
  });

  it('fills a pending record of that name, and keeps it when the upload fails', async () => {
    await cp.app.services.images.create(cp.admin, { name: 'planned', os: 'planned-os' });
    const file = join(dir, 'planned.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '1M']);
    const bad = await floe(['image', 'import', file, '--name', 'planned', '--sha256', 'c'.repeat(64)]);
    expect(bad.code).toBe(1);
    expect((await cp.app.services.images.get(cp.admin, 'planned', 'default')).status.state).toBe('pending');
    const ok = await floe(['image', 'import', file, '--name', 'planned']);
    expect(ok.code, ok.err).toBe(0);
    expect(await cp.app.services.images.get(cp.admin, 'planned', 'default')).toMatchObject({
      spec: { os: 'planned-os' },
      status: { state: 'ready', sha256: sha256Of(file) },
    });
    const missing = await floe(['image', 'import', join(dir, 'nope.qcow2'), '--name', 'nope']);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('(file_unreadable)');
  });

  it('reads the file from stdin with -', async () => {
    const raw = join(dir, 'piped.raw');
    const buf = Buffer.alloc(2 * 1024 * 1024);
    buf.write('piped through stdin', 4096);
    writeFileSync(raw, buf);
    const child = spawn(
      process.execPath,
      [
        '--conditions=floe-source',
        '--import',
        'tsx',
        join(ROOT, 'packages/cli/src/main.ts'),
        '-o',
        'json',
        'image',
        'import',
        '-',
        '--name',
        'piped',
      ],
      {
        cwd: ROOT,
        env: { ...process.env, ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (err += String(d)));
    createReadStream(raw).pipe(child.stdin);
    const code = await new Promise<number | null>((res) => child.on('close', res));
    expect(code, err).toBe(0);
    const img = JSON.parse(out) as Image;
    expect(img.status.state).toBe('ready');
    expect(img.status.virtual_size_bytes).toBe(buf.length);
    expect(sha256Of(join(cp.dataDir, 'images', `${img.status.sha256}.qcow2`))).toBe(img.status.sha256);
  }, 60_000);
});
