import { existsSync, readFileSync, rmSync } from 'node:fs';
import { access, mkdtemp, readFile, rm, statfs } from 'node:fs/promises';
import { createSocket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { FloeError } from '@floe/api';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { HostFacts } from '@floe/api';
import { QmpClient } from './drivers/vm/qemu/qmp.js';
import { run, startProcess, which, type ProcessHandle } from './host/exec.js';

/** What the KVM probe found out; goes into HostFacts.kvm. */
export interface KvmProbe {
  present: boolean;
  usable: boolean;
  detail: string;
}

/** Options of the KVM probe. */
export interface KvmProbeOptions {
  /** QEMU binary to probe with; default qemu-system-x86_64. */
  qemu?: string;
  /** How long the probe guest runs before it is asked for its status; default 1.5 s. */
  settleMs?: number;
  /**
   * A Linux kernel to boot under KVM as a second probe (the firmware alone
   * runs on some nested setups where real guests hang). Default: this host's
   * /boot/vmlinuz-<release> when readable; null skips the kernel probe.
   */
  kernel?: string | null;
  /** How long the probe kernel gets to print its banner; default 8 s. */
  kernelTimeoutMs?: number;
}

const QEMU = 'qemu-system-x86_64';
const KVM_DEVICE = '/dev/kvm';
/** Temp dirs of the probe start with this, so leftovers are easy to recognise. */
export const KVM_PROBE_PREFIX = 'floe-kvm-probe-';

/** The agent's version, from its package.json (the same file in src and dist layouts). */
export const AGENT_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// Probes in flight, cleaned up even if the agent exits in the middle of one.
const inFlight = new Set<{ dir: string; procs: Set<ProcessHandle> }>();
let exitHookInstalled = false;
function trackProbe(dir: string): { dir: string; procs: Set<ProcessHandle> } {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const probe of inFlight) {
        for (const proc of probe.procs) proc.kill('SIGKILL');
        rmSync(probe.dir, { recursive: true, force: true });
      }
    });
  }
  const probe = { dir, procs: new Set<ProcessHandle>() };
  inFlight.add(probe);
  return probe;
}

// Ask a QEMU for its run state over QMP (the driver's client: greeting, qmp_capabilities, query-status).
async function qmpQueryStatus(socketPath: string, timeoutMs: number): Promise<string> {
  const qmp = await QmpClient.connect(socketPath, { timeoutMs, commandTimeoutMs: timeoutMs });
  try {
    return (await qmp.execute('query-status')).status;
  } finally {
    qmp.close();
  }
}

// The line of QEMU's stderr that explains a failure (warnings are noise).
function explain(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^qemu-system-\S+:\s*/, '').trim())
    .filter((l) => l.length > 0);
  if (lines.some((l) => /emulation failure/i.test(l))) return 'emulation failure';
  return lines.filter((l) => !/^warning:/i.test(l)).at(-1) ?? lines.at(-1) ?? 'no message';
}

async function stopProbe(proc: ProcessHandle): Promise<void> {
  proc.kill('SIGKILL');
  await Promise.race([proc.exited, sleep(5000)]);
}

const PROBE_BASE_ARGS = [
  '-machine',
  'q35,accel=kvm',
  '-display',
  'none',
  '-nodefaults',
  '-no-user-config',
  '-no-reboot',
];

// Firmware probe: no disk, so SeaBIOS runs real guest code, then idles looking for a boot device.
async function probeFirmware(
  qemu: string,
  dir: string,
  settleMs: number,
  procs: Set<ProcessHandle>,
): Promise<string | null> {
  const socketPath = join(dir, 'qmp.sock');
  const proc = await startProcess(qemu, [
    ...PROBE_BASE_ARGS,
    '-m',
    '64',
    '-qmp',
    `unix:${socketPath},server=on,wait=off`,
  ]);
  procs.add(proc);
  try {
    await Promise.race([proc.exited, sleep(settleMs)]);
    if (proc.hasExited()) return explain(proc.stderr());
    let status: string;
    try {
      status = await qmpQueryStatus(socketPath, 3000);
    } catch (err) {
      return proc.hasExited() ? explain(proc.stderr()) : `no status from QMP: ${(err as Error).message}`;
    }
    if (status === 'running') return null;
    const why = explain(proc.stderr());
    return why === 'no message' ? `guest status ${status}` : why;
  } finally {
    await stopProbe(proc);
  }
}

