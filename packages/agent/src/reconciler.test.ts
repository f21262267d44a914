import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DesiredInstance, ObservedInstance } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import type { ReconcilerReporter } from './instance-status.js';
import { InstanceReconciler } from './reconciler.js';
import { AgentState, memoryAppliedStore, type AppliedInstance } from './state.js';
import { FakeVmDriver } from './drivers/vm/fake.js';

class Recorder implements ReconcilerReporter {
  statuses: ObservedInstance[] = [];
  events: Array<{ instanceId: string; event: string; message: string; data?: Record<string, unknown> }> = [];
  status(instance: ObservedInstance): void {
    this.statuses.push(instance);
  }
  event(instanceId: string, event: string, message: string, data?: Record<string, unknown>): void {
    this.events.push({ instanceId, event, message, ...(data === undefined ? {} : { data }) });
  }
  of(id: string): ObservedInstance[] {
    return this.statuses.filter((s) => s.id === id);
  }
  latest(id: string): ObservedInstance | undefined {
    return this.of(id).at(-1);
  }
  eventsOf(id: string): string[] {
    return this.events.filter((e) => e.instanceId === id).map((e) => e.event);
  }
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const mutating = (d: FakeVmDriver) => ({
  create: d.calls.create ?? 0,
  start: d.calls.start ?? 0,
  stop: d.calls.stop ?? 0,
  destroy: d.calls.destroy ?? 0,
});

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { driver?: FakeVmDriver; dataDir?: string } = {}) {
  const driver = opts.driver ?? new FakeVmDriver();
  const reporter = new Recorder();
  const reconciler = new InstanceReconciler({
    driver,
    reporter,
    ...(opts.dataDir === undefined ? {} : { store: new AgentState(opts.dataDir).appliedStore() }),
    resyncIntervalMs: 60_000,
    retryBackoff: { initialMs: 20, maxMs: 80 },
    restartBackoff: { initialMs: 20, maxMs: 80 },
  });
  await reconciler.start();
  cleanups.push(() => reconciler.stop());
  return { driver, reporter, reconciler };
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'floe-reconciler-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function bump(
  d: DesiredInstance,
  changes: Partial<DesiredInstance> & { power_state?: 'running' | 'stopped' },
): DesiredInstance {
  const { power_state, ...top } = changes;
  return {
    ...d,
    revision: d.revision + 1,
    ...top,
    spec: { ...d.spec, ...(power_state === undefined ? {} : { power_state }) },
  };
}

