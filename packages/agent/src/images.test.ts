import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DesiredImage, DesiredInstance, ObservedInstance, VmCreateContext } from '@floe/api';
import { FakeVmDriver } from '@floe/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The agent never depends on the server package; only this test borrows it to run a real control plane.
import { certificateSerial, createCa, issueClientCert } from '../../server/src/ca/index.js';
import { storeTargets } from '../../server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../server/src/testing.js';
import { ImageCache, imageDownloadUrl } from './images.js';
import { InstanceReconciler } from './reconciler.js';
import type { AgentCredentials } from './state.js';

const QEMU_IMG = spawnSync('qemu-img', ['--version']).status === 0;
if (!QEMU_IMG)
  console.warn('[floe] agent image cache tests skipped: qemu-img is not installed (Debian package qemu-utils)');

const FACTS = {
  hostname: 'cache-host',
  agent_version: '0.0.0',
  arch: 'x86_64',
  kernel: '6.1.0',
  cpus: 8,
  memory_mib: 16384,
  disk_free_gib: 100,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'test host' },
  accelerator: 'tcg' as const,
  wireguard_kernel: false,
  vm_driver: 'fake',
};

const sha256Of = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

it('builds the download URL under the control plane base', () => {
  expect(imageDownloadUrl('https://floe.example:8443/', 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3')).toBe(
    'https://floe.example:8443/v1/agent/images/img_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  );
  expect(imageDownloadUrl('https://floe.example/base', 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3')).toBe(
    'https://floe.example/base/v1/agent/images/img_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  );
  expect(() => imageDownloadUrl('http://floe.example', 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3')).toThrow(/https/);
});

describe.skipIf(!QEMU_IMG || storeTargets()[0]!.skip !== null)('image cache against a control plane', () => {
  let cp: TestControlPlane;
  let work: string;
  let credentials: AgentCredentials;
  let hostId: string;
  let downloads = 0;

  /** Register an image with a fresh qcow2 file and an instance on the test host using it; answers the desired state. */
  async function placed(name: string, size = 2 * 1024 * 1024): Promise<{ desired: DesiredInstance; file: string }> {
    // Some content of its own, so every image has its own sha256.
    const raw = join(work, `${name}.raw`);
    const bytes = Buffer.alloc(size);
    bytes.write(`floe image ${name}`, 0);
    writeFileSync(raw, bytes);
    const file = join(work, `${name}.qcow2`);
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, file]);
    const svc = cp.app.services;
    await svc.images.create(cp.admin, { name });
    await svc.imageFiles.upload(cp.admin, name, 'default', createReadStream(file));
    const { instance } = await svc.instances.create(cp.admin, {
      name: `vm-${name}`,
      image: name,
      vcpus: 1,
      memory_mib: 128,
    });
    const desired = await svc.instances.desiredOne(instance.id);
    expect(desired?.image?.sha256).toBe(sha256Of(file));
    return { desired: desired!, file };
  }

  beforeAll(async () => {
    cp = await startTestControlPlane(await storeTargets()[0]!.open());
    work = await mkdtemp(join(tmpdir(), 'floe-image-cache-'));
    const host = await cp.app.services.hosts.ensureLocal('cache-host', async (id) => {
      const cert = await issueClientCert(cp.ca, { commonName: id });
      credentials = { certPem: cert.certPem, keyPem: cert.keyPem, caPem: cp.ca.certPem };
      return { serial: certificateSerial(cert.certPem) };
    });
    hostId = host.id;
    await cp.app.services.hosts.markOnline(hostId, FACTS, 'test');
    // Count what the control plane hands out.
    const files = cp.app.services.imageFiles;
    const forHost = files.forHost.bind(files);
    files.forHost = async (h, id) => {
      downloads++;
      return forHost(h, id);
    };
  });
  afterAll(async () => {
    await cp?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('fetches an image once with the client certificate, checks it and keeps it by sha256', async () => {
    const { desired, file } = await placed('alpha');
    const dir = join(work, 'cache-alpha');
    const cache = new ImageCache({ dir, server: cp.url, credentials });
    const before = downloads;
    const paths = await Promise.all([
      cache.ensure(desired.image),
      cache.ensure(desired.image),
      cache.ensure({ ...desired.image! }),
    ]);
    expect(new Set(paths)).toEqual(new Set([join(dir, `${desired.image!.sha256}.qcow2`)]));
    expect(downloads - before).toBe(1);
    expect(readFileSync(paths[0]!).equals(readFileSync(file))).toBe(true);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
    // Cached: no second download, also for a new cache over the same directory (an agent restart).
    expect(await cache.ensure(desired.image)).toBe(paths[0]);
    expect(await new ImageCache({ dir, server: cp.url, credentials }).ensure(desired.image)).toBe(paths[0]);
    expect(downloads - before).toBe(1);
    // No image, or an image without a file: nothing to fetch.
    expect(await cache.ensure(null)).toBeNull();
    expect(await cache.ensure({ ...desired.image!, sha256: null })).toBeNull();
  });

  it('refuses what does not match the sha256, and keeps nothing of it', async () => {
    const { desired } = await placed('beta');
    const dir = join(work, 'cache-beta');
    const cache = new ImageCache({ dir, server: cp.url, credentials });
    const image = desired.image!;
    const other = createHash('sha256').update('something else').digest('hex');
    await expect(cache.ensure({ ...image, sha256: other })).rejects.toThrow(/cannot fetch image "beta".*sha256/);
    // The stored file changed behind the control plane's back: the bytes do not hash to what was announced.
    const stored = join(cp.dataDir, 'images', `${image.sha256}.qcow2`);
    const original = readFileSync(stored);
    const damaged = Buffer.from(original);
    damaged[damaged.length - 1] = damaged.at(-1)! ^ 0xff;
    writeFileSync(stored, damaged);
    try {
      await expect(cache.ensure(image)).rejects.toThrow(/the downloaded file has sha256 [0-9a-f]{64}, expected/);
    } finally {
      writeFileSync(stored, original);
    }
    expect(readdirSync(dir).filter((f) => f !== 'tmp')).toEqual([]);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
    expect(await cache.ensure(image)).toBe(join(dir, `${image.sha256}.qcow2`));
  });

  it("needs a certificate signed by floe's CA for a host that uses the image", async () => {
    const { desired } = await placed('gamma');
    const otherCa = await createCa({ commonName: 'not floe' });
    const stranger = await issueClientCert(otherCa, { commonName: hostId });
    const cache = new ImageCache({
      dir: join(work, 'cache-gamma'),
      server: cp.url,
      credentials: { ...credentials, certPem: stranger.certPem, keyPem: stranger.keyPem },
    });
    await expect(cache.ensure(desired.image)).rejects.toThrow(/401.*client_certificate_required/);
    // A record the host has no instance of is not handed out.
    await cp.app.services.images.create(cp.admin, { name: 'unplaced' });
    const file = join(work, 'unplaced.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '3M']);
    const img = await cp.app.services.imageFiles.upload(cp.admin, 'unplaced', 'default', createReadStream(file));
    const honest = new ImageCache({ dir: join(work, 'cache-unplaced'), server: cp.url, credentials });
    const unplaced: DesiredImage = {
      id: img.id,
      name: img.name,
      sha256: img.status.sha256,
      size_bytes: img.status.size_bytes,
    };
    await expect(honest.ensure(unplaced)).rejects.toThrow(/404.*image_not_found/);
  });

  it('gives the reconciler the path for driver.create; a failed fetch is an error with the reason, retried', async () => {
    const { desired } = await placed('delta');
    const stored = join(cp.dataDir, 'images', `${desired.image!.sha256}.qcow2`);
    const hidden = `${stored}.away`;
    renameSync(stored, hidden);
    const driver = new FakeVmDriver();
    const contexts: Array<VmCreateContext | undefined> = [];
    const create = driver.create.bind(driver);
    driver.create = async (vm, ctx) => {
      contexts.push(ctx);
      return create(vm, ctx);
    };
    const statuses: ObservedInstance[] = [];
    const dir = join(work, 'cache-delta');
    const reconciler = new InstanceReconciler({
      driver,
      reporter: { status: (s) => statuses.push(s), event: () => undefined },
      images: new ImageCache({ dir, server: cp.url, credentials }),
      resyncIntervalMs: 60_000,
      retryBackoff: { initialMs: 100, maxMs: 200 },
    });
    await reconciler.start();
    try {
      reconciler.setDesired([desired], { full: true });
      const until = async (what: string, check: () => boolean) => {
        const deadline = Date.now() + 10_000;
        while (!check()) {
          if (Date.now() > deadline)
            throw new Error(`timed out waiting for ${what}: ${JSON.stringify(statuses.at(-1))}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await until('an error', () => statuses.some((s) => s.state === 'error'));
      const error = statuses.find((s) => s.state === 'error')!;
      expect(error.reason).toMatch(
        /^cannot fetch image "delta" \(img_[0-9A-Z]{26}\): the control plane answered 404: .*\(image_not_found\)$/,
      );
      expect(contexts).toEqual([]);
      renameSync(hidden, stored);
      await until('running', () => statuses.at(-1)?.state === 'running');
      expect(contexts).toEqual([{ imagePath: join(dir, `${desired.image!.sha256}.qcow2`) }]);
      expect(existsSync(contexts[0]!.imagePath!)).toBe(true);
    } finally {
      await reconciler.stop();
      await driver.close();
    }
  });
});