// Kernel probe: the kernel prints its banner only after its decompressor ran in long mode.
async function probeKernel(
  qemu: string,
  dir: string,
  kernel: string,
  timeoutMs: number,
  procs: Set<ProcessHandle>,
): Promise<string | null> {
  const serial = join(dir, 'serial.log');
  const proc = await startProcess(qemu, [
    ...PROBE_BASE_ARGS,
    '-m',
    '128',
    '-kernel',
    kernel,
    '-append',
    'console=ttyS0 earlyprintk=ttyS0 panic=-1',
    '-serial',
    `file:${serial}`,
  ]);
  procs.add(proc);
  try {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const text = await readFile(serial, 'utf8').catch(() => '');
      if (text.includes('Linux version')) return null;
      if (proc.hasExited()) return explain(proc.stderr());
      await sleep(100);
    }
    return proc.hasExited() ? explain(proc.stderr()) : `no boot progress within ${Math.round(timeoutMs / 1000)} s`;
  } finally {
    await stopProbe(proc);
  }
}

/** The kernel the probe boots: $FLOE_KVM_PROBE_KERNEL, else the host's own, else none. */
async function defaultKernel(): Promise<string | null> {
  for (const path of [process.env.FLOE_KVM_PROBE_KERNEL, `/boot/vmlinuz-${os.release()}`, '/vmlinuz']) {
    if (!path) continue;
    try {
      await access(path);
      return path;
    } catch {
      // try the next
    }
  }
  return null;
}

/**
 * Find out whether KVM really works: /dev/kvm existing is not enough (nested
 * virtualization may fail at the first instruction). Runs a probe guest under
 * KVM and asks it over QMP whether it is still running. Never leaves a
 * process or temp dir behind. Uncached; see `probeKvm`.
 */
export async function runKvmProbe(opts: KvmProbeOptions = {}): Promise<KvmProbe> {
  const present = existsSync(KVM_DEVICE);
  const qemu = await which(opts.qemu ?? QEMU);
  if (!present) {
    return { present, usable: false, detail: qemu === null ? 'no /dev/kvm and no QEMU' : 'no /dev/kvm; using TCG' };
  }
  if (qemu === null) return { present, usable: false, detail: 'KVM present but QEMU is not installed' };

  const dir = await mkdtemp(join(os.tmpdir(), KVM_PROBE_PREFIX));
  const probe = trackProbe(dir);
  try {
    const firmware = await probeFirmware(qemu, dir, opts.settleMs ?? 1500, probe.procs);
    if (firmware !== null) {
      return { present, usable: false, detail: `KVM present but a probe guest failed (${firmware}); using TCG` };
    }
    const kernel = opts.kernel === undefined ? await defaultKernel() : opts.kernel;
    // Firmware alone is not proof: under broken nested KVM, firmware runs and
    // a Linux kernel then hangs. Without a kernel to try, stay on the safe side.
    if (kernel === null) {
      return {
        present,
        usable: false,
        detail:
          'KVM present, but no Linux kernel was found to confirm a guest boots under it (set FLOE_KVM_PROBE_KERNEL, or FLOE_ACCEL=kvm to use it anyway); using TCG',
      };
    }
    const booted = await probeKernel(qemu, dir, kernel, opts.kernelTimeoutMs ?? 8000, probe.procs);
    if (booted !== null) {
      return {
        present,
        usable: false,
        detail: `KVM present but a probe kernel failed under it (${booted}); using TCG`,
      };
    }
    return { present, usable: true, detail: 'a probe guest and kernel ran under KVM' };
  } catch (err) {
    return {
      present,
      usable: false,
      detail: `KVM present but the probe could not run (${(err as Error).message}); using TCG`,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
    inFlight.delete(probe);
  }
}

let cachedProbe: Promise<KvmProbe> | undefined;

/** The KVM probe, run once per process (it takes a couple of seconds); later calls share the first result. */
export function probeKvm(opts: KvmProbeOptions = {}): Promise<KvmProbe> {
  cachedProbe ??= runKvmProbe(opts);
  return cachedProbe;
}

async function qemuVersion(): Promise<string | null> {
  if ((await which(QEMU)) === null) return null;
  try {
    const { stdout } = await run(QEMU, ['--version'], { timeoutMs: 10_000 });
    return /version\s+(\S+)/i.exec(stdout)?.[1] ?? (stdout.split('\n')[0]?.trim() || null);
  } catch {
    return null;
  }
}

async function wireguardInKernel(): Promise<boolean> {
  if (existsSync('/sys/module/wireguard')) return true;
  if ((await which('modprobe')) === null) return false;
  try {
    return (await run('modprobe', ['-n', 'wireguard'], { timeoutMs: 5000, allowFail: true })).code === 0;
  } catch {
    return false;
  }
}

// Free space of the file system that holds `dir`, looking at the closest existing parent.
async function diskFreeGib(dir: string): Promise<number> {
  let path = resolve(dir);
  for (;;) {
    try {
      const s = await statfs(path);
      return Math.round(((s.bavail * s.bsize) / 2 ** 30) * 100) / 100;
    } catch (err) {
      const parent = dirname(path);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === path) return 0;
      path = parent;
    }
  }
}