describe('InstanceReconciler', () => {
  it('applies a snapshot once, and an identical snapshot changes nothing', async () => {
    const { driver, reporter, reconciler } = await setup();
    const running = desiredInstance({ generation: 3, revision: 5 });
    const stopped = desiredInstance({ spec: { power_state: 'stopped' } });
    const doomed = desiredInstance({ deleting: true, revision: 9, generation: 2 });
    await driver.create(doomed);
    await driver.start(doomed.id);

    reconciler.setDesired([running, stopped, doomed], { full: true });
    await reconciler.whenIdle();

    expect(mutating(driver)).toEqual({ create: 3, start: 2, stop: 0, destroy: 1 });
    expect(await driver.inspect(running.id)).toMatchObject({ state: 'running' });
    expect(await driver.inspect(stopped.id)).toMatchObject({ state: 'stopped' });
    expect(await driver.inspect(doomed.id)).toBeNull();

    expect(reporter.of(running.id).map((s) => s.state)).toEqual(['creating', 'starting', 'running']);
    expect(reporter.latest(running.id)).toMatchObject({
      observed_revision: 5,
      observed_generation: 3,
      observed_restart_generation: 0,
      accelerator: 'fake',
      stopped_at: null,
    });
    expect(reporter.latest(running.id)?.started_at).not.toBeNull();
    expect(reporter.of(stopped.id).map((s) => s.state)).toEqual(['creating', 'stopped']);
    expect(reporter.latest(stopped.id)?.stopped_at).not.toBeNull();
    expect(reporter.of(doomed.id).map((s) => s.state)).toEqual(['deleting', 'deleted']);
    expect(reporter.latest(doomed.id)).toMatchObject({ observed_revision: 9, observed_generation: 2 });

    const before = mutating(driver);
    const reported = reporter.statuses.length;
    reconciler.setDesired([running, stopped, doomed], { full: true });
    await reconciler.whenIdle();
    await reconciler.resync();
    await reconciler.whenIdle();
    expect(mutating(driver)).toEqual(before);
    // Only the deletion is confirmed again (the control plane still lists it); nothing else is re-reported.
    const again = reporter.statuses.slice(reported);
    expect(again.length).toBeGreaterThan(0);
    expect(again.every((s) => s.id === doomed.id && s.state === 'deleted')).toBe(true);
  });

  it('stops a running VM when asked, honouring force_stop', async () => {
    const { driver, reporter, reconciler } = await setup();
    const vm = desiredInstance();
    reconciler.setDesired([vm], { full: true });
    await reconciler.whenIdle();
    const stop = bump(vm, { generation: 2, power_state: 'stopped', force_stop: true });
    let forced: boolean | undefined;
    const realStop = driver.stop.bind(driver);
    driver.stop = (id, opts) => {
      forced = opts?.force;
      return realStop(id, opts);
    };
    reconciler.setDesired([stop], { full: false });
    await reconciler.whenIdle();
    expect(forced).toBe(true);
    expect(mutating(driver).stop).toBe(1);
    expect(
      reporter
        .of(vm.id)
        .slice(-2)
        .map((s) => s.state),
    ).toEqual(['stopping', 'stopped']);
    expect(reporter.latest(vm.id)).toMatchObject({ observed_generation: 2, started_at: null });
  });

  it('gives a stopped VM its new size at once and boots it with that size at the next start', async () => {
    const { driver, reporter, reconciler } = await setup();
    const vm = desiredInstance();
    reconciler.setDesired([vm], { full: true });
    await reconciler.whenIdle();
    const first = { vcpus: vm.spec.vcpus, memory_mib: vm.spec.memory_mib, disk_gib: vm.spec.disk_gib };
    expect(driver.sizeOf(vm.id)).toEqual({ next: first, booted: first });
    const stopped = bump(vm, { generation: 2, power_state: 'stopped' });
    reconciler.setDesired([stopped], { full: false });
    await reconciler.whenIdle();
    const size = { vcpus: 3, memory_mib: 768, disk_gib: vm.spec.disk_gib + 4 };
    const resized: DesiredInstance = {
      ...stopped,
      revision: stopped.revision + 1,
      generation: 3,
      spec: { ...stopped.spec, ...size },
    };
    reconciler.setDesired([resized], { full: false });
    await reconciler.whenIdle();
    // Recorded while stopped; the guest that last ran still had the old size.
    expect(driver.sizeOf(vm.id)).toEqual({ next: size, booted: first });
    expect(reporter.latest(vm.id)).toMatchObject({ state: 'stopped', observed_generation: 3 });
    reconciler.setDesired([bump(resized, { generation: 4, power_state: 'running' })], { full: false });
    await reconciler.whenIdle();
    expect(driver.sizeOf(vm.id)).toEqual({ next: size, booted: size });
    expect(reporter.latest(vm.id)).toMatchObject({ state: 'running', observed_generation: 4 });
  });

  it('restarts once per restart_generation, also across an agent restart', async () => {
    const dataDir = await tempDir();
    const stateDir = join(dataDir, 'fake');
    const first = await setup({ driver: new FakeVmDriver({ stateDir }), dataDir });
    const vm = desiredInstance({ generation: 1, restart_generation: 0 });
    first.reconciler.setDesired([vm], { full: true });
    await first.reconciler.whenIdle();
    const startedAt = (await first.driver.inspect(vm.id))?.started_at;

    const restarted = bump(vm, { generation: 2, restart_generation: 1 });
    first.reconciler.setDesired([restarted], { full: false });
    await first.reconciler.whenIdle();
    expect(mutating(first.driver)).toMatchObject({ start: 2, stop: 1 });
    expect(
      first.reporter
        .of(vm.id)
        .slice(-3)
        .map((s) => s.state),
    ).toEqual(['stopping', 'starting', 'running']);
    expect(first.reporter.latest(vm.id)).toMatchObject({ observed_restart_generation: 1, observed_generation: 2 });
    expect((await first.driver.inspect(vm.id))?.started_at).not.toBe(startedAt);

    first.reconciler.setDesired([restarted], { full: true });
    await first.reconciler.whenIdle();
    expect(mutating(first.driver)).toMatchObject({ start: 2, stop: 1 });

    expect((await new AgentState(dataDir).readApplied())[vm.id]).toMatchObject({
      restart_generation: 1,
      generation: 2,
    });

    // The agent restarts: new driver over the same host state, new reconciler over the same data dir.
    await first.reconciler.stop();
    await first.driver.close();
    const second = await setup({ driver: new FakeVmDriver({ stateDir }), dataDir });
    const hello = await second.reconciler.observed();
    expect(hello).toEqual([
      expect.objectContaining({ id: vm.id, state: 'running', observed_restart_generation: 1, observed_generation: 2 }),
    ]);
    second.reconciler.setDesired([restarted], { full: true });
    await second.reconciler.whenIdle();
    expect(mutating(second.driver)).toEqual({ create: 0, start: 0, stop: 0, destroy: 0 });
    expect((await second.driver.inspect(vm.id))?.state).toBe('running');

    second.reconciler.setDesired([bump(restarted, { generation: 3, restart_generation: 2 })], { full: false });
    await second.reconciler.whenIdle();
    expect(mutating(second.driver)).toMatchObject({ start: 1, stop: 1 });
  });

  it('restarts a crashed VM under on-failure, with an event', async () => {
    const { driver, reporter, reconciler } = await setup();
    const vm = desiredInstance({ spec: { restart_policy: 'on-failure' } });
    reconciler.setDesired([vm], { full: true });
    await reconciler.whenIdle();

    driver.crash(vm.id, 1);
    expect(reporter.latest(vm.id)).toMatchObject({ state: 'stopped', reason: expect.stringContaining('crashed') });
    await waitFor('the restart', () => (driver.calls.start ?? 0) === 2);
    await reconciler.whenIdle();
    expect(reporter.latest(vm.id)?.state).toBe('running');
    expect(reporter.eventsOf(vm.id)).toEqual(['crashed', 'restarted']);
    expect(reporter.events.find((e) => e.event === 'restarted')?.message).toMatch(/on-failure/);

    // A clean guest power-off is not a failure.
    driver.guestShutdown(vm.id);
    await sleep(150);
    expect(driver.calls.start).toBe(2);
    expect((await driver.inspect(vm.id))?.state).toBe('stopped');
  });

  it('restarts under always even after a clean power-off, and backs off between crashes', async () => {
    const { driver, reporter, reconciler } = await setup();
    const vm = desiredInstance({ spec: { restart_policy: 'always' } });
    reconciler.setDesired([vm], { full: true });
    await reconciler.whenIdle();
    driver.guestShutdown(vm.id);
    await waitFor('the first restart', () => (driver.calls.start ?? 0) === 2);
    await reconciler.whenIdle();
    driver.crash(vm.id, 2);
    await waitFor('the second restart', () => (driver.calls.start ?? 0) === 3);
    await reconciler.whenIdle();
    expect(reporter.eventsOf(vm.id)).toEqual(['stopped', 'restarted', 'crashed', 'restarted']);
    expect((await driver.inspect(vm.id))?.state).toBe('running');
  });

  it('leaves a crashed VM stopped under never, until the user starts it again', async () => {
    const { driver, reporter, reconciler } = await setup();
    const vm = desiredInstance({ spec: { restart_policy: 'never' } });
    reconciler.setDesired([vm], { full: true });
    await reconciler.whenIdle();

    driver.crash(vm.id, 1);
    await sleep(150);
    await reconciler.resync();
    await reconciler.whenIdle();
    expect(driver.calls.start).toBe(1);
    expect((await driver.inspect(vm.id))?.state).toBe('stopped');
    expect(reporter.latest(vm.id)?.state).toBe('stopped');
    expect(reporter.eventsOf(vm.id)).toEqual(['crashed']);

    reconciler.setDesired([bump(vm, { generation: vm.generation + 1 })], { full: false });
    await reconciler.whenIdle();
    expect(driver.calls.start).toBe(2);
    expect(reporter.latest(vm.id)?.state).toBe('running');
  });

  it('reports VMs outside the desired state once and never destroys them', async () => {
    const { driver, reporter, reconciler } = await setup();
    const orphan = desiredInstance();
    await driver.create(orphan);
    await driver.start(orphan.id);
    const wanted = desiredInstance();

    reconciler.setDesired([wanted], { full: true });
    await reconciler.whenIdle();
    await waitFor('the orphan event', () => reporter.eventsOf(orphan.id).length > 0);
    reconciler.setDesired([wanted], { full: true });
    await reconciler.resync();
    await reconciler.whenIdle();
    reconciler.setDesired([], { full: true });
    await reconciler.resync();
    await reconciler.whenIdle();

    expect(reporter.eventsOf(orphan.id)).toEqual(['orphan']);
    expect(driver.calls.destroy ?? 0).toBe(0);
    expect(driver.calls.stop ?? 0).toBe(0);
    expect((await driver.inspect(orphan.id))?.state).toBe('running');
    expect((await driver.inspect(wanted.id))?.state).toBe('running');
    // A crash of a VM nobody wants is noted, not acted upon.
    driver.crash(orphan.id);
    await sleep(100);
    expect(driver.calls.start).toBe(2);
  });

  it('retries a failing start with backoff until it runs', async () => {
    const { driver, reporter, reconciler } = await setup();
    const vm = desiredInstance();
    let failures = 0;
    driver.failOn = { start: () => failures++ < 3 };
    const t0 = Date.now();
    reconciler.setDesired([vm], { full: true });
    await waitFor('running', () => reporter.latest(vm.id)?.state === 'running');
    // Delays at least ~10 + 20 + 40 ms (jitter keeps half of 20, 40, 80).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(60);
    expect(driver.calls.start).toBe(4);
    const errors = reporter.of(vm.id).filter((s) => s.state === 'error');
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors[0]?.reason).toMatch(/start failed/);
    expect(reporter.latest(vm.id)).toMatchObject({ reason: null, observed_generation: vm.generation });
  });

  it('destroys an instance once it is deleting, and forgets it', async () => {
    const dataDir = await tempDir();
    const { driver, reporter, reconciler } = await setup({ dataDir });
    const vm = desiredInstance();
    reconciler.setDesired([vm], { full: true });
    await reconciler.whenIdle();
    expect(Object.keys(await new AgentState(dataDir).readApplied())).toEqual([vm.id]);
    reconciler.setDesired([bump(vm, { deleting: true })], { full: false });
    await reconciler.whenIdle();
    expect(driver.calls.destroy).toBe(1);
    expect(reporter.latest(vm.id)?.state).toBe('deleted');
    expect(await driver.inspect(vm.id)).toBeNull();
    expect(await new AgentState(dataDir).readApplied()).toEqual({});
    expect(await reconciler.observed()).toEqual([]);
  });

  it('stopping the reconciler leaves VMs running', async () => {
    const { driver, reconciler } = await setup();
    const vm = desiredInstance();
    reconciler.setDesired([vm], { full: true });
    await reconciler.whenIdle();
    await reconciler.stop();
    expect((await driver.inspect(vm.id))?.state).toBe('running');
    driver.crash(vm.id);
    await sleep(100);
    expect(driver.calls.start).toBe(1);
  });

  it('saves what it applied to many instances at once in few writes, the last one holding all of them', async () => {
    const store = memoryAppliedStore();
    const saved: number[] = [];
    const counting = {
      load: () => store.load(),
      save: async (applied: Record<string, AppliedInstance>) => {
        // A slow disk: writes asked for meanwhile must become one.
        await sleep(5);
        saved.push(Object.keys(applied).length);
        await store.save(applied);
      },
    };
    const reconciler = new InstanceReconciler({
      driver: new FakeVmDriver(),
      reporter: new Recorder(),
      store: counting,
    });
    await reconciler.start();
    cleanups.push(() => reconciler.stop());
    const vms = Array.from({ length: 50 }, () => desiredInstance({ revision: 4, generation: 2 }));
    reconciler.setDesired(vms, { full: true });
    await reconciler.whenIdle();
    expect(saved.length).toBeLessThan(10);
    expect(saved.at(-1)).toBe(50);
    expect(Object.keys(store.data).sort()).toEqual(vms.map((v) => v.id).sort());
    expect(Object.values(store.data).every((a) => a.revision === 4 && a.generation === 2)).toBe(true);
  });
});

