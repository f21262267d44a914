import { NO_FIRST_BOOT, type InstanceSpec, type InstanceStatus } from '@floe/api';

/** A stored spec with the fields added since it was written filled in (`vendor_data` null, `config_drive` on). */
export function normalizeSpec(raw: InstanceSpec): InstanceSpec {
  return { ...raw, vendor_data: raw.vendor_data ?? null, config_drive: raw.config_drive ?? true };
}

/** A stored status with `first_boot` filled in for rows written before it existed. */
export function normalizeStatus(raw: InstanceStatus): InstanceStatus {
  return { ...raw, first_boot: { ...NO_FIRST_BOOT, ...(raw.first_boot ?? {}) } };
}
