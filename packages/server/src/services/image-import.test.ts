import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERROR_CODES, type ErrorCode, type HostFacts, type Image, type Operation } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, migratorOf } from '../db/migrations.js';
import { storeTargets } from '../db/testing.js';
import { startImageServer, type ImageServer } from '../testing-image-server.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';
import { fileNameOf, findChecksum, parseChecksum } from './checksums.js';
import { checkImageUrl, isPrivateAddress, looksLikeHtml, shownUrl } from './image-download.js';
import { downloadMessage } from './image-import.js';

const QEMU_IMG = spawnSync('qemu-img', ['--version']).status === 0;
if (!QEMU_IMG) console.warn('[floe] image import tests skipped: qemu-img is not installed (Debian package qemu-utils)');

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const A = 'a'.repeat(64);
const B = 'b'.repeat(128);

describe('checksum files and URLs (pure)', () => {
  it('finds the line for a file in GNU and BSD checksum files', () => {
    const gnu = `${A}  debian-12-genericcloud-amd64.qcow2\n${'c'.repeat(64)}  debian-12-genericcloud-amd64.raw\n`;
    expect(findChecksum(gnu, 'debian-12-genericcloud-amd64.qcow2')).toEqual({ algo: 'sha256', hex: A });
    expect(findChecksum(gnu, 'debian-12-genericcloud-amd64.raw')).toEqual({ algo: 'sha256', hex: 'c'.repeat(64) });
    expect(findChecksum(gnu, 'other.qcow2')).toBeNull();
    // Binary-mode marker, upper-case hex, CRLF, comments, a directory in the name.
    const ubuntu = `# generated\r\n${A.toUpperCase()} *noble-server-cloudimg-amd64.img\r\n${'d'.repeat(64)} *./sub/disk.img\r\n`;
    expect(findChecksum(ubuntu, 'noble-server-cloudimg-amd64.img')).toEqual({ algo: 'sha256', hex: A });
    expect(findChecksum(ubuntu, 'disk.img')).toEqual({ algo: 'sha256', hex: 'd'.repeat(64) });
    const bsd = `# Fedora-Cloud-41\nSHA256 (Fedora-Cloud-Base-41.qcow2) = ${A}\nSHA512 (other.qcow2) = ${B}\n`;
    expect(findChecksum(bsd, 'Fedora-Cloud-Base-41.qcow2')).toEqual({ algo: 'sha256', hex: A });
    expect(findChecksum(bsd, 'other.qcow2')).toEqual({ algo: 'sha512', hex: B });
    // A BSD line whose digest has the wrong length for its algorithm is no line.
    expect(findChecksum(`SHA512 (x.img) = ${A}\n`, 'x.img')).toBeNull();
    // SHA512SUMS lines, and sha512 preferred when both algorithms name the file.
    expect(findChecksum(`${B}  x.img\n`, 'x.img')).toEqual({ algo: 'sha512', hex: B });
    expect(findChecksum(`${A}  x.img\nSHA512 (x.img) = ${B}\n`, 'x.img')).toEqual({ algo: 'sha512', hex: B });
    // A name that only ends like the file does not match.
    expect(findChecksum(`${A}  my-x.img\n`, 'x.img')).toBeNull();
  });

  it('parses --checksum values and refuses malformed ones', () => {
    expect(parseChecksum(`sha256:${A.toUpperCase()}`)).toEqual({ algo: 'sha256', hex: A });
    expect(parseChecksum(`sha512:${B}`)).toEqual({ algo: 'sha512', hex: B });
    for (const bad of [A, `sha256:${B}`, `sha512:${A}`, `md5:${'a'.repeat(32)}`, 'sha256:xyz']) {
      expect(() => parseChecksum(bad)).toThrow(
        expect.objectContaining({ code: 'validation_failed', details: { field: 'source.checksum' } }),
      );
    }
  });

  it('takes only http and https URLs without credentials, and shows them without their query', () => {
    expect(checkImageUrl('https://cloud.debian.org/images/x.qcow2').href).toBe(
      'https://cloud.debian.org/images/x.qcow2',
    );
    for (const bad of [
      'file:///etc/shadow',
      'ftp://host/x.qcow2',
      'data:,hello',
      'gopher://h/x',
      '/relative/x.qcow2',
      'not a url',
      'https://user:pw@host/x',
    ]) {
      expect(() => checkImageUrl(bad), bad).toThrow(expect.objectContaining({ code: 'image_url_unsupported' }));
    }
    expect(shownUrl(new URL('https://h/a/b.qcow2?X-Amz-Signature=secret'))).toBe('https://h/a/b.qcow2?…');
    expect(fileNameOf(new URL('https://h/dir/my%20disk.qcow2'))).toBe('my disk.qcow2');
    expect(downloadMessage(3 * MiB, 12 * MiB)).toBe('downloading 3.0 MiB of 12.0 MiB');
    expect(downloadMessage(512, null)).toBe('downloading 512 B');
  });

  it('knows loopback, private and link-local addresses', () => {
    for (const a of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::',
      'fd00::1',
      'fe80::1',
      '::ffff:127.0.0.1',
      '::FFFF:10.0.0.1',
    ]) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of [
      '8.8.8.8',
      '172.32.0.1',
      '192.169.0.1',
      '151.101.2.132',
      '2a04:4e42::644',
      '::ffff:8.8.8.8',
      'not-an-ip',
    ]) {
      expect(isPrivateAddress(a), a).toBe(false);
    }
  });

  it('recognises web pages by their first bytes', () => {
    expect(looksLikeHtml(Buffer.from('\n  <!DOCTYPE html><html>'))).toBe(true);
    expect(looksLikeHtml(Buffer.from('<HTML><body>'))).toBe(true);
    expect(looksLikeHtml(Buffer.from('QFI\xfb\0\0\0\x03', 'latin1'))).toBe(false);
    expect(looksLikeHtml(Buffer.alloc(512))).toBe(false);
  });
});

