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
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Event, Operation } from '@floe/api';
import { probeKvm, run } from '@floe/agent';
import { FloeClient } from '@floe/client';
import { until } from '@floe/testkit';
import { ensureTestImage, READY_MARKER } from '@floe/testkit/guest-image';
import { QEMU_IMG } from '../packages/agent/src/drivers/vm/qemu/disk.js';
import {
  QEMU_BINARY,
  qemuArgv,
  type QemuAccelerator,
  type QemuDiskCache,
  type QemuSpec,
} from '../packages/agent/src/drivers/vm/qemu/argv.js';
import { openStore } from '../packages/server/src/db/index.js';
import { prepareAgentDir, startTestControlPlane, type TestControlPlane } from '../packages/server/src/testing.js';
import type { BootAgentJob, BootAgentWorkerData, DriverTimings } from './boot-agent-worker.js';
import {
  BOOT_TIMEOUT_MS,
  bootBare,
  ourQemus,
  prepareBare,
  readCmdline,
  sleep,
  waitForText,
  waitGone,
  type BareRun,
} from './boot-bare.js';
import { benchDisks, DISK_RUNS } from './boot-disks.js';
import { loadavg, ms, printReport, s, type FloeRun } from './boot-report.js';
import { BenchWorker, epochMs } from './worker.js';

/** Boots per side (floe and bare); FLOE_BENCH_RUNS overrides. */
const RUNS = Math.max(1, Number.parseInt(process.env.FLOE_BENCH_RUNS ?? '10', 10) || 10);
/** The size the VMs get (1 vCPU, 256 MiB, 1 GiB disk): the bare baseline uses the same. */
const MACHINE_TYPE = 'nano';
const IMAGE_NAME = 'floe-test';

const GIB = 1024 ** 3;
const log = (line: string) => process.stdout.write(`${line}\n`);

/** Register a host and write an agent data directory for it in `dataDir`. */
async function prepareAgent(cp: TestControlPlane, name: string, dataDir: string): Promise<string> {
  return (await prepareAgentDir(cp, name, dataDir)).hostId;
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
        vncSocket: path.join(warmDir, 'vnc.sock'),
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

    printReport({
      floeRuns,
      bareRuns,
      disks,
      cpuCount: cpus.length,
      accelerator,
      qemuVersion,
      runs: RUNS,
      diskRuns: DISK_RUNS,
      started,
    });
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
