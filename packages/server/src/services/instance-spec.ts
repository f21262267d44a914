import {
  FloeError,
  NO_FIRST_BOOT,
  USER_DATA_MAX_BYTES,
  type Image,
  type InstanceCreate,
  type InstanceSpec,
  type InstanceStatus,
  type MachineType,
} from '@floe/api';

/* What a create request becomes (pure): checks the body schema cannot express, the spec, the first status. */

/** Refuse a create body that is too large or does not say the size. */
export function checkInstanceCreate(body: InstanceCreate): void {
  for (const field of ['user_data', 'vendor_data'] as const) {
    const doc = body[field];
    if (doc !== undefined && Buffer.byteLength(doc, 'utf8') > USER_DATA_MAX_BYTES) {
      throw new FloeError('validation_failed', `${field} is larger than ${USER_DATA_MAX_BYTES} bytes`, {
        field,
        limit: USER_DATA_MAX_BYTES,
      });
    }
  }
  if (body.machine_type === undefined && (body.vcpus === undefined || body.memory_mib === undefined)) {
    throw new FloeError('validation_failed', 'give machine_type, or both vcpus and memory_mib', {
      field: 'machine_type',
    });
  }
}

/** The spec of a new instance from its body, its image, its machine type (if named) and the image's smallest disk. */
export function instanceSpecFrom(
  body: InstanceCreate,
  image: Image,
  type: MachineType | null,
  minDisk: number,
): InstanceSpec {
  return {
    image: image.id,
    machine_type: type?.name ?? null,
    vcpus: body.vcpus ?? type!.spec.vcpus,
    memory_mib: body.memory_mib ?? type!.spec.memory_mib,
    // Without disk_gib, a machine type's disk smaller than the image grows to the image's minimum.
    disk_gib: Math.max(body.disk_gib ?? type?.spec.disk_gib ?? minDisk, minDisk),
    user_data: body.user_data ?? null,
    vendor_data: body.vendor_data ?? null,
    config_drive: body.config_drive ?? true,
    ssh_keys: body.ssh_keys ?? [],
    power_state: body.start === false ? 'stopped' : 'running',
    restart_policy: body.restart_policy ?? 'never',
  };
}

/** The status of an instance just placed on `hostId`. */
export function scheduledStatus(hostId: string): InstanceStatus {
  return {
    state: 'scheduled',
    host: hostId,
    reason: null,
    accelerator: null,
    observed_revision: 0,
    started_at: null,
    stopped_at: null,
    first_boot: NO_FIRST_BOOT,
  };
}

/** The sizes a resize changes. */
export interface InstanceSize {
  vcpus: number;
  memory_mib: number;
  disk_gib: number;
}

/**
 * The spec after a resize (pure): explicit fields win over the machine type's; without a machine type
 * and with a size of its own, the instance has a custom size (machine_type null). Refuses a running
 * (or to-be-running) instance with invalid_state, a smaller disk with disk_shrink_refused, and a body
 * that names nothing to change with validation_failed.
 */
export function resizedSpec(
  name: string,
  spec: InstanceSpec,
  body: { vcpus?: number; memory_mib?: number; disk_gib?: number },
  type: MachineType | null,
): InstanceSpec {
  if (type === null && body.vcpus === undefined && body.memory_mib === undefined && body.disk_gib === undefined)
    throw new FloeError('validation_failed', 'give machine_type, vcpus, memory_mib or disk_gib', { field: 'vcpus' });
  if (spec.power_state !== 'stopped')
    throw new FloeError(
      'invalid_state',
      `instance "${name}" must be stopped to be resized; stop it first (floe vm stop ${name}), then start it again`,
      { power_state: spec.power_state },
    );
  const disk_gib = body.disk_gib ?? Math.max(type?.spec.disk_gib ?? spec.disk_gib, spec.disk_gib);
  if (disk_gib < spec.disk_gib)
    throw new FloeError(
      'disk_shrink_refused',
      `instance "${name}" has a ${spec.disk_gib} GiB disk; a disk can only grow, not shrink to ${disk_gib} GiB`,
      { field: 'disk_gib', current_gib: spec.disk_gib, requested_gib: disk_gib },
    );
  const vcpus = body.vcpus ?? type?.spec.vcpus ?? spec.vcpus;
  const memory_mib = body.memory_mib ?? type?.spec.memory_mib ?? spec.memory_mib;
  const fitsType = type !== null && vcpus === type.spec.vcpus && memory_mib === type.spec.memory_mib ? type.name : null;
  // Only the disk changed: the machine type still describes the instance.
  const sameCpuMem = vcpus === spec.vcpus && memory_mib === spec.memory_mib;
  return {
    ...spec,
    machine_type: type !== null ? fitsType : sameCpuMem ? spec.machine_type : null,
    vcpus,
    memory_mib,
    disk_gib,
  };
}

/** What a change of size takes from (positive) or gives back to (negative) the quota (pure). */
export function sizeDeltas(
  before: InstanceSize,
  after: InstanceSize,
): { vcpus: number; memory_mib: number; disk_gib: number } {
  return {
    vcpus: after.vcpus - before.vcpus,
    memory_mib: after.memory_mib - before.memory_mib,
    disk_gib: after.disk_gib - before.disk_gib,
  };
}
