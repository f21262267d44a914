import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FloeError, type DesiredInstance } from '@floe/api';
import type { VmDriver, VmDriverEvent } from '../types.js';
import { desiredInstance, testId, vmDriverContract } from '@floe/testkit';
import { ensureTestImage, READY_MARKER, TestImageError } from '@floe/testkit/guest-image';
import { run, which } from '../../../host/exec.js';
import { imageInfo } from './disk.js';
import { QemuDriver, type QemuDriverOptions } from './driver.js';
import { KVM_FAILURE_MESSAGE } from './monitor.js';
import { VM_FILES } from './runtime.js';
import { QmpClient } from './qmp.js';

// Real QEMU under TCG, with a blank qcow2 as the image: SeaBIOS finds nothing
// to boot, says so on the serial console and idles, and QEMU reports `running`.
const TOOLS = ['qemu-system-x86_64', 'qemu-img', 'genisoimage'];
const missing = (await Promise.all(TOOLS.map(async (t) => ((await which(t)) === null ? t : null)))).filter(
  (t) => t !== null,
);
if (missing.length > 0) {
  if (process.env.CI) throw new Error(`the QEMU driver tests need ${missing.join(', ')} under CI`);
  console.warn(`skipping the QEMU driver tests: ${missing.join(', ')} not installed`);
}
const haveQemu = missing.length === 0;

// A guest without an OS ignores the ACPI power button: a graceful stop always
// waits its whole timeout. The contract asks for 30 s; cap it so the run stays short.
const CONTRACT_POWERDOWN_WAIT_MS = 1000;

const stateDirs: string[] = [];
/** Taps the tests made (unique `fltp` names, attached to nothing, QEMU sends nowhere); deleted in afterAll. */
const taps: string[] = [];

async function newTap(): Promise<string> {
  const name = `fltp${randomBytes(5).toString('hex')}`;
  await run('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap']);
  taps.push(name);
  return name;
}
let workDir: string;
let base: string;

async function newStateDir(): Promise<string> {
  const dir = await mkdtemp(join(os.tmpdir(), 'floe-qemu-'));
  stateDirs.push(dir);
  return dir;
}

// Kill every QEMU (or fake) a test left behind, found by its pidfile, as an operator would.
async function killAll(stateDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(stateDir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pidfile = join(stateDir, entry, VM_FILES.pidfile);
    const pid = Number.parseInt(await readFile(pidfile, 'utf8').catch(() => ''), 10);
    if (Number.isInteger(pid) && alive(pid, pidfile)) process.kill(pid, 'SIGKILL');
  }
}

function alive(pid: number, pidfile: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(pidfile);
  } catch {
    return false;
  }
}

/** The QEMU driver as the contract sees it: the image path handed over on create, the graceful wait capped. */
function contractView(driver: QemuDriver, imagePath: string): VmDriver {
  return {
    name: driver.name,
    list: () => driver.list(),
    create: (vm) => driver.create(vm, { imagePath }),
    start: (id) => driver.start(id),
    stop: (id, opts = {}) =>
      driver.stop(id, { ...opts, timeoutMs: Math.min(opts.timeoutMs ?? Infinity, CONTRACT_POWERDOWN_WAIT_MS) }),
    destroy: (id) => driver.destroy(id),
    inspect: (id) => driver.inspect(id),
    readLog: (id, opts) => driver.readLog(id, opts),
    followLog: (id, listener) => driver.followLog(id, listener),
    openConsole: (id) => driver.openConsole(id),
    openVnc: (id) => driver.openVnc(id),
    stats: (id) => driver.stats(id),
    setNics: (id, nics, opts) => driver.setNics(id, nics, opts),
    onEvent: (listener) => driver.onEvent(listener),
    close: () => driver.close(),
  };
}

