/**
 * The agent reconcile benchmark (`npm run bench:agent`). One agent's instance
 * reconciler over the in-memory fake VM driver, with its applied state kept
 * in a data directory as the agent keeps it, and 1,000 desired VMs handed to
 * the reconciler registry through the agent's message adapter (a `snapshot`):
 *
 * 1. **Cold create**: no VM exists; the snapshot until the reconciler is idle
 *    with all 1,000 running and reported running. Baseline: the same driver
 *    calls made directly (create, start, inspect for each, all at once).
 * 2. **Restart**: the VMs run and what was applied is on disk; a new
 *    reconciler loads it, gets the snapshot, and is idle once it checked all
 *    1,000 and changed nothing (no create, start or stop; checked). Baseline:
 *    `list` plus `inspect` of each VM, directly. Target: <= 1 s.
 *
 * Each is measured FLOE_BENCH_RUNS times (default 5), alternating with its
 * baseline; the table shows medians and the ratio to the baseline.
 * Benchmarks report; they never fail on times.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DesiredInstance, ObservedInstance } from '@floe/api';
import { AgentState, InstanceReconciler, ReconcilerRegistry } from '@floe/agent';
import { desiredInstance } from '@floe/testkit';
import { desiredOf } from '../packages/agent/src/desired-messages.js';
import { fmt, percentile, sorted, table } from './report.js';
import { FakeVmDriver } from '@floe/agent';

const VMS = Number(process.env.FLOE_BENCH_VMS ?? 1000);
const RUNS = Number(process.env.FLOE_BENCH_RUNS ?? 5);
const RESTART_TARGET_MS = 1000;

const log = (line: string) => process.stdout.write(`${line}\n`);

function fleet(): DesiredInstance[] {
  return Array.from({ length: VMS }, (_, i) =>
    desiredInstance({ id: `inst_${String(i).padStart(26, '0')}`, revision: 3, generation: 2 }),
  );
}

/** A reconciler as the agent builds it (registry, applied state on disk), counting what it reports. */
async function agentReconciler(driver: FakeVmDriver, dataDir: string) {
  const running = new Set<string>();
  let statuses = 0;
  const reconciler = new InstanceReconciler({
    driver,
    store: new AgentState(dataDir).appliedStore(),
    resyncIntervalMs: 3_600_000,
    reporter: {
      status: (obs: ObservedInstance) => {
        statuses++;
        if (obs.state === 'running') running.add(obs.id);
        else running.delete(obs.id);
      },
      event: () => {},
    },
  });
  await reconciler.start();
  const registry = new ReconcilerRegistry();
  registry.register(reconciler);
  return { reconciler, registry, running, statuses: () => statuses };
}

function snapshot(registry: ReconcilerRegistry, instances: DesiredInstance[]): void {
  const desired = desiredOf({ type: 'snapshot', desired: { instance: instances } });
  if (desired === null) throw new Error('a snapshot carries desired state');
  registry.apply(desired.state, desired.update);
}

const mutations = (d: FakeVmDriver) => (d.calls.create ?? 0) + (d.calls.start ?? 0) + (d.calls.stop ?? 0);

interface Round {
  coldMs: number;
  coldBaseMs: number;
  restartMs: number;
  restartBaseMs: number;
  restartStatuses: number;
}

async function round(instances: DesiredInstance[]): Promise<Round> {
  const dataDir = await mkdtemp(join(tmpdir(), 'floe-bench-agent-'));
  try {
    // Baseline of the cold create: the driver alone.
    const bare = new FakeVmDriver();
    let t0 = performance.now();
    await Promise.all(
      instances.map(async (vm) => {
        await bare.inspect(vm.id);
        await bare.create(vm, { imagePath: null });
        await bare.inspect(vm.id);
        await bare.start(vm.id);
      }),
    );
    const coldBaseMs = performance.now() - t0;

    const driver = new FakeVmDriver();
    const first = await agentReconciler(driver, dataDir);
    t0 = performance.now();
    snapshot(first.registry, instances);
    await first.registry.whenIdle();
    const coldMs = performance.now() - t0;
    if (first.running.size !== instances.length) throw new Error(`cold: ${first.running.size} VMs reported running`);
    await first.registry.stop();

    // Baseline of the restart: what any check of 1,000 running VMs asks of the driver.
    t0 = performance.now();
    await driver.list();
    await Promise.all(instances.map((vm) => driver.inspect(vm.id)));
    const restartBaseMs = performance.now() - t0;

    const before = mutations(driver);
    t0 = performance.now();
    const second = await agentReconciler(driver, dataDir);
    snapshot(second.registry, instances);
    await second.registry.whenIdle();
    const restartMs = performance.now() - t0;
    if (mutations(driver) !== before) throw new Error('the restart changed VMs that were running as wanted');
    if (second.running.size !== instances.length) throw new Error(`restart: ${second.running.size} VMs reported`);
    await second.registry.stop();
    return { coldMs, coldBaseMs, restartMs, restartBaseMs, restartStatuses: second.statuses() };
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

const median = (values: number[]) => percentile(sorted(values), 0.5);

async function main(): Promise<void> {
  const instances = fleet();
  log(`agent reconcile: ${VMS} VMs, fake driver, ${RUNS} runs (medians)`);
  await round(instances.slice(0, 50)); // warm-up
  const rounds: Round[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await round(instances);
    rounds.push(r);
    log(
      `  run ${i + 1}: cold ${fmt(r.coldMs)} ms (driver ${fmt(r.coldBaseMs)} ms), ` +
        `restart ${fmt(r.restartMs)} ms (driver ${fmt(r.restartBaseMs)} ms)`,
    );
  }
  const m = (k: keyof Round) => median(rounds.map((r) => r[k]));
  const restart = m('restartMs');
  log('');
  log(
    table(
      ['metric', 'floe (ms)', 'driver alone (ms)', 'ratio', 'target', 'met?'],
      [
        [
          `cold create of ${VMS} VMs`,
          fmt(m('coldMs')),
          fmt(m('coldBaseMs')),
          `${fmt(m('coldMs') / m('coldBaseMs'))}x`,
          '—',
          '—',
        ],
        [
          `reconcile of ${VMS} running VMs after a restart`,
          fmt(restart),
          fmt(m('restartBaseMs')),
          `${fmt(restart / m('restartBaseMs'))}x`,
          `<= ${RESTART_TARGET_MS} ms`,
          restart <= RESTART_TARGET_MS ? 'yes' : 'no',
        ],
      ],
    ),
  );
  log(`statuses reported by the restarted reconciler: ${fmt(m('restartStatuses'), 0)} (one per VM)`);
}

await main();
