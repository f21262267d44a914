import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VmDriverEvent } from './types.js';
import { desiredInstance, vmDriverContract } from '@floe/testkit';
import { FakeVmDriver } from './fake.js';

vmDriverContract(
  'fake (in memory)',
  async () => {
    const driver = new FakeVmDriver();
    return { driver, cleanup: async () => driver.close(), taps: ['fltpfake0', 'fltpfake1'] };
  },
  (id) => desiredInstance({ id }),
);

vmDriverContract(
  'fake (persisted, with delays)',
  async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'floe-fake-driver-'));
    const opened: FakeVmDriver[] = [];
    const open = async () => {
      const d = new FakeVmDriver({ stateDir, startDelayMs: 5, stopDelayMs: 5 });
      opened.push(d);
      return d;
    };
    return {
      driver: await open(),
      reopen: open,
      taps: ['fltpfake0', 'fltpfake1'],
      cleanup: async () => {
        for (const d of opened) await d.close();
        await rm(stateDir, { recursive: true, force: true });
      },
    };
  },
  (id) => desiredInstance({ id }),
);

describe('FakeVmDriver', () => {
  it('crash stops the VM and emits a crashed event with the exit code', async () => {
    const driver = new FakeVmDriver();
    const vm = desiredInstance();
    const events: VmDriverEvent[] = [];
    const off = driver.onEvent((e) => events.push(e));
    await driver.create(vm);
    await driver.start(vm.id);
    driver.crash(vm.id, 137);
    expect((await driver.inspect(vm.id))?.state).toBe('stopped');
    expect(events).toEqual([{ id: vm.id, type: 'crashed', message: expect.stringContaining('137'), exit_code: 137 }]);
    off();
    driver.crash(vm.id);
    expect(events).toHaveLength(1);
  });

  it('guestShutdown emits a stopped event with exit code 0', async () => {
    const driver = new FakeVmDriver();
    const vm = desiredInstance();
    const events: VmDriverEvent[] = [];
    driver.onEvent((e) => events.push(e));
    await driver.create(vm);
    await driver.start(vm.id);
    driver.guestShutdown(vm.id);
    expect(events).toMatchObject([{ id: vm.id, type: 'stopped', exit_code: 0 }]);
  });

  it('failOn makes the chosen operation fail for the chosen ids, and counts the attempt', async () => {
    const bad = desiredInstance();
    const good = desiredInstance();
    const driver = new FakeVmDriver({ failOn: { start: (id) => id === bad.id } });
    await driver.create(bad);
    await driver.create(good);
    await expect(driver.start(bad.id)).rejects.toThrow(/start failed/);
    expect((await driver.inspect(bad.id))?.state).toBe('stopped');
    expect((await driver.start(good.id)).state).toBe('running');
    expect(driver.calls.start).toBe(2);
    driver.failOn = undefined;
    expect((await driver.start(bad.id)).state).toBe('running');
  });

  it('starting an unknown VM fails with instance_not_found', async () => {
    const driver = new FakeVmDriver();
    await expect(driver.start('inst_unknown')).rejects.toMatchObject({ code: 'instance_not_found' });
  });

  it('a persisted VM that crashed stays stopped for the next driver', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'floe-fake-driver-'));
    try {
      const first = new FakeVmDriver({ stateDir });
      const vm = desiredInstance();
      await first.create(vm);
      await first.start(vm.id);
      first.crash(vm.id);
      await first.close();
      const second = new FakeVmDriver({ stateDir });
      expect((await second.inspect(vm.id))?.state).toBe('stopped');
      await expect(first.list()).rejects.toThrow(/closed/);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('keeps NICs across drivers and tells the console about hot-plugged ones', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'floe-fake-driver-'));
    try {
      const first = new FakeVmDriver({ stateDir });
      const vm = desiredInstance();
      const a = { id: 'nic_A', tap: 'fltpa', mac: '52:54:00:00:00:0a' };
      const b = { id: 'nic_B', tap: 'fltpb', mac: '52:54:00:00:00:0b', index: 4 };
      await first.create(vm, { imagePath: null, nics: [a] });
      expect(first.nicsOf(vm.id)).toEqual([{ ...a, index: 0 }]);
      await first.start(vm.id);
      expect(await first.setNics(vm.id, [{ ...a, index: 0 }, b])).toEqual({ removed: [], added: ['nic_B'] });
      expect(await first.setNics(vm.id, [b])).toEqual({ removed: ['nic_A'], added: [] });
      const log = (await first.readLog(vm.id)).toString('utf8');
      expect(log).toContain(`fake VM ${vm.name}: NIC nic_B added on fltpb`);
      expect(log).toContain(`fake VM ${vm.name}: NIC nic_A removed`);
      await first.close();
      const second = new FakeVmDriver({ stateDir, failOn: { setNics: () => true } });
      expect(second.nicsOf(vm.id)).toEqual([b]);
      await expect(second.setNics(vm.id, [])).rejects.toThrow(/setNics failed/);
      expect(second.calls.setNics).toBe(1);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
