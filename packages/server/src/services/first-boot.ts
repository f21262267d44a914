import type { FirstBoot, InstanceSpec, InstanceStatus, ObservedInstance } from '@floe/api';

/** Nothing known yet of a VM's first boot. */
export const NO_FIRST_BOOT: FirstBoot = Object.freeze({ source: null, fetched_at: null, finished_at: null, result: null, detail: null });

/** A stored spec with the fields added since it was written filled in (`vendor_data` null, `config_drive` on). */
export function normalizeSpec(raw: InstanceSpec): InstanceSpec {
  return { ...raw, vendor_data: raw.vendor_data ?? null, config_drive: raw.config_drive ?? true };
}

/** A stored status with `first_boot` filled in for rows written before it existed. */
export function normalizeStatus(raw: InstanceStatus): InstanceStatus {
  return { ...raw, first_boot: { ...NO_FIRST_BOOT, ...(raw.first_boot ?? {}) } };
}

function earliest(a: string | null, b: string | null | undefined): string | null {
  if (b === undefined || b === null) return a;
  return a === null || b < a ? b : a;
}

/**
 * Fold what an agent saw of first boot into what the control plane has. An
 * agent forgets after a restart, so its nulls never erase what was recorded;
 * the first fetch is the one kept, and a report of the end (with its result)
 * replaces an earlier one.
 */
export function mergeFirstBoot(before: FirstBoot, seen: ObservedInstance['first_boot']): FirstBoot {
  if (seen === undefined) return before;
  const finished = seen.finished_at !== undefined && seen.finished_at !== null;
  return {
    source: before.fetched_at !== null ? before.source : (seen.source ?? before.source),
    fetched_at: earliest(before.fetched_at, seen.fetched_at),
    finished_at: finished ? seen.finished_at! : before.finished_at,
    result: finished ? (seen.result ?? null) : before.result,
    detail: finished ? (seen.detail ?? null) : before.detail,
  };
}
