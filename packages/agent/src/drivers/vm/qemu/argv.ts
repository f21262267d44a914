import { isAbsolute } from 'node:path';
import { FloeError, NAME_PATTERN } from '@floe/api';
import { isIfName, isMac } from '../../../host/validate.js';

/** Accelerators the QEMU driver runs guests with. */
export type QemuAccelerator = 'kvm' | 'tcg';

/** How QEMU caches the VM's disk: `none` (O_DIRECT) where the file system allows it, else `writeback`. */
export type QemuDiskCache = 'none' | 'writeback';

/** The files of one VM's runtime directory that QEMU opens or creates. */
export interface QemuRuntimePaths {
  pidfile: string;
  qmpSocket: string;
  serialSocket: string;
  /** The graphical console: QEMU's VNC server listens here (a unix socket, never a TCP port). */
  vncSocket: string;
  /** The console history; QEMU appends everything the guest writes to the serial port. */
  consoleLog: string;
  /** The VM's qcow2 overlay. */
  disk: string;
  /** The cloud-init NoCloud seed, attached as a read-only virtio disk; null for none. */
  seedIso: string | null;
}

/** One NIC of a VM: the host tap it is plugged into and its stable MAC. */
export interface QemuNic {
  /** The NIC id; QEMU's netdev/device ids derive from it. */
  id: string;
  /** The tap the agent created (`fltp...`), at most 15 characters. */
  tap: string;
  mac: string;
  /**
   * The NIC's slot (0..7): it sits on that slot's PCIe root port. Absent in
   * records written before slots existed; then its position in the list.
   */
  index?: number;
}

/** Everything the QEMU command line is built from. */
export interface QemuSpec {
  id: string;
  /** The instance name (a DNS label), shown as QEMU's guest name. */
  name: string;
  vcpus: number;
  memoryMib: number;
  accelerator: QemuAccelerator;
  diskCache: QemuDiskCache;
  paths: QemuRuntimePaths;
  /** Network interfaces in guest order (0 to 8); absent means none. */
  nics?: readonly QemuNic[];
  /** The SMBIOS system serial number (type 1), e.g. NOCLOUD_NET_SERIAL for a VM without a seed disk; absent means QEMU's default. */
  smbiosSerial?: string;
}

/**
 * The SMBIOS serial that makes cloud-init (ds-identify, then NoCloudNet) fetch
 * meta-data, user-data and vendor-data from floe's metadata service: the
 * `nocloud-net` form takes an http:// seed, which must end with `/`.
 */
export const NOCLOUD_NET_SERIAL = 'ds=nocloud-net;s=http://169.254.169.254/';

/** The QEMU binary floe runs. */
export const QEMU_BINARY = 'qemu-system-x86_64';

/** floe's id shape (`inst_` + ULID); ids become directory names, so they are checked before. */
export const INSTANCE_ID_RE = /^[a-z]{2,5}_[0-9A-HJKMNP-TV-Z]{26}$/;
const NAME_RE = new RegExp(NAME_PATTERN);
/** A unix socket path must fit `sun_path` (108 bytes with the terminating NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

function invalid(field: string, message: string): FloeError {
  return new FloeError('validation_failed', message, { field });
}

/**
 * A path QEMU can take inside its option syntax: absolute (QEMU daemonizes
 * into `/`), and without commas, which separate QEMU options (QEMU would read
 * `a,b` as two options), nor control characters.
 */
export function checkQemuPath(field: string, path: string): string {
  if (!isAbsolute(path)) throw invalid(field, `${field} must be an absolute path: ${JSON.stringify(path)}`);
  if (path.includes(','))
    throw invalid(field, `${field} must not contain a comma (QEMU's option separator): ${JSON.stringify(path)}`);
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this refuses
  if (/[\u0000-\u001f\u007f]/.test(path))
    throw invalid(field, `${field} must not contain control characters: ${JSON.stringify(path)}`);
  return path;
}

function checkSocketPath(field: string, path: string): string {
  checkQemuPath(field, path);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw invalid(
      field,
      `${field} is longer than a unix socket path may be (${MAX_SOCKET_PATH_BYTES} bytes); use a shorter state directory: ${path}`,
    );
  }
  return path;
}

function checkInt(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max)
    throw invalid(field, `${field} must be an integer from ${min} to ${max}, not ${value}`);
  return value;
}

const NIC_ID_RE = /^[a-z]{2,8}_[0-9A-Za-z]{1,40}$/;
/** Most NICs an instance may have. */
const MAX_NICS = 8;

/** QEMU id of the PCIe root port of NIC slot `index`. */
export function nicPortId(index: number): string {
  return `nicport${index}`;
}

