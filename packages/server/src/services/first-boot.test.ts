import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { mergeFirstBoot, NO_FIRST_BOOT, type Instance, type ObservedInstance } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';
import { normalizeSpec, normalizeStatus } from './first-boot.js';

const T1 = '2026-01-01T10:00:00.000Z';
const T2 = '2026-01-01T10:01:00.000Z';
const T3 = '2026-01-01T10:02:00.000Z';

describe('first boot records', () => {
  it('keep the first fetch and its source, whatever the agent reports later', () => {
    const fetched = mergeFirstBoot(NO_FIRST_BOOT, { source: 'metadata', fetched_at: T2 });
    expect(fetched).toEqual({ ...NO_FIRST_BOOT, source: 'metadata', fetched_at: T2 });
    expect(mergeFirstBoot(fetched, { source: 'config-drive', fetched_at: T3 })).toEqual(fetched);
    expect(mergeFirstBoot(fetched, { source: 'config-drive', fetched_at: T1 }).fetched_at).toBe(T1);
    expect(mergeFirstBoot(fetched, { source: 'config-drive', fetched_at: T1 }).source).toBe('metadata');
  });

  it('never lose what is known to an agent that forgot it (restart: nulls, or nothing)', () => {
    const done = {
      source: 'config-drive' as const,
      fetched_at: T1,
      finished_at: T2,
      result: 'failed' as const,
      detail: 'runcmd failed',
    };
    expect(mergeFirstBoot(done, undefined)).toEqual(done);
    expect(
      mergeFirstBoot(done, { source: null, fetched_at: null, finished_at: null, result: null, detail: null }),
    ).toEqual(done);
  });

  it('take the latest report of the end with its result and detail', () => {
    const failed = mergeFirstBoot(NO_FIRST_BOOT, { finished_at: T2, result: 'failed', detail: 'x' });
    expect(failed).toMatchObject({ finished_at: T2, result: 'failed', detail: 'x' });
    expect(mergeFirstBoot(failed, { finished_at: T3, result: 'ok' })).toMatchObject({
      finished_at: T3,
      result: 'ok',
      detail: null,
    });
  });

  it('fill in fields rows written before them lack', () => {
    const legacySpec = {
      image: 'i',
      machine_type: null,
      vcpus: 1,
      memory_mib: 128,
      disk_gib: 1,
      user_data: null,
      ssh_keys: [],
      power_state: 'running',
      restart_policy: 'never',
    };
    expect(normalizeSpec(legacySpec as never)).toMatchObject({ vendor_data: null, config_drive: true });
    expect(normalizeSpec({ ...legacySpec, vendor_data: '#!/bin/sh\n', config_drive: false } as never)).toMatchObject({
      vendor_data: '#!/bin/sh\n',
      config_drive: false,
    });
    const legacyStatus = {
      state: 'running',
      host: null,
      reason: null,
      accelerator: null,
      observed_revision: 0,
      started_at: null,
      stopped_at: null,
    };
    expect(normalizeStatus(legacyStatus as never).first_boot).toEqual(NO_FIRST_BOOT);
  });
});

describe('FLOE_VENDOR_DATA_FILE', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-vd-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is read at start, and refused when unreadable, too large or not a cloud-init document', async () => {
    await writeFile(path.join(dir, 'ok.yaml'), '#cloud-config\ntimezone: UTC\n');
    await writeFile(path.join(dir, 'big.yaml'), `#cloud-config\n#${'x'.repeat(70_000)}\n`);
    await writeFile(path.join(dir, 'bad.yaml'), 'timezone: UTC\n');
    expect(loadConfig({ FLOE_VENDOR_DATA_FILE: 'ok.yaml' }, dir).vendorData).toBe('#cloud-config\ntimezone: UTC\n');
    expect(loadConfig({}, dir).vendorData).toBeNull();
    for (const [file, msg] of [
      ['nope.yaml', /cannot be read/],
      ['big.yaml', /larger than/],
      ['bad.yaml', /#cloud-config document/],
    ] as const) {
      expect(() => loadConfig({ FLOE_VENDOR_DATA_FILE: file }, dir), file).toThrow(msg);
    }
  });
});

