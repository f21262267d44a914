import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Image, Operation } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The CLI never depends on the server package; only this test borrows it to run a real control plane and a mirror.
import { storeTargets } from '../../../server/src/db/testing.js';
import { startImageServer, type ImageServer } from '../../../server/src/testing-image-server.js';
import { startTestControlPlane, type TestControlPlane } from '../../../server/src/testing.js';
import { UsageError } from '../errors.js';
import { run } from '../program.js';
import { isUrlSource, urlImportBody, type UrlImportFlags } from './image-import-url.js';
import { OutputBuffer as Buf } from '../testing.js';

const QEMU_IMG = spawnSync('qemu-img', ['--version']).status === 0;
if (!QEMU_IMG)
  console.warn('[floe] image URL import tests skipped: qemu-img is not installed (Debian package qemu-utils)');

const HEX = 'ab'.repeat(32);

describe('URL import arguments (pure)', () => {
  const flags = (over: Partial<UrlImportFlags>): UrlImportFlags => ({ name: 'debian', wait: true, ...over });

  it('tells URLs from files', () => {
    expect(isUrlSource('https://h/x.qcow2')).toBe(true);
    expect(isUrlSource('file:///x.qcow2')).toBe(true);
    expect(isUrlSource('./x.qcow2')).toBe(false);
    expect(isUrlSource('-')).toBe(false);
    expect(isUrlSource('C:x.qcow2')).toBe(false);
  });

  it('builds the request body from the flags', () => {
    expect(
      urlImportBody(
        'https://h/d.qcow2',
        flags({ sha256: HEX.toUpperCase(), os: 'debian-12', minDiskGib: 3 }),
        'shop',
        undefined,
      ),
    ).toEqual({
      name: 'debian',
      project: 'shop',
      os: 'debian-12',
      min_disk_gib: 3,
      source: { url: 'https://h/d.qcow2', checksum: `sha256:${HEX}` },
    });
    expect(
      urlImportBody(
        'https://h/d.qcow2',
        flags({ checksumUrl: 'https://h/SHA512SUMS', public: true }),
        undefined,
        'PEM',
      ),
    ).toEqual({
      name: 'debian',
      public: true,
      source: { url: 'https://h/d.qcow2', checksum_url: 'https://h/SHA512SUMS', ca_pem: 'PEM' },
    });
    expect(() =>
      urlImportBody('https://h/d', flags({ sha256: HEX, checksum: `sha256:${HEX}` }), undefined, undefined),
    ).toThrow(UsageError);
    expect(() =>
      urlImportBody(
        'https://h/d',
        flags({ checksum: `sha256:${HEX}`, checksumUrl: 'https://h/S' }),
        undefined,
        undefined,
      ),
    ).toThrow(UsageError);
    expect(() => urlImportBody('https://h/d', flags({ checksum: 'md5:00' }), undefined, undefined)).toThrow(
      /sha256:HEX/,
    );
  });
});