beforeAll(async () => {
  if (!haveQemu) return;
  workDir = await mkdtemp(join(os.tmpdir(), 'floe-qemu-img-'));
  base = join(workDir, 'base.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
});

afterAll(async () => {
  for (const dir of stateDirs) {
    await killAll(dir);
    await rm(dir, { recursive: true, force: true });
  }
  if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  for (const tap of taps) await run('ip', ['link', 'del', tap]).catch(() => {});
});

describe.skipIf(!haveQemu)('QEMU driver', () => {
  vmDriverContract(
    'qemu',
    async () => {
      const stateDir = await newStateDir();
      // Two taps for the NIC cases, made once and shared: the cases run one after the other.
      while (taps.length < 2) await newTap();
      const drivers: VmDriver[] = [];
      const open = () => {
        const d = contractView(new QemuDriver({ stateDir, accelerator: 'tcg' }), base);
        drivers.push(d);
        return d;
      };
      return {
        driver: open(),
        reopen: async () => open(),
        taps: taps.slice(0, 2),
        cleanup: async () => {
          for (const d of drivers) await d.close();
          await killAll(stateDir);
          await rm(stateDir, { recursive: true, force: true });
        },
      };
    },
    (id) => desiredInstance({ id }),
  );

  describe('QemuDriver', () => {
    const open: QemuDriver[] = [];
    afterEach(async () => {
      for (const d of open.splice(0)) await d.close();
    });

    async function setup(opts: Partial<QemuDriverOptions> = {}) {
      const stateDir = opts.stateDir ?? (await newStateDir());
      const driver = new QemuDriver({ stateDir, accelerator: 'tcg', ...opts });
      open.push(driver);
      const events: VmDriverEvent[] = [];
      driver.onEvent((e) => events.push(e));
      return { driver, stateDir, events };
    }

    async function createdVm(
      driver: QemuDriver,
      overrides: Parameters<typeof desiredInstance>[0] = {},
    ): Promise<DesiredInstance> {
      const vm = desiredInstance({ id: testId('inst'), ...overrides });
      await driver.create(vm, { imagePath: base });
      return vm;
    }

    const logText = async (driver: QemuDriver, id: string) => (await driver.readLog(id)).toString('utf8');

    it('creates a tiny overlay on the image, the seed ISO and vm.json; idempotently', async () => {
      const { driver, stateDir } = await setup();
      const vm = await createdVm(driver, { spec: { disk_gib: 2, vcpus: 2 } });
      const dir = join(stateDir, vm.id);
      const disk = join(dir, VM_FILES.disk);
      const before = await stat(disk);
      expect(before.size).toBeLessThan(1024 * 1024);
      const info = await imageInfo(disk);
      expect(info.backingFile).toBe(base);
      expect(info.virtualSize).toBe(2 * 1024 ** 3);
      expect((await stat(join(dir, VM_FILES.seed))).size).toBeGreaterThan(0);
      const record = JSON.parse(await readFile(join(dir, VM_FILES.record), 'utf8')) as Record<string, unknown>;
      expect(record).toMatchObject({
        id: vm.id,
        name: vm.name,
        vcpus: 2,
        memory_mib: 128,
        disk_gib: 2,
        image_path: base,
      });

      await driver.create(vm, { imagePath: base });
      expect((await stat(disk)).ino).toBe(before.ino);
      expect(await driver.inspect(vm.id)).toMatchObject({ state: 'stopped', accelerator: 'tcg', pid: null });
    });

    it('refuses to create a VM whose image has no file, and leaves nothing behind', async () => {
      const { driver, stateDir } = await setup();
      const vm = desiredInstance({ id: testId('inst') });
      for (const ctx of [{ imagePath: null }, undefined]) {
        const err = await driver.create(vm, ctx).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(FloeError);
        expect((err as FloeError).code).toBe('invalid_state');
        expect((err as FloeError).message).toMatch(/no file; import it with floe image import/);
      }
      expect(await driver.inspect(vm.id)).toBeNull();
      expect(await readdir(stateDir)).not.toContain(vm.id);
      await expect(driver.create({ ...vm, id: '../escape' }, { imagePath: base })).rejects.toMatchObject({
        code: 'validation_failed',
      });
    });

    it('runs QEMU detached, logs the serial console, and reports stats', async () => {
      const { driver } = await setup();
      const vm = await createdVm(driver);
      const info = await driver.start(vm.id);
      expect(info).toMatchObject({ state: 'running', accelerator: 'tcg' });
      const cmdline = readFileSync(`/proc/${info.pid}/cmdline`, 'utf8').split('\0');
      expect(cmdline).toContain('-daemonize');
      expect(cmdline).toContain('q35,accel=tcg,graphics=off');
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${info.pid}/status`, 'utf8'))![1]);
      expect(ppid).not.toBe(process.pid);

      // SeaBIOS prints to the serial port (graphics=off) and finds the blank disk unbootable.
      await expect
        .poll(() => logText(driver, vm.id), { timeout: 20_000, interval: 100 })
        .toMatch(/SeaBIOS[\s\S]*No bootable device/);
      const full = await driver.readLog(vm.id);
      const tail = await driver.readLog(vm.id, { tailBytes: 16 });
      expect(tail.length).toBe(16);
      expect(tail.equals(full.subarray(full.length - 16))).toBe(true);

      const stats = await driver.stats(vm.id);
      expect(stats.memory_assigned_bytes).toBe(128 * 1024 * 1024);
      expect(stats.memory_bytes).toBeGreaterThan(1024 * 1024);
      expect(stats.cpu_time_ns).toBeGreaterThan(0);
      // SeaBIOS read the disk's first sector looking for a boot loader.
      expect(stats.disk_read_bytes).toBeGreaterThanOrEqual(512);
      expect(stats.disk_write_bytes).toBe(0);
      // No NICs: no traffic, and known to be none.
      expect(stats.net_rx_bytes).toBe(0);

      await driver.stop(vm.id, { force: true });
      await expect(driver.stats(vm.id)).rejects.toMatchObject({ code: 'invalid_state' });
      await expect(driver.stats(testId('inst'))).rejects.toMatchObject({ code: 'instance_not_found' });
    });

    it('serves one console session at a time; output flows; the session ends with the VM', async () => {
      const { driver, events } = await setup();
      const vm = await createdVm(driver);
      await expect(driver.openConsole(vm.id)).rejects.toMatchObject({ code: 'invalid_state' });
      await driver.start(vm.id);
      await expect.poll(() => logText(driver, vm.id), { timeout: 20_000, interval: 100 }).toMatch(/No bootable device/);

      const first = await driver.openConsole(vm.id);
      await expect(driver.openConsole(vm.id)).rejects.toMatchObject({
        code: 'invalid_state',
        message: expect.stringMatching(/console busy/),
      });
      const seen: Buffer[] = [];
      first.onData((d) => seen.push(d));
      // A reset makes SeaBIOS print its banner again, now to the attached console.
      await driver.qmpExecute(vm.id, 'system_reset');
      await expect
        .poll(() => Buffer.concat(seen).toString('utf8'), { timeout: 20_000, interval: 100 })
        .toMatch(/SeaBIOS/);
      await expect.poll(() => events.map((e) => e.type)).toContain('log');
      first.write(Buffer.from('\r'));
      const firstClosed = new Promise<string>((r) => first.onClose(r));
      first.close();
      expect(await firstClosed).toBe('closed');

      const second = await driver.openConsole(vm.id);
      const secondClosed = new Promise<string>((r) => second.onClose(r));
      await driver.stop(vm.id, { force: true });
      expect(await secondClosed).toBe('VM stopped');
      expect(events.filter((e) => e.type === 'stopped' || e.type === 'crashed')).toEqual([]);
    });

    it('follows the console log across a restart that trims it', async () => {
      const { driver } = await setup({ logMaxBytes: 120 });
      const vm = await createdVm(driver);
      await driver.start(vm.id);
      await expect.poll(() => logText(driver, vm.id), { timeout: 20_000, interval: 100 }).toMatch(/No bootable device/);
      await driver.stop(vm.id, { force: true });
      // Without tailBytes a read is bounded like the log; asked for more, the whole (not yet trimmed) history comes back.
      expect((await driver.readLog(vm.id)).length).toBe(120);
      expect((await driver.readLog(vm.id, { tailBytes: 1 << 20 })).length).toBeGreaterThan(120);

      const got: Buffer[] = [];
      const unfollow = await driver.followLog(vm.id, (d) => got.push(d));
      await driver.start(vm.id);
      await expect
        .poll(() => Buffer.concat(got).toString('utf8'), { timeout: 20_000, interval: 100 })
        .toMatch(/No bootable device/);
      // The guest keeps writing: stop it, then what was followed catches up with the file.
      await driver.stop(vm.id, { force: true });
      const followed = async () => {
        const text = Buffer.concat(got).toString('utf8');
        const log = (await driver.readLog(vm.id, { tailBytes: 1 << 20 })).toString('utf8');
        return { text, caughtUp: log.endsWith(text) && log.length - text.length <= 120 };
      };
      await expect.poll(async () => (await followed()).caughtUp, { timeout: 10_000, interval: 100 }).toBe(true);
      // Only the new boot: the trimmed old tail is not delivered again.
      expect((await followed()).text.match(/SeaBIOS \(version/g)).toHaveLength(1);
      unfollow();
    });

    it('falls back to quit when the guest ignores the ACPI power button', async () => {
      const { driver, events } = await setup({ stopTimeoutMs: 700 });
      const vm = await createdVm(driver);
      const { pid } = await driver.start(vm.id);
      const pidfile = join(driver.vmDir(vm.id), VM_FILES.pidfile);
      const started = Date.now();
      const info = await driver.stop(vm.id);
      const took = Date.now() - started;
      expect(info.state).toBe('stopped');
      expect(took).toBeGreaterThanOrEqual(700);
      expect(took).toBeLessThan(10_000);
      expect(alive(pid!, pidfile)).toBe(false);

      const again = await driver.start(vm.id);
      const forced = Date.now();
      await driver.stop(vm.id, { force: true });
      expect(Date.now() - forced).toBeLessThan(700);
      expect(alive(again.pid!, pidfile)).toBe(false);
      expect(events.filter((e) => e.type !== 'log')).toEqual([]);
    });

    it('reports a killed QEMU as crashed and starts it again', async () => {
      const { driver, events } = await setup();
      const vm = await createdVm(driver);
      const { pid } = await driver.start(vm.id);
      process.kill(pid!, 'SIGKILL');
      await expect
        .poll(() => events.find((e) => e.type === 'crashed'), { timeout: 10_000 })
        .toMatchObject({ id: vm.id, exit_code: null });
      const info = await driver.inspect(vm.id);
      expect(info).toMatchObject({ state: 'stopped', pid: null });
      expect(info?.reason).toMatch(/killed or crashed/);
      await expect(stat(join(driver.vmDir(vm.id), VM_FILES.run))).rejects.toThrow();
      const again = await driver.start(vm.id);
      expect(again.pid).not.toBe(pid);
      expect(again.reason).toBeNull();
      await driver.stop(vm.id, { force: true });
      expect(events.filter((e) => e.type === 'crashed')).toHaveLength(1);
    });

    it('leaves VMs running on close; a new driver adopts them and hears their events', async () => {
      const { driver, stateDir } = await setup();
      const vm = await createdVm(driver);
      const started = await driver.start(vm.id);
      await driver.close();
      expect(alive(started.pid!, join(stateDir, vm.id, VM_FILES.pidfile))).toBe(true);

      const { driver: adopted, events } = await setup({ stateDir });
      const listed = (await adopted.list()).find((v) => v.id === vm.id);
      expect(listed).toMatchObject({
        state: 'running',
        pid: started.pid,
        started_at: started.started_at,
        accelerator: 'tcg',
      });
      // The QMP connection is back: disk counters come from query-blockstats.
      expect((await adopted.stats(vm.id)).disk_read_bytes).not.toBeNull();
      process.kill(started.pid!, 'SIGKILL');
      await expect
        .poll(() => events.find((e) => e.type === 'crashed'), { timeout: 10_000 })
        .toMatchObject({ id: vm.id });
    });

    it('reports VMs that ended while no driver watched, once', async () => {
      const { driver, stateDir } = await setup();
      const killed = await createdVm(driver);
      const quit = await createdVm(driver);
      const k = await driver.start(killed.id);
      await driver.start(quit.id);
      await driver.close();
      process.kill(k.pid!, 'SIGKILL');
      // QEMU told to quit exits cleanly and removes its pidfile.
      const qmp = await QmpClient.connect(join(stateDir, quit.id, VM_FILES.qmp));
      await qmp.execute('quit').catch(() => {});
      await expect
        .poll(async () => (await stat(join(stateDir, quit.id, VM_FILES.pidfile)).catch(() => null)) === null)
        .toBe(true);

      const { driver: next, events } = await setup({ stateDir });
      const states = new Map((await next.list()).map((v) => [v.id, v.state]));
      expect(states.get(killed.id)).toBe('stopped');
      expect(states.get(quit.id)).toBe('stopped');
      expect(events.find((e) => e.id === killed.id)).toMatchObject({
        type: 'crashed',
        message: expect.stringMatching(/not watching/),
      });
      expect(events.find((e) => e.id === quit.id)).toMatchObject({ type: 'stopped', exit_code: 0 });
      await next.list();
      expect(events).toHaveLength(2);
    });

    describe('NIC hot-plug with the test guest', () => {
      const BOOT_TIMEOUT_MS = 180_000;

      async function guestImage(ctx: { skip: (note?: string) => void }): Promise<string | null> {
        try {
          return (await ensureTestImage()).path;
        } catch (err) {
          if (err instanceof TestImageError && err.reason === 'unavailable' && !process.env.CI) {
            ctx.skip(err.message);
            return null;
          }
          throw err;
        }
      }

      // Type a command on the serial console and wait for a pattern in what comes back.
      // At the start of a line even when the shell's prompt was the last thing on the console.
      const linkUp = (mac: string) => new RegExp(`^FLOE-TEST LINK eth0 ${mac} up\\r?$`, 'm');

      async function ask(
        serial: Awaited<ReturnType<QemuDriver['openConsole']>>,
        command: string,
        pattern: RegExp,
        timeoutMs = 30_000,
      ): Promise<string> {
        const chunks: Buffer[] = [];
        const off = serial.onData((d) => chunks.push(d));
        try {
          serial.write(Buffer.from(`${command}\r`));
          await expect
            .poll(() => Buffer.concat(chunks).toString('utf8'), { timeout: timeoutMs, interval: 100 })
            .toMatch(pattern);
          return Buffer.concat(chunks).toString('utf8');
        } finally {
          off();
        }
      }

      it(
        'hot-adds a NIC the guest sees, hot-removes it, and starts a stopped VM with the NICs set meanwhile',
        async (ctx) => {
          const imagePath = await guestImage(ctx);
          if (imagePath === null) return;
          const { driver, events } = await setup();
          const tap = await newTap();
          const nic = {
            id: testId('nic'),
            tap,
            mac: `52:54:00:${randomBytes(3).toString('hex').match(/../g)!.join(':')}`,
            index: 2,
          };
          const vm = desiredInstance({ id: testId('inst'), name: 'hotplug', spec: { memory_mib: 256 } });
          await driver.create(vm, { imagePath });
          await driver.start(vm.id);
          await expect
            .poll(() => logText(driver, vm.id), { timeout: BOOT_TIMEOUT_MS, interval: 500 })
            .toMatch(new RegExp(`^${READY_MARKER} hotplug\\r?$`, 'm'));
          // The guest read its seed on the way to READY, and the driver saw it (once).
          await expect
            .poll(() => events.filter((e) => e.id === vm.id && e.type === 'first-boot'), { timeout: 5000 })
            .toEqual([
              expect.objectContaining({ first_boot: { source: 'config-drive', fetched_at: expect.any(String) } }),
            ]);
          const serial = await driver.openConsole(vm.id);
          try {
            await ask(serial, 'ls /sys/class/net; echo listed-$((1 + 1))', /listed-2/);

            const plugged = Date.now();
            expect(await driver.setNics(vm.id, [nic])).toEqual({ removed: [], added: [nic.id] });
            await expect
              .poll(() => logText(driver, vm.id), { timeout: 60_000, interval: 200 })
              .toMatch(linkUp(nic.mac));
            console.log(
              `hot-add to the guest's link watcher under TCG: ${((Date.now() - plugged) / 1000).toFixed(1)} s`,
            );
            await ask(
              serial,
              'cat /sys/class/net/eth0/address; ip link show eth0 | grep -c UP',
              new RegExp(`${nic.mac}\\s+1\\s`),
            );
            const cmd = await driver.qmpExecute<Array<{ name: string; type: string }>>(vm.id, 'qom-list', {
              path: '/machine/peripheral',
            });
            expect(cmd).toContainEqual({ name: nic.id, type: 'child<virtio-net-pci>' });
            // The same list again changes nothing.
            expect(await driver.setNics(vm.id, [nic])).toEqual({ removed: [], added: [] });

            const pulled = Date.now();
            expect(await driver.setNics(vm.id, [])).toEqual({ removed: [nic.id], added: [] });
            console.log(
              `hot-remove (device_del to DEVICE_DELETED) under TCG: ${((Date.now() - pulled) / 1000).toFixed(1)} s`,
            );
            const devices = await driver.qmpExecute<Array<{ name: string }>>(vm.id, 'qom-list', {
              path: '/machine/peripheral',
            });
            expect(devices.map((d) => d.name)).not.toContain(nic.id);
            await expect
              .poll(() => logText(driver, vm.id), { timeout: 30_000, interval: 200 })
              .toMatch(/^FLOE-TEST LINK eth0 gone\r?$/m);
            const listing = await ask(serial, 'ls /sys/class/net; echo listed-$((2 + 1))', /listed-3/);
            expect(listing).not.toMatch(/eth0/);
            // The netdev went with it: the tap is free for the NIC to be plugged in again.
            expect(await driver.setNics(vm.id, [nic])).toEqual({ removed: [], added: [nic.id] });
          } finally {
            serial.close();
          }

          await driver.stop(vm.id, { force: true });
          const other = { ...nic, id: testId('nic'), mac: '52:54:00:fe:00:07', index: 7 };
          expect(await driver.setNics(vm.id, [other])).toEqual({ removed: [nic.id], added: [] });
          const record = JSON.parse(await readFile(join(driver.vmDir(vm.id), VM_FILES.record), 'utf8')) as {
            nics: unknown;
          };
          expect(record.nics).toEqual([other]);
          const again = await driver.start(vm.id);
          const cmdline = readFileSync(`/proc/${again.pid}/cmdline`, 'utf8').split('\0');
          expect(cmdline).toContain(
            `virtio-net-pci,netdev=nd-${other.id},id=${other.id},mac=${other.mac},bus=nicport7`,
          );
          expect(cmdline).toContain('pcie-root-port,id=nicport7,chassis=8,slot=0,io-reserve=0');
          await expect
            .poll(async () => (await logText(driver, vm.id)).split(READY_MARKER).length, {
              timeout: BOOT_TIMEOUT_MS,
              interval: 500,
            })
            .toBe(3);
          expect((await logText(driver, vm.id)).split(READY_MARKER)[1]).toMatch(linkUp(other.mac));
          // A NIC the guest holds on to is removed after it lets go; with no time at all the driver says so, and the NIC stays recorded.
          const err = await driver.setNics(vm.id, [], { timeoutMs: 0 }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(FloeError);
          expect(err).toMatchObject({ code: 'host_operation_failed', details: { reason: 'unplug_timeout' } });
          expect(
            (JSON.parse(await readFile(join(driver.vmDir(vm.id), VM_FILES.record), 'utf8')) as { nics: unknown }).nics,
          ).toEqual([other]);
          // Asked again, the unplug already under way completes.
          expect(await driver.setNics(vm.id, [])).toEqual({ removed: [other.id], added: [] });
          expect(
            (JSON.parse(await readFile(join(driver.vmDir(vm.id), VM_FILES.record), 'utf8')) as { nics?: unknown }).nics,
          ).toBeUndefined();
          await driver.stop(vm.id, { force: true });
          expect(events.filter((e) => e.type === 'crashed')).toEqual([]);
        },
        2 * 180_000 + 120_000,
      );
    });

    describe('with a fake QEMU', () => {
      // A stand-in for qemu-system-x86_64: daemonizes, writes the pidfile and
      // serves QMP, reporting the guest status the mode asks for.
      async function fakeQemu(mode: 'internal-error' | 'fail-later' | 'poweroff' | 'run'): Promise<string> {
        const path = join(workDir, `fake-qemu-${mode}`);
        await writeFile(
          path,
          `#!${process.execPath}
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const mode = ${JSON.stringify(mode)};
const args = process.argv.slice(2);
const pidfile = args[args.indexOf('-pidfile') + 1];
if (args[0] !== '--serve') {
  spawn(process.execPath, [__filename, '--serve', ...args], { detached: true, stdio: 'ignore' }).unref();
  const deadline = Date.now() + 5000;
  const wait = () => fs.existsSync(pidfile) ? process.exit(0) : Date.now() > deadline ? process.exit(1) : setTimeout(wait, 20);
  wait();
} else {
  const qmp = args[args.indexOf('-qmp') + 1].replace(/^unix:/, '').split(',')[0];
  let status = mode === 'internal-error' ? 'internal-error' : 'running';
  let later = false;
  const server = net.createServer((sock) => {
    const send = (m) => sock.write(JSON.stringify(m) + '\\r\\n');
    const event = (event, data) => send({ timestamp: { seconds: 1, microseconds: 0 }, event, data });
    send({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: [] } });
    let buf = '';
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\\n')) >= 0) {
        const m = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (m.execute === 'query-status') send({ return: { status, running: status === 'running' }, id: m.id });
        else send({ return: {}, id: m.id });
        if (m.execute === 'quit') { fs.rmSync(pidfile, { force: true }); process.exit(0); }
        if (m.execute === 'query-status' && !later && mode !== 'internal-error' && mode !== 'run') {
          later = true;
          setTimeout(() => {
            if (mode === 'fail-later') { status = 'internal-error'; event('STOP', {}); }
            else { event('SHUTDOWN', { guest: true, reason: 'guest-shutdown' }); fs.rmSync(pidfile, { force: true }); process.exit(0); }
          }, 300);
        }
      }
    });
  });
  server.listen(qmp, () => fs.writeFileSync(pidfile, String(process.pid)));
}
`,
        );
        await chmod(path, 0o755);
        return path;
      }

      it('a guest KVM cannot run at start: QEMU is killed and the error says to use TCG', async () => {
        const { driver, events } = await setup({ accelerator: 'kvm', qemuBinary: await fakeQemu('internal-error') });
        const vm = await createdVm(driver);
        const pidfile = join(driver.vmDir(vm.id), VM_FILES.pidfile);
        const err = await driver.start(vm.id).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(FloeError);
        expect((err as FloeError).code).toBe('host_operation_failed');
        expect((err as FloeError).message).toBe(KVM_FAILURE_MESSAGE);
        expect((err as FloeError).message).toMatch(/FLOE_ACCEL=tcg/);
        expect(await driver.inspect(vm.id)).toMatchObject({ state: 'stopped' });
        const leftovers = await readFile(pidfile, 'utf8').catch(() => null);
        if (leftovers !== null) expect(alive(Number(leftovers), pidfile)).toBe(false);
        expect(events).toEqual([]);
      });

      it('a guest KVM fails later: killed and reported as crashed with the KVM reason', async () => {
        const { driver, events } = await setup({ accelerator: 'kvm', qemuBinary: await fakeQemu('fail-later') });
        const vm = await createdVm(driver);
        const { pid } = await driver.start(vm.id);
        await expect
          .poll(() => events.find((e) => e.type === 'crashed'), { timeout: 10_000 })
          .toMatchObject({ id: vm.id, message: KVM_FAILURE_MESSAGE });
        expect(alive(pid!, join(driver.vmDir(vm.id), VM_FILES.pidfile))).toBe(false);
        expect((await driver.inspect(vm.id))?.reason).toBe(KVM_FAILURE_MESSAGE);
      });

      it('passes the NICs and their taps to QEMU and keeps them in vm.json for later starts', async () => {
        const qemuBinary = await fakeQemu('run');
        const { driver, stateDir } = await setup({ qemuBinary });
        const nics = [{ id: 'nic_01A', tap: 'fltp00000000001', mac: '52:54:00:12:34:56' }];
        const vm = desiredInstance({ id: testId('inst') });
        await driver.create(vm, { imagePath: base, nics });
        const record = JSON.parse(await readFile(join(driver.vmDir(vm.id), VM_FILES.record), 'utf8')) as Record<
          string,
          unknown
        >;
        expect(record.nics).toEqual(nics);
        const cmdline = async (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
        const first = await driver.start(vm.id);
        expect(await cmdline(first.pid!)).toMatch(/-netdev tap,\S*ifname=fltp00000000001/);
        expect(await cmdline(first.pid!)).toContain('52:54:00:12:34:56');
        await driver.stop(vm.id, { force: true });
        // A create without NICs in its context (an agent that re-creates) keeps the recorded ones.
        const again = await setup({ qemuBinary, stateDir });
        await again.driver.create(vm, { imagePath: base });
        const second = await again.driver.start(vm.id);
        expect(await cmdline(second.pid!)).toMatch(/ifname=fltp00000000001/);
        await again.driver.stop(vm.id, { force: true });
      });

      it('without a config drive: no seed ISO, and the SMBIOS serial names the metadata service', async () => {
        const { driver } = await setup({ qemuBinary: await fakeQemu('run') });
        const vm = desiredInstance({ id: testId('inst'), spec: { config_drive: false } });
        await driver.create(vm, { imagePath: base });
        expect(await readdir(driver.vmDir(vm.id))).not.toContain(VM_FILES.seed);
        const { pid } = await driver.start(vm.id);
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        expect(argv.slice(argv.indexOf('-smbios'), argv.indexOf('-smbios') + 2)).toEqual([
          '-smbios',
          'type=1,serial=ds=nocloud-net;s=http://169.254.169.254/',
        ]);
        expect(argv.join(' ')).not.toContain('media=cdrom');
        await driver.stop(vm.id, { force: true });
      });

      it('a guest that powers off is reported as stopped with exit code 0', async () => {
        const { driver, events } = await setup({ qemuBinary: await fakeQemu('poweroff') });
        const vm = await createdVm(driver);
        await driver.start(vm.id);
        await expect
          .poll(() => events.find((e) => e.type !== 'log'), { timeout: 10_000 })
          .toEqual({ id: vm.id, type: 'stopped', message: 'guest powered off', exit_code: 0 });
        expect(await driver.inspect(vm.id)).toMatchObject({ state: 'stopped', reason: null });
      });
    });
  });
});
