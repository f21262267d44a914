/**
 * The boot benchmark (`npm run bench:boot`). It boots floe's test image, one
 * VM at a time, through the whole of floe (HTTPS API, control plane, agent
 * link, reconciler, image cache, QEMU driver) and as a bare
 * `qemu-system-x86_64` with the same command line, taking turns, and prints:
 *   1. (API create → QMP answering) minus (bare qemu → QMP answering);
 *   2. (API create → READY on the serial console) ÷ (bare qemu → READY);
 *   3. the disk work the driver does for a new VM ÷ one bare `qemu-img create`.
 * Medians with p10/p90 over the runs; the baselines are measured in this same
 * run. Benchmarks report; they never fail on times.
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Event, Operation } from '@floe/api';
import { probeKvm, run } from '@floe/agent';
import { FloeClient } from '@floe/client';
import { desiredInstance, testId, until } from '@floe/testkit';
import { ensureTestImage, READY_MARKER } from '@floe/testkit/guest-image';
import { ensureOverlay, overlayCreateArgs, QEMU_IMG } from '../packages/agent/src/drivers/vm/qemu/disk.js';
import { connectWithRetry, type QmpClient } from '../packages/agent/src/drivers/vm/qemu/qmp.js';
import {
  QEMU_BINARY,
  qemuArgv,
  type QemuAccelerator,
  type QemuDiskCache,
  type QemuSpec,
} from '../packages/agent/src/drivers/vm/qemu/argv.js';
import { seedFiles, writeSeedIso } from '../packages/agent/src/drivers/vm/seed.js';
import { openStore } from '../packages/server/src/db/index.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../packages/server/src/testing.js';
import type { BootAgentJob, BootAgentWorkerData, DriverTimings } from './boot-agent-worker.js';
import { fmt, percentile, sorted, table } from './report.js';
import { BenchWorker, epochMs } from './worker.js';

/** Boots per side (floe and bare); FLOE_BENCH_RUNS overrides. */
const RUNS = Math.max(1, Number.parseInt(process.env.FLOE_BENCH_RUNS ?? '10', 10) || 10);
/** Disk provisionings per side: each takes milliseconds, so many more than boots. */
const DISK_RUNS = 40;
/** Every boot must reach READY within this. */
const BOOT_TIMEOUT_MS = 180_000;
/** How often the console log files are read while waiting for READY (the same for floe and bare). */
const POLL_MS = 5;
/** The size the VMs get (1 vCPU, 256 MiB, 1 GiB disk): the bare baseline uses the same. */
const MACHINE_TYPE = 'nano';
const IMAGE_NAME = 'floe-test';

const QMP_DELTA_TARGET_MS = 50;
const READY_RATIO_TARGET = 1.03;
const DISK_RATIO_TARGET = 2;

const GIB = 1024 ** 3;
const log = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One floe boot, in epoch ms (`post` is when the client sent POST /v1/instances). */
interface FloeRun {
  post: number;
  postAnswered: number;
  driver: DriverTimings;
  /** When the control plane marked the create operation succeeded (the agent reported running). */
  opSucceeded: number | null;
  readyFile: number;
  /** When READY arrived through GET /v1/instances/{id}/logs?follow=true; null if it did not. */
  readyApi: number | null;
}

/** One bare boot, in epoch ms. */
interface BareRun {
  spawn: number;
  /** The `-daemonize` parent exited: QEMU is initialized. */
  daemonized: number;
  qmp: number;
  ready: number;
}

/** Median, p10 and p90 of some values. */
interface Summary {
  p10: number;
  p50: number;
  p90: number;
  n: number;
}

function summary(values: number[]): Summary {
  const s = sorted(values);
  return { p10: percentile(s, 0.1), p50: percentile(s, 0.5), p90: percentile(s, 0.9), n: s.length };
}

const ms = (v: number, digits = 1) => `${fmt(v, digits)} ms`;
const s = (v: number) => `${(v / 1000).toFixed(2)} s`;
const spread = (x: Summary, f: (v: number) => string) => `${f(x.p50)} (p10 ${f(x.p10)}, p90 ${f(x.p90)})`;