describe('NIC taps', () => {
  it('creates taps before create and start, hands them to the driver, and removes them after destroy', async () => {
    const driver = new FakeVmDriver();
    const contexts: unknown[] = [];
    const create = driver.create.bind(driver);
    driver.create = async (vm, ctx) => {
      contexts.push(ctx);
      return create(vm, ctx);
    };
    const calls: string[] = [];
    const reconciler = new InstanceReconciler({
      driver,
      reporter: new Recorder(),
      resyncIntervalMs: 60_000,
      retryBackoff: { initialMs: 20, maxMs: 80 },
      nics: {
        ensure: async (vm) => {
          calls.push(`ensure ${vm.id}`);
          return (vm.nics ?? []).map((n) => ({ id: n.id, tap: `tap-${n.index}`, mac: n.mac }));
        },
        remove: async (vm) => {
          calls.push(`remove ${vm.id}`);
        },
        removeNic: async (nicId) => {
          calls.push(`removeNic ${nicId}`);
        },
      },
    });
    await reconciler.start();
    cleanups.push(() => reconciler.stop());
    const base = desiredInstance({ spec: { power_state: 'running' } });
    const nic = {
      id: 'nic_01A',
      network_id: 'net_01A',
      vni: 5,
      index: 0,
      mac: '52:54:00:00:00:01',
      ipv4: '10.0.0.5',
      ipv4_prefix: 24,
      ipv6: null,
      ipv6_prefix: null,
      gateway4: null,
      gateway6: null,
      mtu: 1450,
      dns_servers: [],
    };
    const vm: DesiredInstance = { ...base, nics: [nic] };
    reconciler.setDesired([vm], { full: true });
    await waitFor('running', async () => (await driver.inspect(vm.id))?.state === 'running');
    expect(contexts).toEqual([
      expect.objectContaining({ nics: [{ id: 'nic_01A', tap: 'tap-0', mac: '52:54:00:00:00:01', index: 0 }] }),
    ]);
    expect(calls).toEqual([`ensure ${vm.id}`, `ensure ${vm.id}`]);
    reconciler.setDesired([{ ...vm, revision: vm.revision + 1, deleting: true }], { full: false });
    await waitFor('removed', () => calls.includes(`remove ${vm.id}`));
    expect(await driver.inspect(vm.id)).toBeNull();
  });
});