const FACTS: HostFacts = {
  hostname: 'import-host',
  agent_version: '0.0.0',
  arch: 'x86_64',
  kernel: '6.1.0',
  cpus: 8,
  memory_mib: 16384,
  disk_free_gib: 100,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'test host' },
  accelerator: 'tcg',
  wireguard_kernel: false,
  vm_driver: 'fake',
};

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

let work: string;
let server: ImageServer;
/** Files served, by name, and their sha256. */
const sha: Record<string, string> = {};

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: 'pipe' });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-image-import-'));
  server = await startImageServer();
  if (!QEMU_IMG) return;
  // A qcow2 with data in it (so it is a few hundred KiB and shows progress), a raw disk, a 1.5 GiB
  // virtual disk (a 2 GiB minimum disk), and a qcow2 naming a backing file.
  const raw = join(work, 'data.raw');
  const data = Buffer.alloc(4 * MiB);
  for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  (await import('node:fs')).writeFileSync(raw, data);
  qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, join(work, 'good.qcow2'));
  qemuImg('create', '-q', '-f', 'qcow2', join(work, 'wide.qcow2'), '1536M');
  qemuImg('create', '-q', '-u', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/shadow', join(work, 'backing.qcow2'), '1M');
  for (const name of ['good.qcow2', 'wide.qcow2', 'backing.qcow2']) {
    const buf = readFileSync(join(work, name));
    server.files.set(name, buf);
    sha[name] = createHash('sha256').update(buf).digest('hex');
  }
  server.files.set('disk.raw', data);
  sha['disk.raw'] = createHash('sha256').update(data).digest('hex');
  server.files.set('SHA256SUMS', Buffer.from(`${sha['wide.qcow2']}  wide.qcow2\n${sha['good.qcow2']}  good.qcow2\n`));
  server.files.set(
    'CHECKSUM',
    Buffer.from(
      `# BSD style\nSHA512 (good.qcow2) = ${createHash('sha512').update(server.files.get('good.qcow2')!).digest('hex')}\n`,
    ),
  );
});
afterAll(async () => {
  await server?.close();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

for (const target of storeTargets()) {
  describe.skipIf(target.skip !== null || !QEMU_IMG)(`image import on ${target.name}`, () => {
    let cp: TestControlPlane;
    let imagesDir: string;
    let hostId: string;
    // No agent sends heartbeats here: mark the host online again right before placing instances.
    const online = () => cp.app.services.hosts.markOnline(hostId, FACTS, 'test');

    const stored = () =>
      existsSync(imagesDir)
        ? readdirSync(imagesDir)
            .filter((f) => f !== 'tmp')
            .sort()
        : [];
    const leftovers = () => (existsSync(join(imagesDir, 'tmp')) ? readdirSync(join(imagesDir, 'tmp')) : []);

    function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res> {
      const h: Record<string, string> = { authorization: `Bearer ${cp.adminToken}`, ...headers };
      if (body !== undefined) h['content-type'] = 'application/json';
      return new Promise((resolve, reject) => {
        const req = https.request(
          new URL(path, cp.url),
          { method, headers: h, ca: cp.ca.certPem, agent: false },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: text === '' ? undefined : JSON.parse(text),
              });
            });
          },
        );
        req.on('error', reject);
        req.end(body === undefined ? undefined : JSON.stringify(body));
      });
    }

    const startImport = async (
      name: string,
      source: Record<string, unknown>,
      extra: Record<string, unknown> = {},
    ): Promise<{ image: Image; operation: Operation }> => {
      const res = await call('POST', '/v1/images/import', { name, source, ...extra });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      expect(res.headers.location).toBe(`/v1/operations/${res.body.operation.id}`);
      return res.body;
    };
    const finished = async (op: Operation): Promise<Operation> =>
      (await call('GET', `/v1/operations/${op.id}?wait=30`)).body as Operation;

    /** The import fails with `code`, and neither the image, a stored file nor a temporary file is left. */
    async function expectRefused(name: string, source: Record<string, unknown>, code: ErrorCode): Promise<Operation> {
      const before = stored();
      const { image, operation } = await startImport(name, source);
      expect(image.status.state).toBe('importing');
      const done = await finished(operation);
      expect(done.status, JSON.stringify(done)).toBe('failed');
      expect(done.error?.code, JSON.stringify(done.error)).toBe(code);
      expect(ERROR_CODES[done.error!.code as ErrorCode]).toBeDefined();
      expect(done.message).toBe(done.error?.message);
      expect((await call('GET', `/v1/images/${name}`)).status).toBe(404);
      expect(
        await cp.store.db.selectFrom('images').select('id').where('id', '=', image.id).executeTakeFirst(),
      ).toBeUndefined();
      expect(stored()).toEqual(before);
      expect(leftovers()).toEqual([]);
      return done;
    }

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_IMAGE_MAX_UPLOAD_BYTES: String(8 * MiB),
        FLOE_IMAGE_MAX_VIRTUAL_GIB: '4',
        FLOE_IMAGE_IMPORT_CONNECT_TIMEOUT_S: '2',
        FLOE_IMAGE_IMPORT_IDLE_TIMEOUT_S: '1',
      });
      imagesDir = join(cp.dataDir, 'images');
      const host = await cp.app.services.hosts.ensureLocal('import-host', async () => ({ serial: '01' }));
      hostId = host.id;
      await online();
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('imports a qcow2 with a sha256 checksum: progress in bytes, the image ready with its minimum disk', async () => {
      const seen: Operation[] = [];
      const off = cp.app.services.bus.subscribe((e) => {
        if (e.kind === 'operation') seen.push(e.data.operation as Operation);
      });
      const { image, operation } = await startImport(
        'good',
        { url: `${server.url}/files/good.qcow2`, checksum: `sha256:${sha['good.qcow2']}` },
        { os: 'test', labels: { from: 'url' } },
      );
      expect(operation).toMatchObject({
        kind: 'image.import',
        status: 'pending',
        resources: [{ kind: 'image', id: image.id, name: 'good' }],
      });
      const done = await finished(operation);
      off();
      expect(done.status, JSON.stringify(done)).toBe('succeeded');
      expect(done.progress).toBe(100);
      const size = server.files.get('good.qcow2')!.length;
      expect(done.transfer).toEqual({ done_bytes: size, total_bytes: size });
      expect(done.message).toMatch(/^imported .* \(sha256:.*verified\)$/);
      expect(seen.some((o) => o.id === operation.id && o.status === 'running')).toBe(true);
      const img = (await call('GET', '/v1/images/good')).body as Image;
      expect(img.status).toEqual({
        state: 'ready',
        sha256: sha['good.qcow2'],
        size_bytes: size,
        virtual_size_bytes: 4 * MiB,
      });
      expect(img.spec).toEqual({ format: 'qcow2', os: 'test', min_disk_gib: 1, public: false });
      expect(img.labels).toEqual({ from: 'url' });
      expect(stored()).toContain(`${sha['good.qcow2']}.qcow2`);
      expect(leftovers()).toEqual([]);
      const history = await cp.store.db
        .selectFrom('history')
        .select('action')
        .where('resource_id', '=', image.id)
        .orderBy('revision')
        .execute();
      expect(history.map((h) => h.action)).toEqual(['create', 'import']);
    });

    it('shows the bytes of a running download and percent from Content-Length', async () => {
      const seen: Operation[] = [];
      const off = cp.app.services.bus.subscribe((e) => {
        if (e.kind === 'operation') seen.push(e.data.operation as Operation);
      });
      // 64 KiB every 100 ms for 2.5 MiB: a few progress writes, one a second.
      server.files.set('slow.raw', Buffer.alloc(2.5 * MiB, 1));
      const { operation } = await startImport('slow-good', { url: `${server.url}/slow/slow.raw` });
      const done = await finished(operation);
      off();
      expect(done.status, JSON.stringify(done)).toBe('succeeded');
      const total = 2.5 * MiB;
      const midway = seen.filter(
        (o) =>
          o.id === operation.id &&
          o.transfer !== undefined &&
          o.transfer.done_bytes > 0 &&
          o.transfer.done_bytes < total,
      );
      expect(midway.length).toBeGreaterThan(0);
      for (const o of midway) {
        expect(o.transfer!.total_bytes).toBe(total);
        expect(o.progress).toBe(Math.floor((o.transfer!.done_bytes / total) * 90));
        expect(o.message).toMatch(/^downloading [\d.]+ (KiB|MiB) of [\d.]+ MiB$/);
      }
    });

    it('verifies against a SHA256SUMS file and a BSD-style sha512 file, follows redirects, converts raw', async () => {
      const sums = await startImport('by-sums', {
        url: `${server.url}/redirect/3/good.qcow2`,
        checksum_url: `${server.url}/sums/SHA256SUMS`,
      });
      expect((await finished(sums.operation)).status).toBe('succeeded');
      // The file name is taken from the URL given (before redirects).
      expect(server.requests).toEqual(
        expect.arrayContaining([
          '/redirect/3/good.qcow2',
          '/redirect/2/good.qcow2',
          '/redirect/1/good.qcow2',
          '/files/good.qcow2',
        ]),
      );
      const bsd = await startImport('by-bsd', {
        url: `${server.url}/files/good.qcow2`,
        checksum_url: `${server.url}/redirect/1/CHECKSUM`,
      });
      const bsdDone = await finished(bsd.operation);
      expect(bsdDone.status, JSON.stringify(bsdDone)).toBe('succeeded');
      expect(bsdDone.message).toContain('sha512:');
      // Identical files are stored once.
      expect(stored().filter((f) => f === `${sha['good.qcow2']}.qcow2`)).toHaveLength(1);
      const raw = await startImport('raw', {
        url: `${server.url}/chunked/disk.raw`,
        checksum: `sha256:${sha['disk.raw']}`,
      });
      const rawDone = await finished(raw.operation);
      expect(rawDone.status, JSON.stringify(rawDone)).toBe('succeeded');
      expect(rawDone.transfer).toEqual({ done_bytes: 4 * MiB, total_bytes: 4 * MiB });
      const img = (await call('GET', '/v1/images/raw')).body as Image;
      expect(img.status.sha256).not.toBe(sha['disk.raw']);
      expect(img.status.virtual_size_bytes).toBe(4 * MiB);
      expect(leftovers()).toEqual([]);
    });

    it('over https: refuses an unknown CA, takes the server with its CA given', async () => {
      const failed = await expectRefused(
        'tls-unknown',
        { url: `${server.httpsUrl}/files/good.qcow2` },
        'image_download_failed',
      );
      expect(failed.error?.details).toMatchObject({ url: `${server.httpsUrl}/files/good.qcow2` });
      // A redirect from https down to http is refused: https promised the server it names.
      const down = await expectRefused(
        'tls-down',
        { url: `${server.httpsUrl}/to/${encodeURIComponent(`${server.url}/files/good.qcow2`)}`, ca_pem: server.caPem },
        'image_url_unsupported',
      );
      expect(down.error?.details).toMatchObject({ field: 'redirect', reason: 'https_to_http' });
      const { operation } = await startImport('tls', {
        url: `${server.httpsUrl}/files/good.qcow2`,
        ca_pem: server.caPem,
        checksum: `sha256:${sha['good.qcow2']}`,
      });
      expect((await finished(operation)).status).toBe('succeeded');
    });

    it('fails a wrong checksum, a checksum file without the file, and a missing checksum file', async () => {
      const wrong = await expectRefused(
        'wrong-sum',
        { url: `${server.url}/files/good.qcow2`, checksum: `sha256:${A}` },
        'image_checksum_mismatch',
      );
      expect(wrong.error?.details).toEqual({ algorithm: 'sha256', expected: A, actual: sha['good.qcow2'] });
      const wrong512 = await expectRefused(
        'wrong-512',
        { url: `${server.url}/files/good.qcow2`, checksum: `sha512:${B}` },
        'image_checksum_mismatch',
      );
      expect(wrong512.error?.details).toMatchObject({ algorithm: 'sha512', expected: B });
      server.files.set('other.qcow2', server.files.get('good.qcow2')!);
      const missing = await expectRefused(
        'no-line',
        { url: `${server.url}/files/other.qcow2`, checksum_url: `${server.url}/sums/SHA256SUMS` },
        'image_checksum_not_found',
      );
      expect(missing.error?.details).toMatchObject({ file: 'other.qcow2' });
      // The image itself is never fetched when its checksum cannot be known.
      expect(server.requests).not.toContain('/files/other.qcow2');
      const gone = await expectRefused(
        'no-sums',
        { url: `${server.url}/files/good.qcow2`, checksum_url: `${server.url}/sums/NOPE` },
        'image_download_failed',
      );
      expect(gone.error?.details).toMatchObject({ http_status: 404 });
    });

    it('fails 404s, web pages, truncated bodies, too many redirects, stalls, silence and files over the size limit', async () => {
      const notFound = await expectRefused('nf', { url: `${server.url}/files/nope.qcow2` }, 'image_download_failed');
      expect(notFound.error?.details).toEqual({ url: `${server.url}/files/nope.qcow2`, http_status: 404 });
      const page = await expectRefused('page', { url: `${server.url}/html` }, 'image_download_not_an_image');
      expect(page.error?.details).toMatchObject({ content_type: 'text/html' });
      // A web page sent as application/octet-stream would otherwise pass as a raw disk.
      await expectRefused('page-octet', { url: `${server.url}/html-octet` }, 'image_download_not_an_image');
      const cut = await expectRefused('cut', { url: `${server.url}/truncate/good.qcow2` }, 'image_download_incomplete');
      expect(cut.error?.details).toMatchObject({ expected_bytes: server.files.get('good.qcow2')!.length });
      const loop = await expectRefused(
        'loop',
        { url: `${server.url}/redirect/6/good.qcow2` },
        'image_download_too_many_redirects',
      );
      expect(loop.error?.details).toEqual({ url: `${server.url}/redirect/6/good.qcow2`, limit: 5 });
      expect(loop.error?.message).toContain('redirected more than 5 times');
      const stall = await expectRefused('stall', { url: `${server.url}/stall/good.qcow2` }, 'image_download_timeout');
      expect(stall.error?.details).toMatchObject({ timeout: 'idle', seconds: 1 });
      const silent = await expectRefused('silent', { url: `${server.url}/silent` }, 'image_download_timeout');
      expect(silent.error?.details).toMatchObject({ timeout: 'connect', seconds: 2 });
      server.files.set('huge.raw', Buffer.alloc(9 * MiB));
      const huge = await expectRefused('huge', { url: `${server.url}/files/huge.raw` }, 'image_download_too_large');
      expect(huge.error?.details).toMatchObject({ size_bytes: 9 * MiB, limit_bytes: 8 * MiB });
      // Without Content-Length the limit is enforced on the bytes.
      await expectRefused('huge-chunked', { url: `${server.url}/chunked/huge.raw` }, 'image_download_too_large');
      // Nothing listens there.
      const closed = await expectRefused('refused', { url: 'http://127.0.0.1:1/x.qcow2' }, 'image_download_failed');
      expect(closed.error?.details).toMatchObject({ reason: 'ECONNREFUSED' });
    });

    it('runs the upload checks on downloaded files: a backing file is refused', async () => {
      await expectRefused(
        'backing',
        { url: `${server.url}/files/backing.qcow2`, checksum: `sha256:${sha['backing.qcow2']}` },
        'image_backing_file_forbidden',
      );
    });

    it('refuses unsupported URLs, two checksums and taken names at once, creating nothing', async () => {
      const before = await cp.store.db.selectFrom('images').select('id').execute();
      for (const url of ['file:///etc/shadow', 'ftp://127.0.0.1/x.qcow2', 'https://u:p@127.0.0.1/x']) {
        const res = await call('POST', '/v1/images/import', { name: 'bad-scheme', source: { url } });
        expect(res.status, url).toBe(400);
        expect(res.body.error.code).toBe('image_url_unsupported');
      }
      const both = await call('POST', '/v1/images/import', {
        name: 'both',
        source: {
          url: `${server.url}/files/good.qcow2`,
          checksum: `sha256:${A}`,
          checksum_url: `${server.url}/sums/SHA256SUMS`,
        },
      });
      expect(both.body.error).toMatchObject({ code: 'validation_failed', details: { field: 'source.checksum' } });
      const badSum = await call('POST', '/v1/images/import', {
        name: 'bad-sum',
        source: { url: `${server.url}/files/good.qcow2`, checksum: 'md5:abc' },
      });
      expect(badSum.body.error).toMatchObject({ code: 'validation_failed' });
      const extra = await call('POST', '/v1/images/import', {
        name: 'extra',
        source: { url: `${server.url}/files/good.qcow2`, nope: 1 },
      });
      expect(extra.body.error.code).toBe('validation_failed');
      const taken = await call('POST', '/v1/images/import', {
        name: 'good',
        source: { url: `${server.url}/files/good.qcow2` },
      });
      expect(taken.status).toBe(409);
      expect(taken.body.error.code).toBe('name_conflict');
      expect(await cp.store.db.selectFrom('images').select('id').execute()).toEqual(before);
    });

    it('lets only admins import from loopback and private addresses, literal or resolved', async () => {
      const token = await cp.app.services.tokens.create(
        cp.admin,
        { name: `user-${target.name}`, projects: ['default'] },
        async (ref, db) => (await cp.app.services.projects.get(cp.admin, ref, db)).id,
      );
      const asUser = { authorization: `Bearer ${token.secret}` };
      const literal = await call(
        'POST',
        '/v1/images/import',
        { name: 'private', source: { url: `${server.url}/files/good.qcow2` } },
        asUser,
      );
      expect(literal.status).toBe(403);
      expect(literal.body.error).toMatchObject({ code: 'image_url_forbidden', details: { address: '127.0.0.1' } });
      const sums = await call(
        'POST',
        '/v1/images/import',
        {
          name: 'private',
          source: { url: 'https://example.invalid/x.qcow2', checksum_url: `${server.url}/sums/SHA256SUMS` },
        },
        asUser,
      );
      expect(sums.body.error.code).toBe('image_url_forbidden');
      // A name is checked on the addresses it resolves to, as the connection is made.
      const port = new URL(server.url).port;
      const named = await call(
        'POST',
        '/v1/images/import',
        { name: 'private', source: { url: `http://localhost:${port}/files/good.qcow2` } },
        asUser,
      );
      expect(named.status, JSON.stringify(named.body)).toBe(202);
      const done = await finished(named.body.operation);
      expect(done.status).toBe('failed');
      expect(done.error?.code).toBe('image_url_forbidden');
      expect((await call('GET', '/v1/images/private')).status).toBe(404);
      expect(leftovers()).toEqual([]);
    });

    it('answers a repeated Idempotency-Key with the first answer and imports once', async () => {
      const body = { name: 'idem', source: { url: `${server.url}/files/good.qcow2` } };
      const first = await call('POST', '/v1/images/import', body, { 'idempotency-key': `idem-${target.name}` });
      expect(first.status).toBe(202);
      const again = await call('POST', '/v1/images/import', body, { 'idempotency-key': `idem-${target.name}` });
      expect(again.status).toBe(202);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.body.operation.id).toBe(first.body.operation.id);
      const reused = await call(
        'POST',
        '/v1/images/import',
        { ...body, name: 'idem-2' },
        { 'idempotency-key': `idem-${target.name}` },
      );
      expect(reused.body.error.code).toBe('idempotency_key_reused');
      expect((await finished(first.body.operation)).status).toBe('succeeded');
      const ops = await cp.store.db
        .selectFrom('operations')
        .select('id')
        .where('kind', '=', 'image.import')
        .where('target_id', '=', first.body.image.id)
        .execute();
      expect(ops).toHaveLength(1);
      // ?wait= answers 200 with the finished operation and the ready image.
      const waited = await call('POST', '/v1/images/import?wait=30', {
        name: 'waited',
        source: { url: `${server.url}/files/good.qcow2` },
      });
      expect(waited.status).toBe(200);
      expect(waited.body.operation.status).toBe('succeeded');
      expect(waited.body.image.status.state).toBe('ready');
    });

    it('cancelling the operation or deleting the image stops the download and keeps nothing', async () => {
      server.files.set('big-slow.raw', Buffer.alloc(6 * MiB, 7));
      for (const how of ['cancel', 'delete'] as const) {
        const before = stored();
        const { image, operation } = await startImport(`stop-${how}`, { url: `${server.url}/slow/big-slow.raw` });
        // Wait until bytes flow.
        for (let i = 0; i < 100; i++) {
          const op = (await call('GET', `/v1/operations/${operation.id}`)).body as Operation;
          if ((op.transfer?.done_bytes ?? 0) > 0) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(server.openConnections()).toBeGreaterThan(0);
        // An image still importing takes no upload and no instance.
        const inst = await call('POST', '/v1/instances', {
          name: `on-${how}`,
          image: `stop-${how}`,
          vcpus: 1,
          memory_mib: 128,
        });
        expect(inst.body.error?.code).toBe('invalid_state');
        if (how === 'cancel') {
          const res = await call('POST', `/v1/operations/${operation.id}/cancel`);
          expect(res.status, JSON.stringify(res.body)).toBe(200);
          expect(res.body.status).toBe('cancelled');
        } else {
          expect((await call('DELETE', `/v1/images/stop-${how}`)).status).toBe(204);
          expect((await call('GET', `/v1/operations/${operation.id}`)).body.status).toBe('cancelled');
        }
        expect((await call('GET', `/v1/images/${image.id}`)).status).toBe(404);
        const deadline = Date.now() + 5000;
        while ((cp.app.services.imageImports.running > 0 || leftovers().length > 0) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 50));
        expect(cp.app.services.imageImports.running).toBe(0);
        expect(leftovers()).toEqual([]);
        expect(stored()).toEqual(before);
        // The server saw its connection closed: the download really stopped.
        while (server.openConnections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect(server.openConnections()).toBe(0);
        expect((await call('GET', `/v1/operations/${operation.id}`)).body.status).toBe('cancelled');
      }
    });

    it('refuses a disk smaller than the image with disk_too_small; a small machine type grows to the image', async () => {
      const { operation } = await startImport('wide', {
        url: `${server.url}/files/wide.qcow2`,
        checksum_url: `${server.url}/sums/SHA256SUMS`,
      });
      expect((await finished(operation)).status).toBe('succeeded');
      const img = (await call('GET', '/v1/images/wide')).body as Image;
      expect(img.status.virtual_size_bytes).toBe(1536 * MiB);
      expect(img.spec.min_disk_gib).toBe(2);
      const small = await call('POST', '/v1/instances', {
        name: 'too-small',
        image: 'wide',
        vcpus: 1,
        memory_mib: 128,
        disk_gib: 1,
      });
      expect(small.status).toBe(422);
      expect(small.body.error).toMatchObject({
        code: 'disk_too_small',
        details: { field: 'disk_gib', requested_gib: 1, minimum_gib: 2, image: img.id },
      });
      expect(
        await cp.store.db.selectFrom('instances').select('id').where('name', '=', 'too-small').executeTakeFirst(),
      ).toBeUndefined();
      await online();
      // nano has a 1 GiB disk: without disk_gib the disk is the image's minimum.
      const nano = await call('POST', '/v1/instances', { name: 'nano', image: 'wide', machine_type: 'nano' });
      expect(nano.status, JSON.stringify(nano.body)).toBe(202);
      expect(nano.body.instance.spec.disk_gib).toBe(2);
      const sized = await call('POST', '/v1/instances', {
        name: 'sized',
        image: 'wide',
        vcpus: 1,
        memory_mib: 128,
        disk_gib: 3,
      });
      expect(sized.body.instance.spec.disk_gib).toBe(3);
      const custom = await call('POST', '/v1/instances', { name: 'custom', image: 'wide', vcpus: 1, memory_mib: 128 });
      expect(custom.body.instance.spec.disk_gib).toBe(2);
    });

    it('measures images stored before virtual sizes were recorded, from their file', async () => {
      const wide = (await call('GET', '/v1/images/wide')).body as Image;
      const old = { ...wide.status, virtual_size_bytes: undefined };
      await cp.store.db
        .insertInto('images')
        .values({
          id: 'img_01OLDWIDE',
          name: 'old-wide',
          public: 0,
          labels: '{}',
          metadata: '{}',
          revision: 1,
          created_at: wide.created_at,
          updated_at: wide.updated_at,
          project: 'default',
          spec: JSON.stringify({ ...wide.spec, min_disk_gib: 1 }),
          status: JSON.stringify(old),
        })
        .execute();
      expect(await cp.app.services.imageFiles.measureOldImages()).toBe(1);
      const img = (await call('GET', '/v1/images/old-wide')).body as Image;
      expect(img.status.virtual_size_bytes).toBe(1536 * MiB);
      expect(img.spec.min_disk_gib).toBe(2);
      expect(await cp.app.services.imageFiles.measureOldImages()).toBe(0);
      await cp.store.db.deleteFrom('images').where('id', '=', 'img_01OLDWIDE').execute();
    });

    it('refuses a file for a pending image whose instances have smaller disks', async () => {
      expect((await call('POST', '/v1/images', { name: 'later-wide' })).status).toBe(201);
      await online();
      const inst = await call('POST', '/v1/instances', {
        name: 'early-small',
        image: 'later-wide',
        vcpus: 1,
        memory_mib: 128,
        disk_gib: 1,
      });
      expect(inst.status).toBe(202);
      const upload = await cp.app.http.inject({
        method: 'PUT',
        url: '/v1/images/later-wide/file',
        payload: server.files.get('wide.qcow2')!,
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/octet-stream' },
      });
      expect(upload.statusCode).toBe(422);
      expect(JSON.parse(upload.body).error).toMatchObject({
        code: 'disk_too_small',
        details: { instance: inst.body.instance.id, requested_gib: 1, minimum_gib: 2 },
      });
      expect((await call('GET', '/v1/images/later-wide')).body.status.state).toBe('pending');
      expect(leftovers()).toEqual([]);
      // Without that instance the upload is taken, and the image's minimum disk is its virtual size.
      await cp.store.db.deleteFrom('instances').where('id', '=', inst.body.instance.id).execute();
      const again = await cp.app.http.inject({
        method: 'PUT',
        url: '/v1/images/later-wide/file',
        payload: server.files.get('wide.qcow2')!,
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/octet-stream' },
      });
      expect(again.statusCode, again.body).toBe(200);
      expect(JSON.parse(again.body).spec.min_disk_gib).toBe(2);
    });

    it('fails imports a stopped control plane left behind', async () => {
      const { image, operation } = await startImport('orphan', { url: `${server.url}/slow/big-slow.raw` });
      // As if another process ran it: this one forgets the job (and stops it), the row stays behind.
      const svc = cp.app.services.imageImports as unknown as {
        jobs: Map<string, { abort: AbortController; done: Promise<void> }>;
      };
      const job = svc.jobs.get(operation.id)!;
      svc.jobs.delete(operation.id);
      job.abort.abort(new Error('simulated crash'));
      await job.done.catch(() => undefined);
      await cp.store.db
        .updateTable('operations')
        .set({
          status: 'running',
          error: null,
          finished_at: null,
          updated_at: new Date(Date.now() - 10 * 60_000).toISOString(),
        })
        .where('id', '=', operation.id)
        .execute();
      await cp.store.db
        .insertInto('images')
        .values({
          id: image.id,
          name: image.name,
          public: 0,
          labels: '{}',
          metadata: '{}',
          revision: 1,
          created_at: image.created_at,
          updated_at: image.updated_at,
          project: 'default',
          spec: JSON.stringify(image.spec),
          status: JSON.stringify(image.status),
        })
        .execute()
        .catch(() => undefined);
      expect(await cp.app.services.imageImports.sweep()).toBe(1);
      const op = (await call('GET', `/v1/operations/${operation.id}`)).body as Operation;
      expect(op.status).toBe('failed');
      expect(op.error?.code).toBe('internal_error');
      expect((await call('GET', `/v1/images/${image.id}`)).status).toBe(404);
    });
  });

  describe.skipIf(target.skip !== null)(`migration 0003 on ${target.name}`, () => {
    it('raises min_disk_gib of existing images to their virtual size and adds operations.transfer', async () => {
      const store = await target.open({ migrate: false });
      try {
        const migrator = migratorOf(store.db, store.dialect);
        expect((await migrator.migrateTo('0002_networks')).error).toBeUndefined();
        const base = {
          labels: '{}',
          metadata: '{}',
          revision: 1,
          created_at: '2026-01-01T00:00:00.000Z',
          updated_at: '2026-01-01T00:00:00.000Z',
          project: 'default',
        };
        const image = (id: string, min: number, virtual: number | null | undefined) => ({
          ...base,
          id,
          name: id,
          spec: JSON.stringify({ format: 'qcow2', os: '', min_disk_gib: min, public: false }),
          status: JSON.stringify(
            virtual === undefined
              ? { state: 'pending', size_bytes: null, sha256: null }
              : { state: 'ready', size_bytes: 1, sha256: A, virtual_size_bytes: virtual },
          ),
        });
        await store.db
          .insertInto('images')
          .values([
            image('img_wide', 1, 1536 * MiB),
            image('img_exact', 1, GiB),
            image('img_declared', 10, 3 * GiB),
            image('img_old', 1, undefined),
            image('img_null', 1, null),
            // Rows as the schema before 0022_image_public had them.
          ] as never)
          .execute();
        // 0003 runs first, then every later migration.
        expect((await migrate(store.db, store.dialect))[0]).toBe('0003_image_imports');
        const rows = await store.db.selectFrom('images').select(['id', 'spec']).orderBy('id').execute();
        expect(Object.fromEntries(rows.map((r) => [r.id, JSON.parse(r.spec).min_disk_gib]))).toEqual({
          img_declared: 10,
          img_exact: 1,
          img_null: 1,
          img_old: 1,
          img_wide: 2,
        });
        const cols = (await store.db.introspection.getTables())
          .find((t) => t.name === 'operations')!
          .columns.map((c) => c.name);
        expect(cols).toContain('transfer');
      } finally {
        await store.close();
      }
    });
  });
}