// Node's names for CPU architectures, spelled as `uname -m` does.
const UNAME_ARCH: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i686' };

/** Options of `probeFacts`. */
export interface ProbeFactsOptions {
  /** The agent's data directory: its file system's free space is reported. */
  dataDir: string;
  /** The VM driver in use ("qemu" or "fake"). */
  driver: string;
  /** Passed to the (cached) KVM probe. */
  kvm?: KvmProbeOptions;
  /** The accelerator the VM driver was told to use (`--accel`, FLOE_ACCEL); reported instead of the probe's suggestion. */
  accelerator?: 'kvm' | 'tcg';
  /** The underlay address to report (`--underlay`, FLOE_UNDERLAY_IPV4); detected from `server` when absent. */
  underlay?: string;
  /** The control plane URL: the source address toward it is the underlay address by default. */
  server?: string;
}

/** Validate an underlay address given by flag or environment: a unicast IPv4 address. */
export function checkUnderlay(address: string): string {
  if (
    !isIPv4(address) ||
    address === '0.0.0.0' ||
    address === '255.255.255.255' ||
    /^(22[4-9]|2[3-5]\d)\./.test(address)
  ) {
    throw new FloeError(
      'validation_failed',
      `underlay address must be a unicast IPv4 address: ${JSON.stringify(address)}`,
      { field: 'underlay' },
    );
  }
  return address;
}

/**
 * The IPv4 source address this host uses toward the control plane (the
 * kernel's route choice, read from a connected UDP socket: nothing is sent).
 * Null when the control plane is not reachable over IPv4 or cannot be resolved.
 */
export async function detectUnderlay(server: string): Promise<string | null> {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    return null;
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || (url.protocol === 'http:' ? 80 : 443));
  return new Promise((resolvePromise) => {
    const sock = createSocket('udp4');
    const done = (address: string | null) => {
      sock.close();
      resolvePromise(address !== null && isIPv4(address) && address !== '0.0.0.0' ? address : null);
    };
    sock.once('error', () => done(null));
    sock.connect(port, host, () => {
      try {
        done(sock.address().address);
      } catch {
        done(null);
      }
    });
  });
}

/** Everything the agent tells the control plane about its host in `hello`. */
export async function probeFacts(opts: ProbeFactsOptions): Promise<HostFacts> {
  const [qemu_version, wireguard_kernel, disk_free_gib, kvm] = await Promise.all([
    qemuVersion(),
    wireguardInKernel(),
    diskFreeGib(opts.dataDir),
    probeKvm(opts.kvm),
  ]);
  return {
    hostname: os.hostname(),
    agent_version: AGENT_VERSION,
    arch: UNAME_ARCH[os.arch()] ?? os.arch(),
    kernel: os.release(),
    cpus: Math.max(1, os.availableParallelism()),
    memory_mib: Math.floor(os.totalmem() / 2 ** 20),
    disk_free_gib,
    qemu_version,
    kvm,
    accelerator: qemu_version === null ? 'none' : (opts.accelerator ?? (kvm.usable ? 'kvm' : 'tcg')),
    wireguard_kernel,
    wireguard: wireguard_kernel ? 'kernel' : (await which('wireguard-go')) !== null ? 'wireguard-go' : 'none',
    vm_driver: opts.driver,
    underlay_ipv4:
      opts.underlay !== undefined
        ? checkUnderlay(opts.underlay)
        : opts.server !== undefined
          ? await detectUnderlay(opts.server)
          : null,
  };
}