describe('NIC hot-plug', () => {
  const nic = (n: number, index = n) => ({
    id: `nic_01A${n}`,
    network_id: 'net_01A',
    vni: 5,
    index,
    mac: `52:54:00:00:00:0${n}`,
    ipv4: `10.0.0.${10 + n}`,
    ipv4_prefix: 24,
    ipv6: null,
    ipv6_prefix: null,
    gateway4: null,
    gateway6: null,
    mtu: 1450,
    dns_servers: [],
  });

  async function setupNics(opts: { dataDir?: string; driver?: FakeVmDriver } = {}) {
    const driver = opts.driver ?? new FakeVmDriver();
    const reporter = new Recorder();
    const calls: string[] = [];
    const reconciler = new InstanceReconciler({
      driver,
      reporter,
      ...(opts.dataDir === undefined ? {} : { store: new AgentState(opts.dataDir).appliedStore() }),
      resyncIntervalMs: 60_000,
      retryBackoff: { initialMs: 20, maxMs: 80 },
      nics: {
        ensure: async (vm) => {
          calls.push(`ensure ${(vm.nics ?? []).map((n) => n.id).join(',')}`);
          return [...(vm.nics ?? [])]
            .sort((a, b) => a.index - b.index)
            .map((n) => ({ id: n.id, tap: `tap-${n.id.slice(-2)}`, mac: n.mac }));
        },
        remove: async (vm) => {
          calls.push(`remove ${vm.id}`);
        },
        removeNic: async (nicId) => {
          calls.push(`removeNic ${nicId}`);
        },
      },
    });
    await reconciler.start();
    cleanups.push(() => reconciler.stop());
    return { driver, reporter, reconciler, calls };
  }

  const generationSeen = (reporter: Recorder, id: string, generation: number) => () =>
    reporter.latest(id)?.observed_generation === generation && reporter.latest(id)?.state === 'running';

  it('hot-adds and hot-removes NICs of a running VM, then reports the generation', async () => {
    const { driver, reporter, reconciler, calls } = await setupNics();
    const vm: DesiredInstance = { ...desiredInstance({ spec: { power_state: 'running' } }), nics: [nic(1)] };
    reconciler.setDesired([vm], { full: true });
    await waitFor('running', generationSeen(reporter, vm.id, vm.generation));
    expect(calls).toEqual(['ensure nic_01A1', 'ensure nic_01A1']);
    calls.length = 0;

    const added: DesiredInstance = {
      ...vm,
      revision: vm.revision + 1,
      generation: vm.generation + 1,
      nics: [nic(1), nic(2, 5)],
    };
    reconciler.setDesired([added], { full: false });
    await waitFor('the added NIC applied', generationSeen(reporter, vm.id, added.generation));
    expect(driver.nicsOf(vm.id)).toEqual([
      { id: 'nic_01A1', tap: 'tap-A1', mac: '52:54:00:00:00:01', index: 1 },
      { id: 'nic_01A2', tap: 'tap-A2', mac: '52:54:00:00:00:02', index: 5 },
    ]);
    expect((await driver.readLog(vm.id)).toString()).toContain('NIC nic_01A2 added on tap-A2');
    expect(calls).toEqual(['ensure nic_01A1,nic_01A2']);
    expect(mutating(driver)).toMatchObject({ start: 1, stop: 0 });

    // Nothing changed: no tap work, no driver call.
    const setNicsCalls = driver.calls.setNics;
    await reconciler.resync();
    await reconciler.whenIdle();
    reconciler.setDesired([{ ...added, revision: added.revision + 1 }], { full: false });
    await reconciler.whenIdle();
    expect(calls).toEqual(['ensure nic_01A1,nic_01A2']);
    expect(driver.calls.setNics).toBe(setNicsCalls);

    const removed: DesiredInstance = {
      ...added,
      revision: added.revision + 2,
      generation: added.generation + 1,
      nics: [nic(2, 5)],
    };
    reconciler.setDesired([removed], { full: false });
    await waitFor('the removed NIC applied', generationSeen(reporter, vm.id, removed.generation));
    expect(driver.nicsOf(vm.id).map((n) => n.id)).toEqual(['nic_01A2']);
    expect(calls.slice(1)).toEqual(['ensure nic_01A2', 'removeNic nic_01A1']);
    expect((await driver.inspect(vm.id))?.state).toBe('running');

    const none: DesiredInstance = {
      ...removed,
      revision: removed.revision + 1,
      generation: removed.generation + 1,
      nics: [],
    };
    reconciler.setDesired([none], { full: false });
    await waitFor('no NICs', generationSeen(reporter, vm.id, none.generation));
    expect(driver.nicsOf(vm.id)).toEqual([]);
    // No taps to make for no NICs; the last one's tap goes.
    expect(calls.slice(3)).toEqual(['removeNic nic_01A2']);
  });

  it('keeps the old generation and the tap while the driver cannot remove a NIC, and retries', async () => {
    const driver = new FakeVmDriver();
    const { reporter, reconciler, calls } = await setupNics({ driver });
    const vm: DesiredInstance = { ...desiredInstance({ spec: { power_state: 'running' } }), nics: [nic(1), nic(2)] };
    reconciler.setDesired([vm], { full: true });
    await waitFor('running', generationSeen(reporter, vm.id, vm.generation));
    calls.length = 0;

    driver.failOn = { setNics: () => true };
    const removed: DesiredInstance = {
      ...vm,
      revision: vm.revision + 1,
      generation: vm.generation + 1,
      nics: [nic(2)],
    };
    reconciler.setDesired([removed], { full: false });
    await waitFor('an error', () => reporter.latest(vm.id)?.state === 'error');
    expect(reporter.latest(vm.id)).toMatchObject({
      observed_generation: vm.generation,
      reason: expect.stringMatching(/setNics failed/),
    });
    await waitFor('a retry', () => (driver.calls.setNics ?? 0) >= 2);
    expect(calls.filter((c) => c.startsWith('removeNic'))).toEqual([]);

    driver.failOn = undefined;
    await waitFor('the removal applied', generationSeen(reporter, vm.id, removed.generation), 5000);
    expect(calls.filter((c) => c.startsWith('removeNic'))).toEqual(['removeNic nic_01A1']);
    expect(driver.nicsOf(vm.id).map((n) => n.id)).toEqual(['nic_01A2']);
  });

  it('records NIC changes on a stopped VM for its next start, and remembers them across a restart', async () => {
    const dataDir = await tempDir();
    const driver = new FakeVmDriver();
    const first = await setupNics({ dataDir, driver });
    const vm: DesiredInstance = { ...desiredInstance({ spec: { power_state: 'stopped' } }), nics: [nic(1)] };
    first.reconciler.setDesired([vm], { full: true });
    await waitFor('created', () => first.reporter.latest(vm.id)?.state === 'stopped');
    const changed: DesiredInstance = {
      ...vm,
      revision: vm.revision + 1,
      generation: vm.generation + 1,
      nics: [nic(3, 2)],
    };
    first.reconciler.setDesired([changed], { full: false });
    await waitFor('recorded', () => first.reporter.latest(vm.id)?.observed_generation === changed.generation);
    expect(driver.nicsOf(vm.id)).toEqual([{ id: 'nic_01A3', tap: 'tap-A3', mac: '52:54:00:00:00:03', index: 2 }]);
    expect(first.calls).toEqual(['ensure nic_01A1', 'ensure nic_01A3', 'removeNic nic_01A1']);
    expect(driver.calls.start ?? 0).toBe(0);
    await first.reconciler.stop();

    // A restarted agent with the same state: nothing to redo for the NICs.
    const second = await setupNics({ dataDir, driver });
    second.reconciler.setDesired([changed], { full: true });
    await second.reconciler.whenIdle();
    expect(second.calls).toEqual([]);
    const started: DesiredInstance = {
      ...changed,
      revision: changed.revision + 1,
      generation: changed.generation + 1,
      spec: { ...changed.spec, power_state: 'running' },
    };
    second.reconciler.setDesired([started], { full: false });
    await waitFor('running', generationSeen(second.reporter, vm.id, started.generation));
    // Taps are made again before the start (they do not survive a host reboot); the NICs are unchanged.
    expect(second.calls).toEqual(['ensure nic_01A3']);
    expect(driver.nicsOf(vm.id).map((n) => n.id)).toEqual(['nic_01A3']);
  });
});

