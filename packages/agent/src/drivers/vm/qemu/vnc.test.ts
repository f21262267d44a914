import { randomBytes } from 'node:crypto';
import { access, mkdtemp, rm, unlink } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { desiredInstance, distinctColours, RfbClient, testId, until } from '@floe/testkit';
import { run, which } from '../../../host/exec.js';
import { QemuDriver } from './driver.js';
import { VM_FILES } from './runtime.js';

// Real QEMU under TCG over a blank disk: SeaBIOS has nothing to boot and says so on the VGA screen.
const haveQemu = (await which('qemu-system-x86_64')) !== null && (await which('qemu-img')) !== null;
if (!haveQemu) {
  if (process.env.CI) throw new Error('the graphical console tests need qemu-system-x86_64 and qemu-img under CI');
  console.warn('skipping the graphical console tests: QEMU is not installed');
}

describe.skipIf(!haveQemu)('the graphical console of a QEMU VM', () => {
  let dir: string;
  let base: string;
  let driver: QemuDriver;

  beforeAll(async () => {
    dir = await mkdtemp(join(os.tmpdir(), `floe-vnc-${randomBytes(3).toString('hex')}-`));
    base = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
    driver = new QemuDriver({ stateDir: join(dir, 'vms'), accelerator: 'tcg', stopTimeoutMs: 1000 });
  });

  afterAll(async () => {
    for (const vm of (await driver?.list()) ?? []) await driver.destroy(vm.id);
    await driver?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lives on a private unix socket that goes with the VM; sessions end when the VM stops', async () => {
    const vm = desiredInstance({ id: testId('inst'), spec: { config_drive: false } });
    await driver.create(vm, { imagePath: base });
    await driver.start(vm.id);
    const socket = join(driver.vmDir(vm.id), VM_FILES.vnc);
    await access(socket);
    const session = await driver.openVnc(vm.id);
    const ended = new Promise<string>((resolve) => session.onClose(resolve));
    const rfb = await RfbClient.connect(session);
    await until('the firmware on screen', async () => distinctColours(await rfb.frame()) > 1, {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    await driver.stop(vm.id, { force: true });
    expect(await ended).toMatch(/VM stopped|closed/);
    await expect(access(socket)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(driver.openVnc(vm.id)).rejects.toMatchObject({ code: 'invalid_state' });
    await driver.destroy(vm.id);
  }, 120_000);

  it('says vnc_unavailable, at once, for a running VM without a VNC socket (started before it had one)', async () => {
    const vm = desiredInstance({ id: testId('inst'), spec: { config_drive: false } });
    await driver.create(vm, { imagePath: base });
    await driver.start(vm.id);
    // What a VM started by an older agent looks like: running, no vnc.sock.
    await unlink(join(driver.vmDir(vm.id), VM_FILES.vnc));
    const started = Date.now();
    await expect(driver.openVnc(vm.id)).rejects.toMatchObject({
      code: 'vnc_unavailable',
      message: expect.stringMatching(/restart it/),
    });
    expect(Date.now() - started).toBeLessThan(2000);
    // The serial console is unaffected.
    const serial = await driver.openConsole(vm.id);
    serial.close();
    await driver.destroy(vm.id);
  }, 120_000);
});
