import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERROR_CODES, type ErrorCode, type HostFacts, type Image } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateSerial, issueClientCert } from '../ca/index.js';
import { storeTargets } from '../db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';
import { checkImageInfo, checkQcow2Header, parseQcow2Header, sniffImageFormat } from './image-checks.js';

const QEMU_IMG = spawnSync('qemu-img', ['--version']).status === 0;
if (!QEMU_IMG) console.warn('[floe] image file tests skipped: qemu-img is not installed (Debian package qemu-utils)');

const MiB = 1024 * 1024;

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'floe-image-files-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: 'pipe' });
}

function sha256Of(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A raw disk: some recognisable bytes, then zeros. */
function rawDisk(name: string, size: number): string {
  const path = join(work, name);
  const buf = Buffer.alloc(size);
  for (let i = 0; i < 64 * 1024; i++) buf[i] = (i * 7 + 3) % 251;
  buf.write('floe raw test disk', 1000, 'latin1');
  writeFileSync(path, buf);
  return path;
}

describe.skipIf(!QEMU_IMG)('image file checks (pure)', () => {
  it('recognises formats by their magic bytes, never by guessing', () => {
    const qcow2 = join(work, 'sniff.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', qcow2, '1M');
    expect(sniffImageFormat(readFileSync(qcow2))).toBe('qcow2');
    const vdi = join(work, 'sniff.vdi');
    qemuImg('create', '-q', '-f', 'vdi', vdi, '1M');
    expect(sniffImageFormat(readFileSync(vdi))).toBe('vdi');
    const vpc = readFileSync(
      (() => {
        const p = join(work, 'sniff.vhd');
        qemuImg('create', '-q', '-f', 'vpc', p, '1M');
        return p;
      })(),
    );
    expect(sniffImageFormat(vpc.subarray(0, 4096), vpc.subarray(vpc.length - 512))).toBe('vpc');
    expect(sniffImageFormat(Buffer.from('# Disk DescriptorFile\nversion=1\nRW 2048 FLAT "/etc/shadow" 0\n'))).toBe(
      'vmdk',
    );
    expect(sniffImageFormat(Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.from([0, 0, 0, 1])]))).toBe('qcow');
    expect(sniffImageFormat(readFileSync(rawDisk('sniff.raw', 128 * 1024)))).toBe('raw');
    expect(sniffImageFormat(Buffer.alloc(0))).toBe('raw');
  });

  it('finds backing files and external data files in the qcow2 header', () => {
    const plain = join(work, 'plain.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', plain, '1M');
    const h = parseQcow2Header(readFileSync(plain));
    expect(h.version).toBe(3);
    expect(h.virtualSize).toBe(1048576n);
    expect(() => checkQcow2Header(h)).not.toThrow();

    const evil = join(work, 'evil-header.qcow2');
    qemuImg('create', '-q', '-u', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/shadow', evil, '1M');
    expect(() => checkQcow2Header(parseQcow2Header(readFileSync(evil)))).toThrow(
      expect.objectContaining({ code: 'image_backing_file_forbidden' }),
    );

    // The data file is one of ours: qemu-img create resizes whatever file it is given.
    const data = join(work, 'header-data.raw');
    const external = join(work, 'external.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${data}`, external, '1M');
    const eh = parseQcow2Header(readFileSync(external));
    expect(eh.dataFileExtension).toBe(true);
    expect(() => checkQcow2Header(eh)).toThrow(expect.objectContaining({ code: 'image_backing_file_forbidden' }));

    const encrypted = { ...h, cryptMethod: 2 };
    expect(() => checkQcow2Header(encrypted)).toThrow(expect.objectContaining({ code: 'image_format_unsupported' }));
  });

  it('checks what qemu-img info reports', () => {
    const ok = {
      format: 'qcow2',
      'virtual-size': 2 * MiB,
      'format-specific': { type: 'qcow2', data: { compat: '1.1' } },
    };
    expect(checkImageInfo(ok, 'qcow2', 4 * MiB)).toEqual({ format: 'qcow2', virtualSize: 2 * MiB });
    const fail = (info: unknown, code: ErrorCode) =>
      expect(() => checkImageInfo(info, 'qcow2', 4 * MiB)).toThrow(expect.objectContaining({ code }));
    fail({ ...ok, 'backing-filename': '/etc/shadow' }, 'image_backing_file_forbidden');
    fail({ ...ok, 'full-backing-filename': '/etc/shadow' }, 'image_backing_file_forbidden');
    fail(
      { ...ok, 'format-specific': { type: 'qcow2', data: { 'data-file': '/etc/shadow' } } },
      'image_backing_file_forbidden',
    );
    fail({ ...ok, 'virtual-size': 4 * MiB + 1 }, 'image_too_large');
    fail({ ...ok, format: 'vmdk' }, 'image_format_unsupported');
    fail({ ...ok, encrypted: true }, 'image_format_unsupported');
    fail({ format: 'qcow2' }, 'image_format_unsupported');
  });
});

const FACTS: HostFacts = {
  hostname: 'img-host',
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
  bytes: Buffer;
}

for (const target of storeTargets()) {
  describe.skipIf(target.skip !== null || !QEMU_IMG)(`image files on ${target.name}`, () => {
    let cp: TestControlPlane;
    let imagesDir: string;
    let hostId: string;
    let hostCert: { certPem: string; keyPem: string };

    /** Files under images/ and images/tmp/ besides the tmp directory itself. */
    const stored = () =>
      readdirSync(imagesDir)
        .filter((f) => f !== 'tmp')
        .sort();
    const leftovers = () => (existsSync(join(imagesDir, 'tmp')) ? readdirSync(join(imagesDir, 'tmp')) : []);

    function expectError(res: Res, code: ErrorCode): void {
      expect(res.body?.error?.code, JSON.stringify(res.body)).toBe(code);
      expect(res.status).toBe(ERROR_CODES[code].status);
    }

    /** A real HTTPS request; `file` is streamed as the body (chunked, no content-length). */
    function call(
      method: string,
      path: string,
      opts: {
        file?: string;
        body?: unknown;
        cert?: { certPem: string; keyPem: string };
        token?: string | null;
        headers?: Record<string, string>;
      } = {},
    ): Promise<Res> {
      const headers: Record<string, string> = { ...opts.headers };
      const token = opts.token === undefined ? cp.adminToken : opts.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      if (opts.file !== undefined) headers['content-type'] = 'application/octet-stream';
      if (opts.body !== undefined) headers['content-type'] = 'application/json';
      return new Promise((resolve, reject) => {
        const req = https.request(
          new URL(path, cp.url),
          {
            method,
            headers,
            ca: cp.ca.certPem,
            agent: false,
            ...(opts.cert === undefined ? {} : { cert: opts.cert.certPem, key: opts.cert.keyPem }),
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('error', reject);
            res.on('end', () => {
              const bytes = Buffer.concat(chunks);
              const json = String(res.headers['content-type'] ?? '').startsWith('application/json') && bytes.length > 0;
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: json ? JSON.parse(bytes.toString('utf8')) : undefined,
                bytes,
              });
            });
          },
        );
        req.on('error', reject);
        if (opts.file !== undefined) createReadStream(opts.file).pipe(req);
        else req.end(opts.body === undefined ? undefined : JSON.stringify(opts.body));
      });
    }

    const create = async (name: string, extra: Record<string, unknown> = {}): Promise<Image> => {
      const res = await call('POST', '/v1/images', { body: { name, ...extra } });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return res.body as Image;
    };
    const upload = (ref: string, file: string, query = '') => call('PUT', `/v1/images/${ref}/file${query}`, { file });

    beforeAll(async () => {
      cp = await startTestControlPlane(await target.open(), {
        FLOE_IMAGE_MAX_VIRTUAL_GIB: '1',
        FLOE_IMAGE_MAX_UPLOAD_BYTES: String(8 * MiB),
      });
      imagesDir = join(cp.dataDir, 'images');
      const host = await cp.app.services.hosts.ensureLocal('img-host', async (id) => {
        hostCert = await issueClientCert(cp.ca, { commonName: id });
        return { serial: certificateSerial(hostCert.certPem) };
      });
      hostId = host.id;
      await cp.app.services.hosts.markOnline(hostId, FACTS, 'test');
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('counts image bytes against the limit, and a refused upload leaves no file behind', async () => {
      const file = join(work, `quota-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', file, '1M');
      const size = statSync(file).size;
      const made = await call('POST', '/v1/projects', { body: { name: 'imgq', limits: { image_bytes: size + 10 } } });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      expect((await call('POST', '/v1/images', { body: { name: 'one', project: 'imgq' } })).status).toBe(201);
      expect((await call('POST', '/v1/images', { body: { name: 'two', project: 'imgq' } })).status).toBe(201);
      expect((await upload('one', file, '?project=imgq')).status).toBe(200);
      const usage = await call('GET', '/v1/projects/imgq/usage');
      expect(usage.body.dimensions.find((d: { dimension: string }) => d.dimension === 'image_bytes')).toMatchObject({
        limit: size + 10,
        used: size,
        available: 10,
      });
      // A different file (not shared with "one"), over what is left: refused, and nothing of it is kept.
      const other = join(work, `quota-other-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', other, '2M');
      const before = stored();
      const refused = await upload('two', other, '?project=imgq');
      expectError(refused, 'quota_exceeded');
      expect(refused.body.error.details).toMatchObject({
        dimension: 'image_bytes',
        project: 'imgq',
        limit: size + 10,
        used: size,
        requested: statSync(other).size,
      });
      expect(stored()).toEqual(before);
      expect(stored()).not.toContain(`${sha256Of(other)}.qcow2`);
      expect(leftovers()).toEqual([]);
      expect((await call('GET', '/v1/images/two?project=imgq')).body.status.state).toBe('pending');
    });

    it('meters an image file as image_bytes from its upload until the image is deleted', async () => {
      const file = join(work, `meter-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', file, '3M');
      const size = statSync(file).size;
      expect((await call('POST', '/v1/projects', { body: { name: 'imgm' } })).status).toBe(201);
      const img = await create('metered', { project: 'imgm' });
      const ranges = () =>
        cp.store.db.selectFrom('meter_ranges').selectAll().where('resource_id', '=', img.id).execute();
      // An image without a file holds nothing.
      expect(await ranges()).toEqual([]);

      expect((await upload('metered', file, '?project=imgm')).status).toBe(200);
      const [held, ...more] = await ranges();
      expect(more).toEqual([]);
      expect(held).toMatchObject({ project: 'imgm', resource_kind: 'image', dimension: 'image_bytes', ended_at: null });
      expect(Number(held!.quantity)).toBe(size);

      // The metering route sums it as byte-seconds, and its CSV names the image.
      await new Promise((r) => setTimeout(r, 20));
      const from = encodeURIComponent(new Date(Date.parse(held!.started_at) - 3_600_000).toISOString());
      const to = encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString());
      const window = `/v1/projects/imgm/metering?from=${from}&to=${to}&group_by=resource`;
      const report = await call('GET', window);
      expect(report.status, JSON.stringify(report.body)).toBe(200);
      const items = report.body.items as Array<{ dimension: string; resource_id: string; quantity_seconds: number }>;
      expect(items.map((i) => [i.dimension, i.resource_id])).toEqual([['image_bytes', img.id]]);
      expect(items[0]!.quantity_seconds).toBeGreaterThan(0);
      const csv = (await call('GET', `${window}&format=csv`)).bytes.toString('utf8');
      expect(csv).toContain(`,image_bytes,image,${img.id},`);

      // Deleting the image closes the range in the same transaction; none is left open.
      expect((await call('DELETE', '/v1/images/metered?project=imgm')).status).toBe(204);
      const after = await ranges();
      expect(after).toHaveLength(1);
      expect(after[0]!.id).toBe(held!.id);
      expect(after[0]!.ended_at).not.toBeNull();
      expect(Date.parse(after[0]!.ended_at!)).toBeGreaterThan(Date.parse(held!.started_at));
    });

    it('keeps an uploaded qcow2 as it is, by its sha256', async () => {
      const file = join(work, `keep-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', file, '1M');
      const img = await create('keep', { os: 'test' });
      expect(img.status).toEqual({ state: 'pending', size_bytes: null, sha256: null, virtual_size_bytes: null });
      const res = await upload('keep', file, `?sha256=${sha256Of(file)}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const sha = sha256Of(file);
      expect(res.body.status).toEqual({
        state: 'ready',
        size_bytes: statSync(file).size,
        sha256: sha,
        virtual_size_bytes: MiB,
      });
      expect(res.body.spec.format).toBe('qcow2');
      expect(res.body.revision).toBe(2);
      expect(res.headers.etag).toBe('"2"');
      expect(sha256Of(join(imagesDir, `${sha}.qcow2`))).toBe(sha);
      expect(leftovers()).toEqual([]);
      const history = await cp.store.db
        .selectFrom('history')
        .select(['action', 'revision'])
        .where('resource_id', '=', img.id)
        .orderBy('revision')
        .execute();
      expect(history.map((h) => h.action)).toEqual(['create', 'upload']);
      const events = await cp.store.db
        .selectFrom('events')
        .select(['type', 'data'])
        .where('resource_id', '=', img.id)
        .execute();
      expect(events.some((e) => e.type === 'resource.updated' && JSON.parse(e.data).sha256 === sha)).toBe(true);
      // One file per image: a second upload is refused (before the body is read: no socket here, so the answer is seen).
      const again = await cp.app.http.inject({
        method: 'PUT',
        url: '/v1/images/keep/file',
        payload: readFileSync(file),
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/octet-stream' },
      });
      expect(again.statusCode).toBe(409);
      expect(JSON.parse(again.body).error.code).toBe('invalid_state');
    });

    it('converts a raw upload to qcow2, larger than the JSON body limit, and hashes the stored file', async () => {
      const raw = rawDisk(`disk-${target.name}.raw`, 3 * MiB);
      await create('raw');
      const res = await upload('raw', raw);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const { sha256, size_bytes, virtual_size_bytes } = res.body.status;
      expect(sha256).not.toBe(sha256Of(raw));
      const storedFile = join(imagesDir, `${sha256}.qcow2`);
      expect(sha256Of(storedFile)).toBe(sha256);
      expect(size_bytes).toBe(statSync(storedFile).size);
      expect(virtual_size_bytes).toBe(3 * MiB);
      const info = JSON.parse(
        execFileSync('qemu-img', ['info', '--output=json', '-f', 'qcow2', storedFile], { encoding: 'utf8' }),
      );
      expect(info.format).toBe('qcow2');
      // Same guest-visible bytes as the raw upload.
      expect(spawnSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'qcow2', raw, storedFile]).status).toBe(0);
      expect(leftovers()).toEqual([]);
    });

    it('refuses a file whose sha256 is not the expected one and keeps nothing', async () => {
      const file = join(work, `mismatch-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', file, '2M');
      await create('mismatch');
      const before = stored();
      const res = await call('PUT', '/v1/images/mismatch/file', { file, headers: { 'x-floe-sha256': 'a'.repeat(64) } });
      expectError(res, 'image_checksum_mismatch');
      expect(res.body.error.details.actual).toBe(sha256Of(file));
      expect(stored()).toEqual(before);
      expect(leftovers()).toEqual([]);
      expect((await call('GET', '/v1/images/mismatch')).body.status.state).toBe('pending');
      const bad = await cp.app.http.inject({
        method: 'PUT',
        url: '/v1/images/mismatch/file?sha256=xyz',
        payload: readFileSync(file),
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/octet-stream' },
      });
      expect(JSON.parse(bad.body).error).toMatchObject({ code: 'validation_failed', details: { field: 'sha256' } });
    });

    it('refuses a qcow2 with a backing file or an external data file and leaves no trace', async () => {
      const evil = join(work, `evil-${target.name}.qcow2`);
      qemuImg('create', '-q', '-u', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/shadow', evil, '1M');
      await create('evil');
      const before = stored();
      const res = await upload('evil', evil);
      expectError(res, 'image_backing_file_forbidden');
      expect(res.body.error.message).not.toContain('root:');
      const data = join(work, `data-${target.name}.raw`);
      const external = join(work, `external-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${data}`, external, '1M');
      expectError(await upload('evil', external), 'image_backing_file_forbidden');
      // A VMDK descriptor naming a host file is never opened: it is not raw or qcow2.
      const vmdk = join(work, `evil-${target.name}.vmdk`);
      writeFileSync(
        vmdk,
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "/etc/shadow" 0\n',
      );
      expectError(await upload('evil', vmdk), 'image_format_unsupported');
      expect(stored()).toEqual(before);
      expect(leftovers()).toEqual([]);
      expect((await call('GET', '/v1/images/evil')).body.status.state).toBe('pending');
    });

    it('refuses an image whose virtual size is over the limit, and uploads over the size limit', async () => {
      const big = join(work, `big-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', big, '2G');
      await create('big');
      const before = stored();
      const res = await upload('big', big);
      expectError(res, 'image_too_large');
      expect(res.body.error.details).toEqual({ virtual_size_bytes: 2 * 1024 ** 3, limit_bytes: 1024 ** 3 });
      // Declared too large: refused before reading.
      const declared = await cp.app.http.inject({
        method: 'PUT',
        url: '/v1/images/big/file',
        payload: Buffer.alloc(9 * MiB),
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/octet-stream' },
      });
      expect(declared.statusCode).toBe(413);
      expect(JSON.parse(declared.body).error.code).toBe('payload_too_large');
      // Streamed without a length: refused once the limit is passed.
      const streamed = await upload('big', rawDisk(`over-${target.name}.raw`, 9 * MiB)).catch(
        (err: NodeJS.ErrnoException) => err,
      );
      if (!(streamed instanceof Error)) expectError(streamed, 'payload_too_large');
      else expect(streamed.code).toMatch(/ECONNRESET|EPIPE/);
      expect(stored()).toEqual(before);
      expect(leftovers()).toEqual([]);
    });

    it('keeps nothing of an upload the client breaks off', async () => {
      await create('cut');
      const before = stored();
      await new Promise<void>((resolve) => {
        const req = https.request(new URL('/v1/images/cut/file', cp.url), {
          method: 'PUT',
          ca: cp.ca.certPem,
          agent: false,
          headers: {
            authorization: `Bearer ${cp.adminToken}`,
            'content-type': 'application/octet-stream',
            'content-length': String(4 * MiB),
          },
        });
        req.on('error', () => resolve());
        req.write(Buffer.alloc(MiB, 1), () =>
          setTimeout(() => {
            req.destroy();
            resolve();
          }, 100),
        );
      });
      const deadline = Date.now() + 5000;
      while (leftovers().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(leftovers()).toEqual([]);
      expect(stored()).toEqual(before);
      expect((await call('GET', '/v1/images/cut')).body.status.state).toBe('pending');
    });

    it('refuses other content types and images of projects the token cannot use', async () => {
      await create('typed');
      // Refusals before the body is read close the connection; in-process requests see every answer.
      const json = await cp.app.http.inject({
        method: 'PUT',
        url: '/v1/images/typed/file',
        payload: { not: 'a file' },
        headers: { authorization: `Bearer ${cp.adminToken}` },
      });
      expect(json.statusCode).toBe(415);
      expect(JSON.parse(json.body).error.code).toBe('unsupported_media_type');
      // No content type at all (curl -T) is an upload.
      const bare = join(work, `bare-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', bare, '1M');
      const res = await cp.app.http.inject({
        method: 'PUT',
        url: '/v1/images/typed/file',
        payload: readFileSync(bare),
        headers: { authorization: `Bearer ${cp.adminToken}` },
      });
      expect(res.statusCode, res.body).toBe(200);
      await call('DELETE', '/v1/images/typed');
      await create('typed');
      await cp.app.services.projects.create(cp.admin, { name: 'other' });
      const token = await cp.app.services.tokens.create(
        cp.admin,
        { name: 'other', projects: ['other'] },
        async (ref, db) => (await cp.app.services.projects.get(cp.admin, ref, db)).id,
      );
      const file = join(work, `typed-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', file, '1M');
      const hidden = await cp.app.http.inject({
        method: 'PUT',
        url: '/v1/images/typed/file',
        payload: readFileSync(file),
        headers: { authorization: `Bearer ${token.secret}`, 'content-type': 'application/octet-stream' },
      });
      expect(hidden.statusCode).toBe(404);
      expect(JSON.parse(hidden.body).error.code).toBe('image_not_found');
    });

    it('stores identical files once and removes a file with its last image; rm while used is a 409', async () => {
      const file = join(work, `twin-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', file, '3M');
      const sha = sha256Of(file);
      await create('twin-a');
      await create('twin-b');
      expect((await upload('twin-a', file)).body.status.sha256).toBe(sha);
      expect((await upload('twin-b', file)).body.status.sha256).toBe(sha);
      expect(stored().filter((f) => f === `${sha}.qcow2`)).toHaveLength(1);

      const inst = await call('POST', '/v1/instances', {
        body: { name: 'user', image: 'twin-a', vcpus: 1, memory_mib: 128 },
      });
      expect(inst.status, JSON.stringify(inst.body)).toBe(202);
      const inUse = await call('DELETE', '/v1/images/twin-a');
      expectError(inUse, 'in_use');
      expect(inUse.body.error.details.used_by).toBe(inst.body.instance.id);

      expect((await call('DELETE', '/v1/images/twin-b')).status).toBe(204);
      expect(existsSync(join(imagesDir, `${sha}.qcow2`))).toBe(true);
      // Gone from the database at once (no agent here to confirm the delete).
      await cp.store.db.deleteFrom('instances').where('id', '=', inst.body.instance.id).execute();
      expect((await call('DELETE', '/v1/images/twin-a')).status).toBe(204);
      expect(existsSync(join(imagesDir, `${sha}.qcow2`))).toBe(false);
    });

    it('lets instances be created from a pending image', async () => {
      await create('later');
      const inst = await call('POST', '/v1/instances', {
        body: { name: 'early', image: 'later', vcpus: 1, memory_mib: 128 },
      });
      expect(inst.status, JSON.stringify(inst.body)).toBe(202);
      const desired = await cp.app.services.instances.desiredOne(inst.body.instance.id);
      expect(desired?.image).toMatchObject({ name: 'later', sha256: null });
    });

    it('sends a file to the agent of a host that uses it, with its client certificate only', async () => {
      const file = join(work, `agent-${target.name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', file, '1M');
      const img = await create('fetched');
      const unused = await create('unused');
      await upload('fetched', file);
      await upload('unused', join(work, `keep-${target.name}.qcow2`)).catch(() => undefined);
      const inst = await call('POST', '/v1/instances', {
        body: { name: 'fetcher', image: 'fetched', vcpus: 1, memory_mib: 128 },
      });
      expect(inst.body.instance.status.host).toBe(hostId);

      const got = await call('GET', `/v1/agent/images/${img.id}`, { cert: hostCert, token: null });
      expect(got.status).toBe(200);
      expect(got.headers['x-floe-sha256']).toBe(sha256Of(file));
      expect(got.headers['content-length']).toBe(String(statSync(file).size));
      expect(createHash('sha256').update(got.bytes).digest('hex')).toBe(sha256Of(file));

      const noCert = await call('GET', `/v1/agent/images/${img.id}`, { token: null });
      expectError(noCert, 'client_certificate_required');
      // A bearer token is no way in either.
      expectError(await call('GET', `/v1/agent/images/${img.id}`), 'client_certificate_required');
      // Images no instance on this host uses, and records without a file, are not handed out.
      expectError(
        await call('GET', `/v1/agent/images/${unused.id}`, { cert: hostCert, token: null }),
        'image_not_found',
      );
      const pending = await create('nofile');
      expectError(
        await call('GET', `/v1/agent/images/${pending.id}`, { cert: hostCert, token: null }),
        'image_not_found',
      );
      // A certificate that was replaced no longer counts.
      const newer = await issueClientCert(cp.ca, { commonName: hostId });
      await cp.app.services.hosts.setCertSerial(hostId, certificateSerial(newer.certPem));
      expectError(
        await call('GET', `/v1/agent/images/${img.id}`, { cert: hostCert, token: null }),
        'client_certificate_required',
      );
      expect((await call('GET', `/v1/agent/images/${img.id}`, { cert: newer, token: null })).status).toBe(200);
      await cp.app.services.hosts.setCertSerial(hostId, certificateSerial(hostCert.certPem));
    });
  });
}
