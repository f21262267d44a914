import { randomBytes } from 'node:crypto';
import type { DesiredInstance, InstanceSpec } from '@floe/api';

const ULID_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A random id in floe's `prefix_ULID` shape (time part first, so ids made later sort later). */
export function testId(prefix = 'inst'): string {
  let time = Date.now();
  let head = '';
  for (let i = 0; i < 10; i++) {
    head = ULID_ALPHABET[time % 32]! + head;
    time = Math.floor(time / 32);
  }
  const tail = [...randomBytes(16)].map((b) => ULID_ALPHABET[b % 32]).join('');
  return `${prefix}_${head}${tail}`;
}

/** Overrides for `desiredInstance`: top-level fields, and any part of the spec. */
export type DesiredInstanceOverrides = Partial<Omit<DesiredInstance, 'spec'>> & { spec?: Partial<InstanceSpec> };

/** A valid DesiredInstance (a small running VM) with any field overridden. */
export function desiredInstance(overrides: DesiredInstanceOverrides = {}): DesiredInstance {
  const { spec, ...top } = overrides;
  const id = top.id ?? testId('inst');
  return {
    id,
    name: `vm-${id.slice(-8).toLowerCase()}`,
    project: 'default',
    revision: 1,
    deleting: false,
    generation: 1,
    restart_generation: 0,
    force_stop: false,
    image: null,
    ...top,
    spec: {
      image: 'img_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      machine_type: null,
      vcpus: 1,
      memory_mib: 128,
      disk_gib: 1,
      user_data: null,
      vendor_data: null,
      config_drive: true,
      ssh_keys: [],
      power_state: 'running',
      restart_policy: 'on-failure',
      ...spec,
    },
  };
}