/** Register a host and write an agent data directory for it in `dataDir`. */
async function prepareAgent(cp: TestControlPlane, name: string, dataDir: string): Promise<string> {
  return (await prepareAgentDir(cp, name, dataDir)).hostId;
}

/**
 * The moment `text` first shows up in `file` (which may not exist yet),
 * reading what was appended every POLL_MS. Used alike for floe's and the
 * bare VM's console log, so both are seen with the same delay.
 */
async function waitForText(file: string, text: string, timeoutMs: number, signal?: AbortSignal): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const buf = Buffer.alloc(64 * 1024);
  let fh: Awaited<ReturnType<typeof open>> | null = null;
  let offset = 0;
  let tail = '';
  try {
    for (;;) {
      if (signal?.aborted) throw new Error('aborted');
      if (fh === null) fh = await open(file, 'r').catch(() => null);
      if (fh !== null) {
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          tail = (tail + buf.subarray(0, bytesRead).toString('latin1')).slice(-4096);
          if (tail.includes(text)) return epochMs();
        }
      }
      if (Date.now() > deadline) throw new Error(`"${text}" did not appear in ${file} within ${timeoutMs / 1000} s`);
      await sleep(POLL_MS);
    }
  } finally {
    await fh?.close();
  }
}

function readCmdline(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    // A dead process nobody reaped yet is as good as gone.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** QEMU processes this benchmark started: their command line names a file under `root`. */
async function ourQemus(root: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = readCmdline(Number(entry));
    if (argv !== null && argv[0]?.endsWith(QEMU_BINARY) && argv.some((a) => a.includes(root))) pids.push(Number(entry));
  }
  return pids;
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** Everything a bare boot needs that is not timed: a VM directory with an overlay and a seed, and QEMU's arguments. */
interface BareVm {
  dir: string;
  spec: QemuSpec;
  marker: string;
}

async function prepareBare(
  root: string,
  base: string,
  size: { vcpus: number; memoryMib: number; diskBytes: number },
  accelerator: QemuAccelerator,
  diskCache: QemuDiskCache,
  name: string,
): Promise<BareVm> {
  const id = testId('inst');
  const dir = path.join(root, 'bare', id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const disk = path.join(dir, 'disk.qcow2');
  await run(QEMU_IMG, overlayCreateArgs(base, 'qcow2', disk, size.diskBytes));
  // The same seed floe writes for an instance of this name (no user-data, no keys).
  const seed = await writeSeedIso(
    dir,
    seedFiles(desiredInstance({ id, name, spec: { user_data: null, ssh_keys: [] } })),
  );
  const spec: QemuSpec = {
    id,
    name,
    vcpus: size.vcpus,
    memoryMib: size.memoryMib,
    accelerator,
    diskCache,
    paths: {
      pidfile: path.join(dir, 'qemu.pid'),
      qmpSocket: path.join(dir, 'qmp.sock'),
      serialSocket: path.join(dir, 'serial.sock'),
      consoleLog: path.join(dir, 'console.log'),
      disk,
      seedIso: seed,
    },
  };
  return { dir, spec, marker: `${READY_MARKER} ${name}` };
}

/** Boot a prepared bare VM: spawn, QMP `query-status` answered, READY on the serial console. Always leaves nothing running. */
async function bootBare(vm: BareVm): Promise<BareRun> {
  let qmp: QmpClient | null = null;
  const abort = new AbortController();
  try {
    const argv = qemuArgv(vm.spec);
    const spawned = epochMs();
    // Watched from the start, as floe's log is from the POST: the polling loads both alike.
    const readyFile = waitForText(vm.spec.paths.consoleLog, vm.marker, BOOT_TIMEOUT_MS, abort.signal);
    readyFile.catch(() => {});
    await run(QEMU_BINARY, argv, { timeoutMs: 60_000 });
    const daemonized = epochMs();
    qmp = await connectWithRetry(vm.spec.paths.qmpSocket, { attempts: 5000, delayMs: 1, timeoutMs: 5000 });
    const { status } = await qmp.execute('query-status', undefined, { timeoutMs: 5000 });
    const answered = epochMs();
    if (status !== 'running') throw new Error(`bare QEMU is ${status}, not running`);
    const ready = await readyFile;
    return { spawn: spawned, daemonized, qmp: answered, ready };
  } finally {
    abort.abort();
    const pid = Number.parseInt(await readFile(vm.spec.paths.pidfile, 'utf8').catch(() => ''), 10);
    await qmp?.execute('quit', undefined, { timeoutMs: 3000 }).catch(() => {});
    qmp?.close();
    if (Number.isInteger(pid) && pid > 1 && !(await waitGone(pid, 5000))) {
      process.kill(pid, 'SIGKILL');
      await waitGone(pid, 5000);
    }
    await rm(vm.dir, { recursive: true, force: true });
  }
}

/** Everything a floe boot needs. */
interface FloeContext {
  client: FloeClient;
  agent: BenchWorker<BootAgentJob>;
  vmsDir: string;
  /** Create operations the control plane saw end: id → status and when. */
  finished: Map<string, { status: string; at: number }>;
}

/** Create an instance through the API and follow it to READY; then delete it and wait until its VM is gone. */
async function bootFloe(
  ctx: FloeContext,
  name: string,
  onStarted?: (id: string, pid: number | null) => void,
): Promise<FloeRun> {
  const { client, agent } = ctx;
  const marker = `${READY_MARKER} ${name}`;
  const post = epochMs();
  const { instance, operation } = await client.instances.create({
    name,
    image: IMAGE_NAME,
    machine_type: MACHINE_TYPE,
  });
  const postAnswered = epochMs();
  const abort = new AbortController();
  try {
    const readyFile = waitForText(
      path.join(ctx.vmsDir, instance.id, 'console.log'),
      marker,
      BOOT_TIMEOUT_MS,
      abort.signal,
    );
    readyFile.catch(() => {});
    const driver = await agent.call<DriverTimings>({ kind: 'timings', id: instance.id, timeoutMs: BOOT_TIMEOUT_MS });
    if (driver.error !== null) throw new Error(`the agent could not boot ${name}: ${driver.error}`);
    if (driver.startDone === null)
      throw new Error(`the agent did not start ${name} within ${BOOT_TIMEOUT_MS / 1000} s`);
    onStarted?.(instance.id, driver.pid);
    // What a user sees: the console through the API (the VM runs now, READY comes seconds later).
    const readyApi = (async () => {
      let tail = '';
      for await (const chunk of client.instances.logs(instance.id, { follow: true, signal: abort.signal })) {
        tail = (tail + chunk.toString('latin1')).slice(-4096);
        if (tail.includes(marker)) return epochMs();
      }
      return null;
    })().catch(() => null);
    const ready = await readyFile;
    const api = await Promise.race([readyApi, sleep(10_000).then(() => null)]);
    const op = ctx.finished.get(operation.id);
    return {
      post,
      postAnswered,
      driver,
      opSucceeded: op?.status === 'succeeded' ? op.at : null,
      readyFile: ready,
      readyApi: api,
    };
  } finally {
    abort.abort();
    try {
      const op = await client.instances.delete(instance.id, { wait: 60 });
      if (op.status !== 'succeeded') log(`  warning: deleting ${name} ended ${op.status}: ${op.error?.message ?? ''}`);
    } catch (err) {
      log(`  warning: deleting ${name} failed: ${(err as Error).message}`);
    }
    await until(
      `the VM directory of ${name} to go`,
      async () =>
        !(await stat(path.join(ctx.vmsDir, instance.id)).then(
          () => true,
          () => false,
        )),
      { timeoutMs: 30_000, intervalMs: 20 },
    );
  }
}

/**
 * The disk work the QEMU driver does for a new VM: `ensureOverlay` in create
 * (`qemu-img info` of the base, remembered while the base is unchanged, then
 * `qemu-img create` under a temporary name and a rename). The start right
 * after create trusts the size create left instead of checking it again.
 */
async function floeDisk(base: string, overlay: string, bytes: number): Promise<void> {
  await ensureOverlay(base, overlay, bytes);
}

/** One bare `qemu-img create` of the same overlay. */
async function bareDisk(base: string, overlay: string, bytes: number): Promise<void> {
  await run(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, overlay, String(bytes)], {
    timeoutMs: 60_000,
  });
}

async function benchDisks(
  root: string,
  base: string,
  bytes: number,
): Promise<{ floe: number[]; bare: number[]; floeFirst: number }> {
  const dir = path.join(root, 'disks');
  await mkdir(dir, { recursive: true });
  const floe: number[] = [];
  const bare: number[] = [];
  const timed = async (fn: (b: string, o: string, n: number) => Promise<void>, overlay: string) => {
    const t0 = performance.now();
    await fn(base, overlay, bytes);
    const t = performance.now() - t0;
    await rm(overlay, { force: true });
    return t;
  };
  // The first call in this process, before any warm-up: nothing of floe's is cached yet.
  const floeFirst = await timed(floeDisk, path.join(dir, 'first.qcow2'));
  for (let i = 0; i < 3; i++) {
    await timed(bareDisk, path.join(dir, `warm-bare-${i}.qcow2`));
    await timed(floeDisk, path.join(dir, `warm-floe-${i}.qcow2`));
  }
  for (let i = 0; i < DISK_RUNS; i++) {
    const order = i % 2 === 0 ? (['bare', 'floe'] as const) : (['floe', 'bare'] as const);
    for (const side of order) {
      if (side === 'bare') bare.push(await timed(bareDisk, path.join(dir, `bare-${i}.qcow2`)));
      else floe.push(await timed(floeDisk, path.join(dir, `floe-${i}.qcow2`)));
    }
  }
  await rm(dir, { recursive: true, force: true });
  return { floe, bare, floeFirst };
}

/** The accelerator both sides use: TCG unless FLOE_ACCEL says kvm, or auto (KVM when the agent's probe sees a guest run under it). */
async function chooseAccelerator(): Promise<{ accelerator: QemuAccelerator; why: string }> {
  const want = process.env.FLOE_ACCEL ?? 'tcg';
  if (want === 'kvm' || want === 'tcg')
    return { accelerator: want, why: `FLOE_ACCEL=${process.env.FLOE_ACCEL ?? '(unset, default tcg)'}` };
  if (want !== 'auto') throw new Error(`FLOE_ACCEL must be auto, kvm or tcg, not ${JSON.stringify(want)}`);
  const probe = await probeKvm();
  return { accelerator: probe.usable ? 'kvm' : 'tcg', why: `FLOE_ACCEL=auto: ${probe.detail}` };
}

async function toolVersion(cmd: string): Promise<string> {
  try {
    const { stdout } = await run(cmd, ['--version'], { timeoutMs: 10_000 });
    return /version (\S+)/.exec(stdout)?.[1] ?? stdout.split('\n')[0]!.trim();
  } catch {
    return 'not installed';
  }
}

const loadavg = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function main(): Promise<void> {
  const started = performance.now();
  const cpus = os.cpus();
  const { accelerator, why } = await chooseAccelerator();
  const [qemuVersion, qemuImgVersion, kvmPresent] = await Promise.all([
    toolVersion(QEMU_BINARY),
    toolVersion(QEMU_IMG),
    stat('/dev/kvm').then(
      () => true,
      () => false,
    ),
  ]);
  log(
    `floe boot benchmark — ${cpus.length} CPU(s) (${cpus[0]?.model ?? 'unknown'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, ` +
      `Node.js ${process.version}, ${os.platform()} ${os.release()}, QEMU ${qemuVersion}, qemu-img ${qemuImgVersion}, ` +
      `/dev/kvm ${kvmPresent ? 'present' : 'absent'}; load average ${loadavg()} before the run`,
  );
  log(
    `Accelerator ${accelerator.toUpperCase()} for floe and bare alike (${why}); machine type ${MACHINE_TYPE}; ` +
      `${RUNS} boots per side, one VM at a time, floe and bare taking turns; ${DISK_RUNS} disk provisionings per side.`,
  );

  const image = await ensureTestImage();
  log(`Test image ${image.path} (guest kernel ${image.kernelVersion})`);
  const root = await mkdtemp(path.join(os.tmpdir(), 'floe-bench-boot-'));
  let cp: TestControlPlane | null = null;
  let client: FloeClient | null = null;
  let agent: BenchWorker<BootAgentJob> | null = null;
  let unsubscribe: (() => void) | null = null;
  // QEMU runs detached: on Ctrl-C, stop the agent (so nothing starts VMs again), then end our VMs by pid.
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping the VMs of this run and removing ${root}`);
    void (async () => {
      await agent?.close();
      for (const pid of await ourQemus(root)) process.kill(pid, 'SIGKILL');
      await Promise.race([cp?.close(), sleep(3000)]).catch(() => {});
      await rm(root, { recursive: true, force: true });
      process.exit(130);
    })();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    cp = await startTestControlPlane(await openStore({ sqlitePath: path.join(root, 'floe.db') }), {
      FLOE_LOG_LEVEL: 'error',
    });
    client = new FloeClient({ url: cp.url, token: cp.adminToken, ca: cp.ca.certPem });
    const agentDir = path.join(root, 'agent');
    const hostId = await prepareAgent(cp, 'bench-host', agentDir);
    agent = new BenchWorker<BootAgentJob>(new URL('./boot-agent-worker.ts', import.meta.url), {
      dataDir: agentDir,
      server: cp.url,
      accelerator,
    } satisfies BootAgentWorkerData);
    await agent.call({ kind: 'start' });
    await until('the agent to connect', async () => (await client!.hosts.get(hostId)).status.state === 'online', {
      timeoutMs: 60_000,
      intervalMs: 20,
    });
    await client.images.create({ name: IMAGE_NAME });
    await client.images.upload(IMAGE_NAME, image.path);
    const type = await client.machineTypes.get(MACHINE_TYPE);
    const size = { vcpus: type.spec.vcpus, memoryMib: type.spec.memory_mib, diskBytes: type.spec.disk_gib * GIB };

    const finished = new Map<string, { status: string; at: number }>();
    unsubscribe = cp.app.services.bus.subscribe((e: Event) => {
      if (e.kind !== 'operation') return;
      const op = e.data.operation as Operation | undefined;
      if (op && (op.status === 'succeeded' || op.status === 'failed' || op.status === 'cancelled'))
        finished.set(op.id, { status: op.status, at: epochMs() });
    });
    const ctx: FloeContext = { client, agent, vmsDir: path.join(agentDir, 'vms'), finished };

    // ---- warm-up: the agent fetches the image, QEMU's files get into the page cache; the bare argv is checked against floe's
    log('');
    log('Warm-up (not counted): one floe boot (the agent fetches and caches the image), then one bare boot.');
    const warmName = 'warm-floe';
    const seen: { id: string | null; argv: string[] | null } = { id: null, argv: null };
    const warm = await bootFloe(ctx, warmName, (id, pid) => {
      seen.id = id;
      seen.argv = pid === null ? null : (readCmdline(pid)?.slice(1) ?? null);
    });
    const cached = (await readdir(path.join(agentDir, 'images'))).filter((f) => f.endsWith('.qcow2'));
    if (cached.length !== 1)
      throw new Error(`expected one cached image in the agent, found ${cached.join(', ') || 'none'}`);
    const base = path.join(agentDir, 'images', cached[0]!);
    log(
      `  floe: QMP answered ${ms(warm.driver.startDone! - warm.post)} and READY ${s(warm.readyFile - warm.post)} after POST (image fetch included)`,
    );

    // The bare command line must be floe's, paths and names aside: rebuild floe's own from the same spec and compare.
    const { id: warmId, argv: floeArgv } = seen;
    if (floeArgv === null || warmId === null) throw new Error('could not read the command line of the warm-up VM');
    const warmDir = path.join(ctx.vmsDir, warmId);
    const floeSpec = (diskCache: QemuDiskCache): QemuSpec => ({
      id: warmId,
      name: warmName,
      vcpus: size.vcpus,
      memoryMib: size.memoryMib,
      accelerator,
      diskCache,
      paths: {
        pidfile: path.join(warmDir, 'qemu.pid'),
        qmpSocket: path.join(warmDir, 'qmp.sock'),
        serialSocket: path.join(warmDir, 'serial.sock'),
        consoleLog: path.join(warmDir, 'console.log'),
        disk: path.join(warmDir, 'disk.qcow2'),
        seedIso: path.join(warmDir, 'seed.iso'),
      },
    });
    const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    const diskCache = (['none', 'writeback'] as const).find((c) => same(qemuArgv(floeSpec(c)), floeArgv));
    if (diskCache === undefined)
      throw new Error(`the floe VM's QEMU command line is not qemuArgv's:\n  ${floeArgv.join(' ')}`);
    log(
      `  the floe VM ran exactly qemuArgv(spec) (disk cache=${diskCache}); the bare VMs run qemuArgv with the same sizes, accelerator and cache, own paths`,
    );
    const warmBare = await bootBare(await prepareBare(root, base, size, accelerator, diskCache, 'warm-bare'));
    log(
      `  bare: QMP answered ${ms(warmBare.qmp - warmBare.spawn)} and READY ${s(warmBare.ready - warmBare.spawn)} after spawn`,
    );

    // ---- the boots, floe and bare taking turns
    log('');
    const floeRuns: FloeRun[] = [];
    const bareRuns: BareRun[] = [];
    for (let i = 0; i < RUNS; i++) {
      const order = i % 2 === 0 ? (['floe', 'bare'] as const) : (['bare', 'floe'] as const);
      const parts: string[] = [];
      for (const side of order) {
        if (side === 'floe') {
          const r = await bootFloe(ctx, `boot-${String(i).padStart(2, '0')}`);
          floeRuns.push(r);
          parts.push(`floe QMP ${ms(r.driver.startDone! - r.post)} READY ${s(r.readyFile - r.post)}`);
        } else {
          const vm = await prepareBare(root, base, size, accelerator, diskCache, `bare-${String(i).padStart(2, '0')}`);
          const r = await bootBare(vm);
          bareRuns.push(r);
          parts.push(`bare QMP ${ms(r.qmp - r.spawn)} READY ${s(r.ready - r.spawn)}`);
        }
      }
      log(`run ${i + 1}/${RUNS}: ${parts.join('; ')}`);
    }

    // ---- disks
    log('');
    const disks = await benchDisks(root, base, size.diskBytes);

    // ---- report
    const bareQmp = summary(bareRuns.map((r) => r.qmp - r.spawn));
    const floeQmp = summary(floeRuns.map((r) => r.driver.startDone! - r.post));
    const pairQmp = summary(
      floeRuns.map((r, i) => r.driver.startDone! - r.post - (bareRuns[i]!.qmp - bareRuns[i]!.spawn)),
    );
    const qmpDelta = floeQmp.p50 - bareQmp.p50;
    const bareReady = summary(bareRuns.map((r) => r.ready - r.spawn));
    const floeReady = summary(floeRuns.map((r) => r.readyFile - r.post));
    const pairReady = summary(
      floeRuns.map((r, i) => (r.readyFile - r.post) / (bareRuns[i]!.ready - bareRuns[i]!.spawn)),
    );
    const readyRatio = floeReady.p50 / bareReady.p50;
    const bareDiskS = summary(disks.bare);
    const floeDiskS = summary(disks.floe);
    const diskRatio = floeDiskS.p50 / bareDiskS.p50;

    log('Where the time goes (medians over the runs):');
    const phase = (label: string, values: number[]) =>
      log(`  ${label.padEnd(58)} ${spread(summary(values), (v) => ms(v))}`);
    phase(
      'floe: POST sent → POST answered (202)',
      floeRuns.map((r) => r.postAnswered - r.post),
    );
    phase(
      'floe: POST sent → driver.create called (control plane, link)',
      floeRuns.map((r) => r.driver.createCalled! - r.post),
    );
    phase(
      'floe: driver.create (overlay, seed ISO, vm.json)',
      floeRuns.map((r) => r.driver.createDone! - r.driver.createCalled!),
    );
    phase(
      'floe: create done → driver.start called (reconciler)',
      floeRuns.map((r) => r.driver.startCalled! - r.driver.createDone!),
    );
    phase(
      'floe: driver.start (disk check, QEMU up, QMP query-status)',
      floeRuns.map((r) => r.driver.startDone! - r.driver.startCalled!),
    );
    phase(
      'bare: spawn → -daemonize parent exited',
      bareRuns.map((r) => r.daemonized - r.spawn),
    );
    phase(
      'bare: daemonized → QMP query-status answered',
      bareRuns.map((r) => r.qmp - r.daemonized),
    );
    const opDone = floeRuns.filter((r) => r.opSucceeded !== null);
    phase(
      `floe: QMP answered → create operation succeeded (${opDone.length}/${floeRuns.length})`,
      opDone.map((r) => r.opSucceeded! - r.driver.startDone!),
    );
    const viaApi = floeRuns.filter((r) => r.readyApi !== null);
    phase(
      `floe: READY in console.log → READY via GET /logs?follow (${viaApi.length}/${floeRuns.length})`,
      viaApi.map((r) => r.readyApi! - r.readyFile),
    );
    log(
      `  floe disk work for a new VM: first call (base image not known yet) ${ms(disks.floeFirst)}, then ${spread(floeDiskS, (v) => ms(v))}; ` +
        `bare qemu-img create ${spread(bareDiskS, (v) => ms(v))}`,
    );
    log(
      `  per-pair floe − bare QMP: ${spread(pairQmp, (v) => ms(v))}; per-pair READY ratio: ${spread(pairReady, (v) => `${v.toFixed(3)}x`)}`,
    );

    const rows: string[][] = [
      ['bare qemu → QMP answering (baseline)', spread(bareQmp, (v) => ms(v)), 'baseline', ''],
      ['floe API create → QMP answering', spread(floeQmp, (v) => ms(v)), '', ''],
      [
        'QMP: floe − bare (difference of medians)',
        ms(qmpDelta),
        `<= ${QMP_DELTA_TARGET_MS} ms`,
        qmpDelta <= QMP_DELTA_TARGET_MS ? 'yes' : 'NO',
      ],
      ['bare qemu → READY (baseline)', spread(bareReady, s), 'baseline', ''],
      ['floe API create → READY', spread(floeReady, s), '', ''],
      [
        'READY: floe ÷ bare (ratio of medians)',
        `${readyRatio.toFixed(3)}x`,
        `<= ${READY_RATIO_TARGET.toFixed(2)}x`,
        readyRatio <= READY_RATIO_TARGET ? 'yes' : 'NO',
      ],
      ['bare qemu-img create (baseline)', spread(bareDiskS, (v) => ms(v)), 'baseline', ''],
      ['floe disk provisioning', spread(floeDiskS, (v) => ms(v)), '', ''],
      [
        'disk: floe ÷ bare (ratio of medians)',
        `${diskRatio.toFixed(2)}x`,
        `<= ${DISK_RATIO_TARGET.toFixed(2)}x`,
        diskRatio <= DISK_RATIO_TARGET ? 'yes' : 'NO',
      ],
    ];
    const noise = (bareReady.p90 - bareReady.p10) / bareReady.p50;
    if (noise > 0.1) {
      log(
        `  WARNING: bare boots to READY alone varied by ${(100 * noise).toFixed(0)}% (p10 to p90) between runs, so the machine was busy; ` +
          `a READY ratio within a few percent of 1 is inside that noise: rerun on a quiet machine, or with more runs (FLOE_BENCH_RUNS)`,
      );
    }
    log('');
    log(
      `Summary (${cpus.length} CPU(s), ${accelerator.toUpperCase()}, QEMU ${qemuVersion}, Node.js ${process.version}; ${RUNS} boots per side, ` +
        `${DISK_RUNS} disks per side; whole run ${((performance.now() - started) / 1000).toFixed(0)} s; load average ${loadavg()} after it)`,
    );
    log(table(['metric', 'measured: median (p10, p90)', 'target', 'met?'], rows));
  } finally {
    unsubscribe?.();
    await client?.close();
    if (agent !== null) {
      await agent.call({ kind: 'stop' }).catch(() => {});
      await agent.close();
    }
    await cp?.close();
    // Nothing of ours may keep running: a VM left by a failed run is killed by its pid.
    for (const pid of await ourQemus(root)) {
      log(`killing leftover QEMU ${pid}`);
      process.kill(pid, 'SIGKILL');
      await waitGone(pid, 5000);
    }
    await rm(root, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    const left = await ourQemus(root);
    log(
      left.length === 0
        ? `Cleaned up: no QEMU of this run left, ${root} removed.`
        : `WARNING: QEMU ${left.join(', ')} of this run still running`,
    );
  }
}

await main();
