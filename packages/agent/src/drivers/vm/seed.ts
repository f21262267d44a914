import { join } from 'node:path';
import { FloeError, NAME_PATTERN, USER_DATA_MAX_BYTES, type DesiredInstance } from '@floe/api';
import { writeFileAtomic } from '../../host/files.js';
import { cloudYaml } from './cloud-yaml.js';
import { buildIso } from './iso9660.js';
import { networkConfig } from './network-config.js';

/**
 * The cloud-init NoCloud seed of a VM: `meta-data`, `user-data` and optional
 * `vendor-data` on an ISO 9660 volume labelled `cidata`, which the QEMU driver
 * attaches as a read-only virtio disk (not a CD-ROM: cloud kernels have no
 * AHCI). Real cloud-init finds it by that label on any block device; floe's
 * test image looks for it the same way.
 */

/** File name of the seed ISO inside a VM's directory. */
export const SEED_ISO_NAME = 'seed.iso';
/** Volume label cloud-init's NoCloud data source looks for. */
const SEED_VOLUME_LABEL = 'cidata';

/** The seed files cloud-init reads; `vendor-data` only when given. */
export type SeedFiles = Record<string, string>;

const NAME_RE = new RegExp(NAME_PATTERN);
const ID_RE = /^[a-z]{2,5}_[0-9A-HJKMNP-TV-Z]{26}$/;
const SEED_FILE_RE = /^(meta-data|user-data|vendor-data|network-config)$/;

/** The instance's ssh keys, each one trimmed line; throws `validation_failed` for a key that is not. */
export function sshKeys(vm: DesiredInstance): string[] {
  return vm.spec.ssh_keys.map((key, i) => {
    const k = key.trim();
    if (k.length === 0 || /[\r\n]/.test(k)) {
      throw new FloeError('validation_failed', `ssh key ${i + 1} must be one non-empty line`, {
        field: `ssh_keys[${i}]`,
      });
    }
    return k;
  });
}

/**
 * The NoCloud seed files of a VM. `user-data` is the user's document as given
 * (`#cloud-config` or a `#!` script); without one, a minimal `#cloud-config`
 * that installs the ssh keys. The keys are always in `meta-data` too
 * (`public-keys`), which cloud-init reads next to the user's own document.
 *
 * @example
 * seedFiles(vm) // { 'meta-data': 'instance-id: "inst_..."\nlocal-hostname: "web"\n', 'user-data': '#cloud-config\n' }
 */
export function seedFiles(vm: DesiredInstance, opts: { vendorData?: string } = {}): SeedFiles {
  if (!ID_RE.test(vm.id))
    throw new FloeError('validation_failed', `instance id ${JSON.stringify(vm.id)} is malformed`, { field: 'id' });
  if (!NAME_RE.test(vm.name))
    throw new FloeError('validation_failed', `instance name ${JSON.stringify(vm.name)} is not a DNS label`, {
      field: 'name',
    });
  const keys = sshKeys(vm);
  const userData = vm.spec.user_data;
  if (userData !== null && Buffer.byteLength(userData, 'utf8') > USER_DATA_MAX_BYTES) {
    throw new FloeError('validation_failed', `user_data is larger than ${USER_DATA_MAX_BYTES} bytes`, {
      field: 'user_data',
      limit: USER_DATA_MAX_BYTES,
    });
  }

  const metaData = cloudYaml({
    'instance-id': vm.id,
    'local-hostname': vm.name,
    ...(keys.length > 0 ? { 'public-keys': keys } : {}),
  });

  let user: string;
  if (userData !== null && userData.length > 0) {
    user = userData;
  } else if (keys.length > 0) {
    user = `#cloud-config\n${cloudYaml({ ssh_authorized_keys: keys })}`;
  } else {
    // NoCloud wants a user-data file even when there is nothing to do.
    user = '#cloud-config\n';
  }

  const files: SeedFiles = { 'meta-data': metaData, 'user-data': user };
  const vendorData = opts.vendorData ?? vm.vendor_data ?? null;
  if (vendorData !== null) files['vendor-data'] = vendorData;
  // Static addresses from IPAM, so the guest is configured even without DHCP.
  const network = networkConfig(vm.nics ?? []);
  if (network !== null) files['network-config'] = network;
  return files;
}

/**
 * Write `files` onto a fresh ISO 9660 volume labelled `cidata` (Rock Ridge and
 * Joliet names, see iso9660.ts) at `<dir>/seed.iso`, replacing any old one
 * atomically. Built in memory: no genisoimage, no staging directory. Returns
 * the ISO's path.
 */
export async function writeSeedIso(dir: string, files: SeedFiles, opts: { date?: Date } = {}): Promise<string> {
  const names = Object.keys(files).sort();
  for (const name of names) {
    if (!SEED_FILE_RE.test(name))
      throw new FloeError('validation_failed', `${JSON.stringify(name)} is not a NoCloud seed file`, {
        field: 'files',
      });
  }
  if (!names.includes('meta-data') || !names.includes('user-data')) {
    throw new FloeError('validation_failed', 'a NoCloud seed needs meta-data and user-data', { field: 'files' });
  }
  const iso = buildIso({
    label: SEED_VOLUME_LABEL,
    date: opts.date ?? new Date(),
    files: names.map((name) => ({ name, data: Buffer.from(files[name]!, 'utf8') })),
  });
  const target = join(dir, SEED_ISO_NAME);
  try {
    await writeFileAtomic(target, iso, 0o644);
    return target;
  } catch (err) {
    throw new FloeError('host_operation_failed', `cannot write the seed ISO: ${(err as Error).message}`, {
      path: target,
    });
  }
}
