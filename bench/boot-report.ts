/**
 * The boot benchmark's report: where the time goes, the per-pair spreads and
 * the summary table against the targets, from the runs main() collected.
 */
import os from 'node:os';
import type { BareRun } from './boot-bare.js';
import type { DriverTimings } from './boot-agent-worker.js';
import { fmt, percentile, sorted, table } from './report.js';

const log = (line: string) => process.stdout.write(`${line}\n`);

const QMP_DELTA_TARGET_MS = 50;
const READY_RATIO_TARGET = 1.03;
const DISK_RATIO_TARGET = 2;

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

export const ms = (v: number, digits = 1) => `${fmt(v, digits)} ms`;
export const s = (v: number) => `${(v / 1000).toFixed(2)} s`;
const spread = (x: Summary, f: (v: number) => string) => `${f(x.p50)} (p10 ${f(x.p10)}, p90 ${f(x.p90)})`;

export const loadavg = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/** One floe boot, in epoch ms (`post` is when the client sent POST /v1/instances). */
export interface FloeRun {
  post: number;
  postAnswered: number;
  driver: DriverTimings;
  /** When the control plane marked the create operation succeeded (the agent reported running). */
  opSucceeded: number | null;
  readyFile: number;
  /** When READY arrived through GET /v1/instances/{id}/logs?follow=true; null if it did not. */
  readyApi: number | null;
}

/** What the report is made of, and the run's settings its summary line names. */
export interface BootResults {
  floeRuns: FloeRun[];
  bareRuns: BareRun[];
  disks: { floe: number[]; bare: number[]; floeFirst: number };
  cpuCount: number;
  accelerator: string;
  qemuVersion: string;
  runs: number;
  diskRuns: number;
  /** performance.now() when the run began. */
  started: number;
}

/** Print the phases, the spreads, a noise warning if the baseline varied, and the summary table. */
export function printReport(res: BootResults): void {
  const { floeRuns, bareRuns, disks, cpuCount, accelerator, qemuVersion, runs, diskRuns, started } = res;
  const bareQmp = summary(bareRuns.map((r) => r.qmp - r.spawn));
  const floeQmp = summary(floeRuns.map((r) => r.driver.startDone! - r.post));
  const pairQmp = summary(
    floeRuns.map((r, i) => r.driver.startDone! - r.post - (bareRuns[i]!.qmp - bareRuns[i]!.spawn)),
  );
  const qmpDelta = floeQmp.p50 - bareQmp.p50;
  const bareReady = summary(bareRuns.map((r) => r.ready - r.spawn));
  const floeReady = summary(floeRuns.map((r) => r.readyFile - r.post));
  const pairReady = summary(floeRuns.map((r, i) => (r.readyFile - r.post) / (bareRuns[i]!.ready - bareRuns[i]!.spawn)));
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
    `Summary (${cpuCount} CPU(s), ${accelerator.toUpperCase()}, QEMU ${qemuVersion}, Node.js ${process.version}; ${runs} boots per side, ` +
      `${diskRuns} disks per side; whole run ${((performance.now() - started) / 1000).toFixed(0)} s; load average ${loadavg()} after it)`,
  );
  log(table(['metric', 'measured: median (p10, p90)', 'target', 'met?'], rows));
}