describe('first boot', () => {
  it('reports what the driver and the metadata service saw with the status, once, and keeps it while the VM runs', async () => {
    const dir = await tempDir();
    const { reporter, reconciler } = await setup({
      driver: new FakeVmDriver({ stateDir: dir, simulateFirstBoot: true }),
      dataDir: dir,
    });
    const vm = desiredInstance();
    reconciler.setDesired([vm], { full: true });
    // The first boot happens during start: it comes with the 'starting' status, then stays with 'running' (which is
    // reported once what was applied is saved, so it may come later on a slow disk).
    await waitFor(
      'first boot reported while running',
      () => reporter.latest(vm.id)?.first_boot?.finished_at != null && reporter.latest(vm.id)?.state === 'running',
    );
    const seen = reporter.latest(vm.id)!;
    expect(seen.state).toBe('running');
    expect(seen.first_boot).toMatchObject({ source: 'config-drive', result: 'ok' });
    expect(seen.first_boot!.fetched_at).toBe(seen.first_boot!.finished_at);
    expect(reporter.eventsOf(vm.id)).toContain('first-boot');

    // A later report (the metadata service hears cloud-init's failure) replaces the end; the first fetch stays.
    reconciler.noteFirstBoot(vm.id, {
      source: 'metadata',
      fetched_at: '2099-01-01T00:00:00.000Z',
      finished_at: '2099-01-01T00:00:01.000Z',
      result: 'failed',
      detail: 'runcmd',
    });
    expect(reporter.latest(vm.id)!.first_boot).toEqual({
      ...seen.first_boot,
      finished_at: '2099-01-01T00:00:01.000Z',
      result: 'failed',
      detail: 'runcmd',
    });
    const count = reporter.of(vm.id).length;
    reconciler.noteFirstBoot(vm.id, { finished_at: '2099-01-01T00:00:01.000Z', result: 'failed', detail: 'runcmd' });
    expect(reporter.of(vm.id).length).toBe(count);
  });

  it('says nothing of a first boot for a VM without a seed disk, and nothing again after an agent restart', async () => {
    const dir = await tempDir();
    const first = await setup({ driver: new FakeVmDriver({ stateDir: dir, simulateFirstBoot: true }), dataDir: dir });
    const noSeed = desiredInstance({ spec: { config_drive: false } });
    const seeded = desiredInstance();
    first.reconciler.setDesired([noSeed, seeded], { full: true });
    await waitFor(
      'both running',
      () =>
        first.reporter.latest(noSeed.id)?.state === 'running' &&
        first.reporter.latest(seeded.id)?.first_boot?.finished_at != null,
    );
    expect(first.reporter.latest(noSeed.id)!.first_boot).toBeUndefined();
    await first.reconciler.stop();

    const again = await setup({ driver: new FakeVmDriver({ stateDir: dir, simulateFirstBoot: true }), dataDir: dir });
    again.reconciler.setDesired([noSeed, seeded], { full: true });
    await again.reconciler.whenIdle();
    await waitFor('status after restart', () => again.reporter.latest(seeded.id)?.state === 'running');
    expect(again.reporter.latest(seeded.id)!.first_boot).toBeUndefined();
    expect(again.reporter.eventsOf(seeded.id)).not.toContain('first-boot');
  });
});