/**
 * The PCIe root ports NICs are plugged into, one per slot: q35's root bus
 * takes no hot-plugged devices, a root port does. Each port is its own
 * chassis (unique chassis/slot pairs are required); `io-reserve=0` keeps the
 * ports from claiming I/O space (a 4 KiB window each would run the 64 KiB I/O
 * space out), which virtio-net (modern, MMIO) does not need.
 */
function nicPortArgs(index: number): string {
  return `pcie-root-port,id=${nicPortId(index)},chassis=${index + 1},slot=0,io-reserve=0`;
}

/** The slot of a NIC (its `index`, or its position for records from before slots). */
function nicSlot(nic: QemuNic, position: number): number {
  return nic.index ?? position;
}

/**
 * The `netdev_add` and `device_add` arguments of one NIC, as QMP takes them:
 * the same tap netdev and virtio-net-pci device `nicArgs` puts on the command line.
 */
export function nicQmpArgs(
  nic: QemuNic,
  position: number,
): { netdev: Record<string, unknown>; device: Record<string, unknown> } {
  const slot = checkNic(nic, position);
  return {
    netdev: { type: 'tap', id: `nd-${nic.id}`, ifname: nic.tap, script: 'no', downscript: 'no', vhost: false },
    device: { driver: 'virtio-net-pci', netdev: `nd-${nic.id}`, id: nic.id, mac: nic.mac, bus: nicPortId(slot) },
  };
}

function checkNic(nic: QemuNic, position: number): number {
  const field = `nics[${position}]`;
  const slot = nicSlot(nic, position);
  if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_NICS)
    throw invalid(
      nic.index === undefined ? 'nics' : `${field}.index`,
      `an instance has at most ${MAX_NICS} NICs, in slots 0 to ${MAX_NICS - 1}`,
    );
  if (!NIC_ID_RE.test(nic.id)) throw invalid(`${field}.id`, `NIC id ${JSON.stringify(nic.id)} is malformed`);
  if (!isIfName(nic.tap))
    throw invalid(`${field}.tap`, `tap name ${JSON.stringify(nic.tap)} is not a valid interface name`);
  if (!isMac(nic.mac))
    throw invalid(`${field}.mac`, `${JSON.stringify(nic.mac)} is not a lower-case unicast MAC address`);
  return slot;
}

/**
 * QEMU's `-netdev`/`-device` values of one NIC: a tap the agent created
 * (QEMU runs no scripts, vhost off so no /dev/vhost-net is needed) and a
 * virtio-net-pci with the NIC's MAC on the root port of its slot. The ids
 * derive from the NIC id, not its position, so QMP `device_del <nic id>` /
 * `netdev_del nd-<nic id>` hot-remove the right one.
 */
function nicArgs(nic: QemuNic, position: number): { netdev: string; device: string } {
  const slot = checkNic(nic, position);
  return {
    netdev: `tap,id=nd-${nic.id},ifname=${nic.tap},script=no,downscript=no,vhost=off`,
    device: `virtio-net-pci,netdev=nd-${nic.id},id=${nic.id},mac=${nic.mac},bus=${nicPortId(slot)}`,
  };
}

/**
 * Check a VM's NIC list as a whole: each NIC valid, at most MAX_NICS, slots
 * and ids unique. Returns the slot of each, in list order.
 */
export function checkNics(nics: readonly QemuNic[]): number[] {
  if (nics.length > MAX_NICS) throw invalid('nics', `an instance has at most ${MAX_NICS} NICs`);
  const slots = nics.map((nic, i) => checkNic(nic, i));
  const seenSlots = new Set<number>();
  const seenIds = new Set<string>();
  nics.forEach((nic, i) => {
    if (seenSlots.has(slots[i]!)) throw invalid(`nics[${i}].index`, `two NICs in slot ${slots[i]}`);
    if (seenIds.has(nic.id)) throw invalid(`nics[${i}].id`, `NIC ${nic.id} is listed twice`);
    seenSlots.add(slots[i]!);
    seenIds.add(nic.id);
  });
  return slots;
}

/**
 * The arguments of `qemu-system-x86_64` for one VM: q35, detached
 * (`-daemonize` + pidfile), QMP, the serial console and a VNC display on unix
 * sockets in the runtime directory (a standard VGA card, added last), the console logged to a file, a virtio disk, one PCIe
 * root port per NIC slot (so NICs can be hot-plugged later) with each NIC on
 * its slot's port, and the seed (see `seedDriveArgs`). `graphics=off` makes SeaBIOS print to the serial
 * port, so boot failures show up in the console log. Pure; throws
 * `validation_failed` for anything that could break QEMU's option syntax.
 *
 * @example
 * run(QEMU_BINARY, qemuArgv(spec));
 */
