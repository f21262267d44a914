import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { VmStatsSample } from '@floe/api';
import { desiredInstance, testId } from '@floe/testkit';
import { FakeVmDriver } from './drivers/vm/fake.js';
import { SampleRing, samplesSince, StatsSampler } from './stats-history.js';

const T0 = Date.parse('2026-03-01T12:00:00.000Z');

function sample(seconds: number): VmStatsSample {
  return {
    at: new Date(T0 + seconds * 1000).toISOString(),
    cpu_time_ns: seconds,
    memory_bytes: 1,
    memory_assigned_bytes: 2,
    disk_read_bytes: 0,
    disk_write_bytes: 0,
    net_rx_bytes: 0,
    net_tx_bytes: 0,
    started_at: null,
  };
}

describe('SampleRing', () => {
  it('keeps the newest `capacity` samples, oldest first', () => {
    const ring = new SampleRing(3);
    expect(ring.toArray()).toEqual([]);
    for (let i = 0; i < 2; i++) ring.push(sample(i));
    expect(ring.toArray().map((s) => s.cpu_time_ns)).toEqual([0, 1]);
    for (let i = 2; i < 8; i++) ring.push(sample(i));
    expect(ring.size).toBe(3);
    expect(ring.toArray().map((s) => s.cpu_time_ns)).toEqual([5, 6, 7]);
    expect(() => new SampleRing(0)).toThrow(/capacity/);
  });
});

describe('samplesSince', () => {
  const samples = [0, 10, 20, 30, 40].map(sample);
  const now = T0 + 40_000;
  const hour = 3600_000;
  const cpu = (list: VmStatsSample[]) => list.map((s) => s.cpu_time_ns);

  it('gives the samples after `since` and the one before them, the base of the first rate', () => {
    expect(cpu(samplesSince(samples, undefined, now, hour))).toEqual([0, 10, 20, 30, 40]);
    expect(cpu(samplesSince(samples, new Date(T0 + 20_000).toISOString(), now, hour))).toEqual([20, 30, 40]);
    expect(cpu(samplesSince(samples, new Date(T0 + 25_000).toISOString(), now, hour))).toEqual([20, 30, 40]);
    expect(samplesSince(samples, new Date(T0 + 40_000).toISOString(), now, hour)).toEqual([]);
    expect(cpu(samplesSince(samples, new Date(T0 - 99_000).toISOString(), now, hour))).toEqual([0, 10, 20, 30, 40]);
  });

  it('leaves out what is older than the retention, whatever `since` says', () => {
    expect(cpu(samplesSince(samples, undefined, now, 15_000))).toEqual([20, 30, 40]);
    expect(cpu(samplesSince(samples, 'not a time', now, 15_000))).toEqual([20, 30, 40]);
  });
});

describe('StatsSampler', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  async function twoVms(driver: FakeVmDriver): Promise<{ running: string; stopped: string }> {
    const running = desiredInstance({ id: testId('inst') });
    const stopped = desiredInstance({ id: testId('inst') });
    await driver.create(running);
    await driver.create(stopped);
    await driver.start(running.id);
    return { running: running.id, stopped: stopped.id };
  }

  it('samples running VMs only, bounded to the retention, and forgets VMs that are gone', async () => {
    const driver = new FakeVmDriver();
    const { running, stopped } = await twoVms(driver);
    const sampler = new StatsSampler({ driver, intervalMs: 1000, retentionMs: 3000 });
    expect(sampler.capacity).toBe(4);
    for (let i = 0; i < 6; i++) {
      await sampler.sample();
      await new Promise((r) => setTimeout(r, 2));
    }
    const history = sampler.history(running);
    expect(history).toHaveLength(4);
    expect(history.every((s) => s.started_at === history[0]!.started_at && s.started_at !== null)).toBe(true);
    const cpu = history.map((s) => s.cpu_time_ns!);
    expect([...cpu].sort((a, b) => a - b)).toEqual(cpu);
    expect(sampler.history(stopped)).toEqual([]);
    expect(sampler.history(testId('inst'))).toEqual([]);
    await driver.destroy(running);
    await sampler.sample();
    expect(sampler.history(running)).toEqual([]);
  });

  it('samples on its own every interval once started, and stops', async () => {
    const driver = new FakeVmDriver();
    const { running } = await twoVms(driver);
    const sampler = new StatsSampler({ driver, intervalMs: 20, retentionMs: 60_000 });
    await sampler.start();
    await expect.poll(() => sampler.history(running).length, { timeout: 5000 }).toBeGreaterThanOrEqual(3);
    await sampler.stop();
    const n = sampler.history(running).length;
    await new Promise((r) => setTimeout(r, 100));
    expect(sampler.history(running)).toHaveLength(n);
  });

  it('saves the history on stop and finds it again on start, dropping what has expired', async () => {
    const dir = await mkdtemp(join(os.tmpdir(), 'floe-stats-'));
    dirs.push(dir);
    const file = join(dir, 'stats-history.json');
    const driver = new FakeVmDriver();
    const { running } = await twoVms(driver);
    const first = new StatsSampler({ driver, intervalMs: 60_000, file });
    await first.start(); // one sample at once
    await first.sample();
    await first.stop();
    const saved = first.history(running);
    expect(saved.length).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ type: 'stats-history' });

    const second = new StatsSampler({ driver, intervalMs: 60_000, file });
    await second.start();
    await second.stop();
    expect(second.history(running).slice(0, saved.length)).toEqual(saved);

    // An hour and more later, nothing of it is left.
    const later = new StatsSampler({ driver, intervalMs: 60_000, file, now: () => Date.now() + 2 * 3600_000 });
    await later.start();
    await later.stop();
    expect(later.history(running).filter((s) => saved.some((o) => o.at === s.at))).toEqual([]);
  });

  it('a stop that comes while the history is loading keeps the saved history whole', async () => {
    const dir = await mkdtemp(join(os.tmpdir(), 'floe-stats-'));
    dirs.push(dir);
    const file = join(dir, 'stats-history.json');
    const driver = new FakeVmDriver();
    const { running } = await twoVms(driver);
    const first = new StatsSampler({ driver, intervalMs: 60_000, file });
    await first.start();
    await first.stop();
    const saved = first.history(running);
    expect(saved.length).toBeGreaterThan(0);
    const second = new StatsSampler({ driver, intervalMs: 60_000, file });
    const starting = second.start();
    await second.stop();
    await starting;
    const after = JSON.parse(await readFile(file, 'utf8')) as { instances: Record<string, unknown[]> };
    expect(after.instances[running]).toEqual(saved);
  });

  it('ignores a malformed history file', async () => {
    const dir = await mkdtemp(join(os.tmpdir(), 'floe-stats-'));
    dirs.push(dir);
    const file = join(dir, 'stats-history.json');
    const driver = new FakeVmDriver();
    const { running } = await twoVms(driver);
    await writeFile(
      file,
      JSON.stringify({ type: 'stats-history', saved_at: 'x', instances: { [running]: [{ at: 1 }] } }),
    );
    const sampler = new StatsSampler({ driver, intervalMs: 60_000, file });
    await sampler.start();
    await sampler.stop();
    expect(sampler.history(running)).toHaveLength(1); // only the sample it took itself
  });
});
