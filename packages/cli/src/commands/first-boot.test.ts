import type { FirstBoot, Instance } from '@floe/api';
import { describe, expect, it } from 'vitest';
import { CliError } from '../errors.js';
import { firstBootVerdict, waitFirstBoot } from './first-boot.js';

const NONE: FirstBoot = { source: null, fetched_at: null, finished_at: null, result: null, detail: null };

function vm(
  firstBoot: Partial<FirstBoot>,
  extra: { state?: Instance['status']['state']; configDrive?: boolean } = {},
): Instance {
  return {
    id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    name: 'web',
    project: 'default',
    labels: {},
    metadata: {},
    revision: 1,
    created_at: '2026-01-01T00:00:00.000Z',
    updated_at: '2026-01-01T00:00:00.000Z',
    spec: {
      image: 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      machine_type: null,
      vcpus: 1,
      memory_mib: 128,
      disk_gib: 1,
      user_data: null,
      vendor_data: null,
      config_drive: extra.configDrive ?? true,
      ssh_keys: [],
      power_state: 'running',
      restart_policy: 'never',
    },
    status: {
      state: extra.state ?? 'running',
      host: null,
      reason: null,
      accelerator: 'tcg',
      observed_revision: 1,
      started_at: null,
      stopped_at: null,
      first_boot: { ...NONE, ...firstBoot },
    },
  };
}

describe('--wait-boot', () => {
  it('waits while the guest has not fetched, or fetched and not finished', () => {
    expect(firstBootVerdict(vm({}), false)).toEqual({
      done: false,
      message: 'waiting for the guest to fetch its first-boot data',
    });
    expect(firstBootVerdict(vm({ source: 'metadata', fetched_at: 'x' }), false)).toEqual({
      done: false,
      message: 'the guest fetched its first-boot data from the metadata service; waiting for it to finish first boot',
    });
  });

  it('ends well when the guest reported the end, and with first_boot_failed when it reported a failure', () => {
    expect(firstBootVerdict(vm({ fetched_at: 'x', finished_at: 'y', result: 'ok' }), false)).toMatchObject({
      done: true,
      ok: true,
    });
    expect(
      firstBootVerdict(vm({ fetched_at: 'x', finished_at: 'y', result: 'failed', detail: 'runcmd exited 1' }), false),
    ).toEqual({
      done: true,
      ok: false,
      code: 'first_boot_failed',
      message: 'first boot of web failed: runcmd exited 1 (see "floe vm logs web")',
    });
    expect(firstBootVerdict(vm({}, { state: 'error' }), false)).toMatchObject({
      done: true,
      ok: false,
      code: 'first_boot_failed',
    });
  });

  it('says clearly, at the deadline, that the guest never fetched its data, and from where it should have', () => {
    expect(firstBootVerdict(vm({}), true)).toMatchObject({
      code: 'first_boot_not_fetched',
      message: expect.stringContaining('never fetched its first-boot data from its seed disk (label cidata)'),
    });
    expect(firstBootVerdict(vm({}, { configDrive: false }), true)).toMatchObject({
      code: 'first_boot_not_fetched',
      message: expect.stringContaining('metadata service at 169.254.169.254'),
    });
    expect(firstBootVerdict(vm({ source: 'config-drive', fetched_at: 'x' }), true)).toMatchObject({
      code: 'first_boot_timeout',
      message: expect.stringContaining('read its seed disk but did not report the end of first boot'),
    });
  });

  it('polls until done, telling each new state once, and throws a CliError with the code', async () => {
    const seq = [
      vm({}),
      vm({}),
      vm({ source: 'metadata', fetched_at: 'x' }),
      vm({ source: 'metadata', fetched_at: 'x', finished_at: 'y', result: 'ok' }),
    ];
    const said: string[] = [];
    const done = await waitFirstBoot(
      async () => seq.shift()!,
      10_000,
      (m) => said.push(m),
      1,
    );
    expect(done.status.first_boot.result).toBe('ok');
    expect(said).toEqual([
      'waiting for the guest to fetch its first-boot data',
      'the guest fetched its first-boot data from the metadata service; waiting for it to finish first boot',
    ]);
    const err = await waitFirstBoot(
      async () => vm({}),
      30,
      () => {},
      5,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).code).toBe('first_boot_not_fetched');
  });
});