export function qemuArgv(spec: QemuSpec): string[] {
  if (!INSTANCE_ID_RE.test(spec.id)) throw invalid('id', `instance id ${JSON.stringify(spec.id)} is malformed`);
  if (!NAME_RE.test(spec.name)) throw invalid('name', `instance name ${JSON.stringify(spec.name)} is not a DNS label`);
  const vcpus = checkInt('vcpus', spec.vcpus, 1, 256);
  const memory = checkInt('memory_mib', spec.memoryMib, 16, 4 * 1024 * 1024);
  if (spec.accelerator !== 'kvm' && spec.accelerator !== 'tcg')
    throw invalid('accelerator', `unknown accelerator ${JSON.stringify(spec.accelerator)}`);
  if (spec.diskCache !== 'none' && spec.diskCache !== 'writeback')
    throw invalid('disk_cache', `unknown disk cache mode ${JSON.stringify(spec.diskCache)}`);
  const p = spec.paths;
  const pidfile = checkQemuPath('pidfile', p.pidfile);
  const qmp = checkSocketPath('qmp_socket', p.qmpSocket);
  const serial = checkSocketPath('serial_socket', p.serialSocket);
  const vnc = checkSocketPath('vnc_socket', p.vncSocket);
  const log = checkQemuPath('console_log', p.consoleLog);
  const disk = checkQemuPath('disk', p.disk);
  const seed = p.seedIso === null ? null : checkQemuPath('seed_iso', p.seedIso);

  const argv = [
    '-name',
    `guest=${spec.name}`,
    '-machine',
    `q35,accel=${spec.accelerator},graphics=off`,
    // TCG cannot pass the host CPU through; `max` is everything TCG emulates.
    '-cpu',
    spec.accelerator === 'kvm' ? 'host' : 'max',
    '-smp',
    String(vcpus),
    '-m',
    `${memory}M`,
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    // The graphical console, for the agent alone (the socket is in the VM's private runtime directory): no password.
    '-vnc',
    `unix:${vnc}`,
    '-daemonize',
    '-pidfile',
    pidfile,
    '-qmp',
    `unix:${qmp},server=on,wait=off`,
    '-chardev',
    `socket,id=serial0,path=${serial},server=on,wait=off,logfile=${log},logappend=on`,
    '-serial',
    'chardev:serial0',
    // Guests (cloud-init's key generation, above all) would otherwise wait for entropy under TCG.
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-pci,rng=rng0',
    '-drive',
    `if=none,id=disk0,file=${disk},format=qcow2,cache=${spec.diskCache},discard=unmap`,
    '-device',
    'virtio-blk-pci,drive=disk0,bootindex=0',
  ];
  const nics = spec.nics ?? [];
  checkNics(nics);
  for (let slot = 0; slot < MAX_NICS; slot++) argv.push('-device', nicPortArgs(slot));
  nics.forEach((nic, i) => {
    const { netdev, device } = nicArgs(nic, i);
    argv.push('-netdev', netdev, '-device', device);
  });
  if (spec.smbiosSerial !== undefined) {
    // QEMU reads a comma as the next option; nothing but printable ASCII goes into the firmware table.
    if (!/^[\x21-\x2b\x2d-\x7e]{1,200}$/.test(spec.smbiosSerial))
      throw invalid(
        'smbios_serial',
        `SMBIOS serial ${JSON.stringify(spec.smbiosSerial)} must be printable ASCII without spaces or commas`,
      );
    argv.push('-smbios', `type=1,serial=${spec.smbiosSerial}`);
  }
  if (seed !== null) argv.push(...seedDriveArgs(seed));
  // Last, so it takes the next free PCI slot and every device above keeps the address guests already know.
  argv.push('-device', DISPLAY_DEVICE);
  return argv;
}

/**
 * The graphics card the VNC display shows: the standard VGA, which every
 * firmware and guest kernel drives without extra drivers (text mode for the
 * BIOS and boot loader, a linear framebuffer later). Keyboard and mouse are
 * q35's built-in PS/2 ones.
 */
const DISPLAY_DEVICE = 'VGA,id=video0';

/** The serial number the seed disk shows the guest (`/dev/disk/by-id/virtio-cidata`). */
const SEED_DISK_SERIAL = 'cidata';

/**
 * The NoCloud seed as a read-only raw virtio-blk disk. Cloud kernels (Debian's
 * `linux-image-cloud-amd64`, Ubuntu's `-kvm`, ...) carry virtio but no AHCI,
 * so a CD-ROM on q35's AHCI controller would be invisible to them; cloud-init
 * finds the seed by its `cidata` label on any block device, a disk included.
 * No bootindex: the firmware must never try to boot it.
 */
export function seedDriveArgs(seedPath: string): string[] {
  const seed = checkQemuPath('seed_iso', seedPath);
  return [
    '-drive',
    `if=none,id=seed,file=${seed},format=raw,readonly=on`,
    '-device',
    `virtio-blk-pci,drive=seed,serial=${SEED_DISK_SERIAL}`,
  ];
}