for (const target of storeTargets()) {
  describe.skipIf(target.skip)(`vendor-data, config drive and first boot on ${target.name}`, () => {
    let cp: TestControlPlane;
    let hostId: string;
    let dir: string;
    const operatorDefault = '#cloud-config\nwrite_files:\n  - path: /etc/operator\n    content: x\n';

    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'floe-vd-'));
      await writeFile(path.join(dir, 'vendor.yaml'), operatorDefault);
      cp = await startTestControlPlane(await target.open(), {
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        FLOE_LOG_LEVEL: 'silent',
        FLOE_VENDOR_DATA_FILE: path.join(dir, 'vendor.yaml'),
      });
      hostId = await onlineTestHost(cp.app, 'node-1');
      expect((await injectJson(cp, 'POST', '/v1/images', { name: 'img' })).status).toBe(201);
    });
    afterAll(async () => {
      await cp?.close();
      await rm(dir, { recursive: true, force: true });
    });

    async function create(name: string, extra: Record<string, unknown> = {}): Promise<Instance> {
      const res = await injectJson(cp, 'POST', '/v1/instances', {
        name,
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
        ...extra,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return res.body.instance;
    }

    it("hands the agent the instance's own vendor-data, else the operator's default", async () => {
      const own = await create('vd-own', { vendor_data: '#!/bin/sh\necho vendor\n', config_drive: false });
      const dflt = await create('vd-default');
      expect(own.spec).toMatchObject({ vendor_data: '#!/bin/sh\necho vendor\n', config_drive: false });
      expect(dflt.spec).toMatchObject({ vendor_data: null, config_drive: true });
      expect(dflt.status.first_boot).toEqual(NO_FIRST_BOOT);
      expect((await cp.app.services.instances.desiredOne(own.id))?.vendor_data).toBe('#!/bin/sh\necho vendor\n');
      expect((await cp.app.services.instances.desiredOne(dflt.id))?.vendor_data).toBe(operatorDefault);
      const desired = await cp.app.services.instances.desiredForHost(hostId);
      expect(desired.find((d) => d.id === dflt.id)?.spec.config_drive).toBe(true);
    });

    it('refuses vendor-data over 64 KiB and a config_drive that is not a boolean, naming the field', async () => {
      const big = await injectJson(cp, 'POST', '/v1/instances', {
        name: 'vd-big',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
        vendor_data: `#!/bin/sh\n#${'é'.repeat(40_000)}`,
      });
      expect(big.status).toBe(400);
      expect(big.body.error).toMatchObject({ code: 'validation_failed', details: { field: 'vendor_data' } });
      const bad = await injectJson(cp, 'POST', '/v1/instances', {
        name: 'vd-bad',
        image: 'img',
        vcpus: 1,
        memory_mib: 128,
        config_drive: 'yes',
      });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body.error)).toContain('config_drive');
    });

    it('records what the agent saw of first boot and keeps it through an agent that forgot', async () => {
      const vm = await create('fb-1');
      const base: ObservedInstance = {
        id: vm.id,
        state: 'running',
        observed_revision: vm.revision,
        observed_generation: 1,
        observed_restart_generation: 0,
        reason: null,
        accelerator: 'fake',
        started_at: T1,
        stopped_at: null,
      };
      await cp.app.services.instances.applyObserved(hostId, {
        ...base,
        first_boot: { source: 'metadata', fetched_at: T1 },
      });
      await cp.app.services.instances.applyObserved(hostId, { ...base, first_boot: { finished_at: T2, result: 'ok' } });
      await cp.app.services.instances.applyObserved(hostId, base); // an agent after a restart
      const got = await injectJson(cp, 'GET', `/v1/instances/${vm.id}`);
      expect(got.body.status.first_boot).toEqual({
        source: 'metadata',
        fetched_at: T1,
        finished_at: T2,
        result: 'ok',
        detail: null,
      });
    });

    it('shows rows written before these fields with their defaults', async () => {
      const vm = await create('legacy');
      const row = await cp.store.db
        .selectFrom('instances')
        .select(['spec', 'status'])
        .where('id', '=', vm.id)
        .executeTakeFirstOrThrow();
      const spec = JSON.parse(row.spec);
      const status = JSON.parse(row.status);
      delete spec.vendor_data;
      delete spec.config_drive;
      delete status.first_boot;
      await cp.store.db
        .updateTable('instances')
        .set({ spec: JSON.stringify(spec), status: JSON.stringify(status) })
        .where('id', '=', vm.id)
        .execute();
      const list = await injectJson(cp, 'GET', '/v1/instances?limit=100');
      const legacy = list.body.items.filter((i: Instance) => i.id === vm.id);
      expect(legacy.map((i: Instance) => [i.spec.config_drive, i.spec.vendor_data, i.status.first_boot])).toEqual([
        [true, null, NO_FIRST_BOOT],
      ]);
    });
  });
}