describe.skipIf(!QEMU_IMG || storeTargets()[0]!.skip !== null)('floe image import URL against a control plane', () => {
  let cp: TestControlPlane;
  let server: ImageServer;
  let dir: string;
  let env: Record<string, string>;
  let sha: string;

  async function floe(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    const out = new Buf();
    const err = new Buf();
    const code = await run(argv, { stdout: out, stderr: err, env, stdinIsTTY: false });
    return { code, out: out.text, err: err.text };
  }
  const leftovers = () =>
    existsSync(join(cp.dataDir, 'images', 'tmp')) ? readdirSync(join(cp.dataDir, 'images', 'tmp')) : [];

  beforeAll(async () => {
    cp = await startTestControlPlane(await storeTargets()[0]!.open(), { FLOE_IMAGE_IMPORT_IDLE_TIMEOUT_S: '1' });
    dir = await mkdtemp(join(tmpdir(), 'floe-cli-url-import-'));
    writeFileSync(join(dir, 'ca.pem'), cp.ca.certPem);
    env = {
      FLOE_CONFIG: join(dir, 'config.json'),
      FLOE_URL: cp.url,
      FLOE_TOKEN: cp.adminToken,
      FLOE_CA: join(dir, 'ca.pem'),
    };
    const file = join(dir, 'wide.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '1536M']);
    const buf = readFileSync(file);
    sha = createHash('sha256').update(buf).digest('hex');
    server = await startImageServer({ 'wide.qcow2': buf, SHA256SUMS: Buffer.from(`${sha}  wide.qcow2\n`) });
    writeFileSync(join(dir, 'mirror-ca.pem'), server.caPem);
  });
  afterAll(async () => {
    await server?.close();
    await cp?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('imports from a URL checked against SHA256SUMS, with progress lines, and shows the minimum disk', async () => {
    const r = await floe([
      'image',
      'import',
      `${server.url}/redirect/2/wide.qcow2`,
      '--name',
      'wide',
      '--checksum-url',
      `${server.url}/sums/SHA256SUMS`,
      '--os',
      'test-os',
    ]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^op_\S+ image\.import pending 0% importing from http:\/\/127\.0\.0\.1:\d+\/redirect\/2\/wide\.qcow2$/m,
    );
    expect(r.out).toMatch(
      /^op_\S+ image\.import succeeded 100% imported [\d.]+ KiB \(sha256:[0-9a-f]{12}… verified\)$/m,
    );
    expect(r.out).toMatch(/min_disk_gib:\s+2/);
    const img = await cp.app.services.images.get(cp.admin, 'wide', 'default');
    expect(img).toMatchObject({
      spec: { os: 'test-os', min_disk_gib: 2 },
      status: { state: 'ready', sha256: sha, virtual_size_bytes: 1536 * 1024 * 1024 },
    });
    const ls = await floe(['image', 'ls']);
    expect(ls.out).toMatch(/^wide\s+ready\s+qcow2\s+test-os\s+2 GiB\s+no\s/m);
  });

  it('over https with --ca-file; -o json prints the image only', async () => {
    const r = await floe([
      '-o',
      'json',
      'image',
      'import',
      `${server.httpsUrl}/files/wide.qcow2`,
      '--name',
      'wide-tls',
      '--checksum',
      `sha256:${sha}`,
      '--ca-file',
      join(dir, 'mirror-ca.pem'),
    ]);
    expect(r.code, r.err).toBe(0);
    const img = JSON.parse(r.out) as Image;
    expect(img).toMatchObject({ name: 'wide-tls', status: { state: 'ready', sha256: sha } });
  });

  it('fails with the stable code and leaves nothing: wrong checksum, 404, stall, unsupported scheme', async () => {
    const wrong = await floe([
      'image',
      'import',
      `${server.url}/files/wide.qcow2`,
      '--name',
      'wrong',
      '--sha256',
      'c'.repeat(64),
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/^error: image\.import failed: .*\(image_checksum_mismatch\)\n$/);
    const missing = await floe(['image', 'import', `${server.url}/files/nope.qcow2`, '--name', 'missing']);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('answered 404');
    expect(missing.err).toContain('(image_download_failed)');
    expect(missing.err).toMatch(/^no --checksum or --checksum-url: the downloaded file is not verified$/m);
    const stall = await floe(['image', 'import', `${server.url}/stall/wide.qcow2`, '--name', 'stall']);
    expect(stall.code).toBe(1);
    expect(stall.err).toContain('(image_download_timeout)');
    const scheme = await floe(['image', 'import', 'file:///etc/shadow', '--name', 'shadow']);
    expect(scheme.code).toBe(1);
    expect(scheme.err).toContain('(image_url_unsupported)');
    for (const name of ['wrong', 'missing', 'stall', 'shadow']) {
      await expect(cp.app.services.images.get(cp.admin, name, 'default')).rejects.toMatchObject({
        code: 'image_not_found',
      });
    }
    expect(leftovers()).toEqual([]);
    // Flags that make no sense together are usage errors (exit 2), before anything is sent.
    const both = await floe([
      'image',
      'import',
      `${server.url}/files/wide.qcow2`,
      '--name',
      'both',
      '--checksum',
      `sha256:${sha}`,
      '--checksum-url',
      `${server.url}/sums/SHA256SUMS`,
    ]);
    expect(both.code).toBe(2);
    const fileWithUrlFlags = await floe([
      'image',
      'import',
      join(dir, 'wide.qcow2'),
      '--name',
      'f',
      '--checksum-url',
      `${server.url}/sums/SHA256SUMS`,
    ]);
    expect(fileWithUrlFlags.code).toBe(2);
  });

  it('--no-wait answers with the operation at once', async () => {
    const r = await floe([
      '-o',
      'json',
      'image',
      'import',
      `${server.url}/files/wide.qcow2`,
      '--name',
      'later',
      '--no-wait',
    ]);
    expect(r.code, r.err).toBe(0);
    const { image, operation } = JSON.parse(r.out) as { image: Image; operation: Operation };
    expect(image.status.state).toBe('importing');
    expect(operation.kind).toBe('image.import');
    const waited = await floe(['operation', 'wait', operation.id]);
    expect(waited.code, waited.err).toBe(0);
    expect((await cp.app.services.images.get(cp.admin, 'later', 'default')).status.state).toBe('ready');
  });
});
