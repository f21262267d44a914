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
