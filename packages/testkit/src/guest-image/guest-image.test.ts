import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import type { TestContext } from 'vitest';
import { runTool } from './exec.js';
import {
  DEFAULT_GUEST_HOSTNAME,
  ensureTestImage,
  IP_MARKER,
  READY_MARKER,
  TestImageError,
  type TestImage,
} from './index.js';
import { desiredInstance } from '../factories.js';
// The seed builder and the seed's QEMU arguments are internals of the agent's VM driver, which @floe/agent does not export.
import { seedFiles, writeSeedIso } from '../../../agent/src/drivers/vm/seed.js';
import { seedDriveArgs } from '../../../agent/src/drivers/vm/qemu/argv.js';

const BOOT_TIMEOUT_MS = 120_000;
const POWEROFF_TIMEOUT_MS = 20_000;

/** The image, or a skip with the reason (a failure under CI) when it cannot be had here. */
async function imageOrSkip(ctx: TestContext): Promise<TestImage | null> {
  const qemu = await runTool('qemu-system-x86_64', ['--version'], { timeoutMs: 10_000 }).catch((err: Error) => err);
  if (qemu instanceof Error) {
    if (process.env.CI) throw qemu;
    ctx.skip(`qemu-system-x86_64 is not usable: ${qemu.message}`);
    return null;
  }
  const started = Date.now();
  try {
    const image = await ensureTestImage({ log: (line) => console.log(`test image: ${line}`) });
    const size = (await stat(image.path)).size;
    console.log(
      `test image: ${image.path}, ${(size / 1024 / 1024).toFixed(1)} MiB, kernel ${image.kernelVersion}, ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    return image;
  } catch (err) {
    if (err instanceof TestImageError && err.reason === 'unavailable' && !process.env.CI) {
      console.log(`skipping: ${err.message}`);
      ctx.skip(err.message);
      return null;
    }
    throw err;
  }
}

/** A bare QEMU process with its serial log and QMP socket in `dir`. */
class Guest {
  readonly serialPath: string;
  readonly qmpPath: string;
  private stderr = '';
  readonly exited: Promise<number | null>;
  private done = false;

  private constructor(
    readonly proc: ChildProcess,
    dir: string,
  ) {
    this.serialPath = join(dir, 'serial.log');
    this.qmpPath = join(dir, 'qmp.sock');
    proc.stderr?.on('data', (c: Buffer) => {
      this.stderr += c.toString('utf8');
    });
    this.exited = new Promise((resolve) =>
      proc.on('exit', (code) => {
        this.done = true;
        resolve(code);
      }),
    );
  }

  static start(dir: string, devices: string[]): Guest {
    const argv = [
      '-machine',
      'q35',
      '-accel',
      'tcg',
      '-m',
      '256',
      '-smp',
      '1',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-serial',
      `file:${join(dir, 'serial.log')}`,
      '-qmp',
      `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
      // The boot disk first, as floe's driver has it: the firmware never tries a seed disk.
      '-drive',
      `file=${join(dir, 'disk.qcow2')},if=none,id=disk0,format=qcow2`,
      '-device',
      'virtio-blk-pci,drive=disk0,bootindex=0',
      ...devices,
    ];
    return new Guest(spawn('qemu-system-x86_64', argv, { stdio: ['ignore', 'ignore', 'pipe'] }), dir);
  }

  get running(): boolean {
    return !this.done;
  }

  async serial(): Promise<string> {
    return readFile(this.serialPath, 'utf8').catch(() => '');
  }

  /** Wait until every pattern is on the serial console; returns the console text. */
  async waitFor(patterns: RegExp[], timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await this.serial();
      if (patterns.every((p) => p.test(text))) return text;
      if (!this.running)
        throw new Error(`QEMU exited before ${patterns.join(', ')} appeared\nstderr: ${this.stderr}\nserial:\n${text}`);
      if (Date.now() > deadline)
        throw new Error(
          `no ${patterns.filter((p) => !p.test(text)).join(', ')} on the serial console within ${timeoutMs} ms\nserial:\n${text}`,
        );
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Send one QMP command (after the capabilities handshake) and return its answer. */
  async qmp(command: string): Promise<unknown> {
    const deadline = Date.now() + 10_000;
    while (!existsSync(this.qmpPath)) {
      if (Date.now() > deadline) throw new Error('no QMP socket');
      await new Promise((r) => setTimeout(r, 100));
    }
    const sock: Socket = connect(this.qmpPath);
    try {
      const replies: unknown[] = [];
      let buf = '';
      let wake: (() => void) | null = null;
      sock.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line.length === 0) continue;
          const msg = JSON.parse(line) as Record<string, unknown>;
          if ('return' in msg || 'error' in msg || 'QMP' in msg) replies.push(msg);
          wake?.();
        }
      });
      const next = async (): Promise<Record<string, unknown>> => {
        while (replies.length === 0) {
          await new Promise<void>((resolve, reject) => {
            wake = resolve;
            setTimeout(() => reject(new Error('QMP answer timed out')), 10_000).unref();
          });
        }
        return replies.shift() as Record<string, unknown>;
      };
      await next(); // greeting
      sock.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
      const caps = await next();
      if (!('return' in caps)) throw new Error(`qmp_capabilities failed: ${JSON.stringify(caps)}`);
      sock.write(`${JSON.stringify({ execute: command })}\n`);
      return await next();
    } finally {
      sock.destroy();
    }
  }

  kill(): void {
    if (this.running) this.proc.kill('SIGKILL');
  }
}

/** A scratch directory with an overlay on the image (the cached file stays untouched). */
async function scratch(image: TestImage): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'floe-guest-'));
  await runTool('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', image.path, join(dir, 'disk.qcow2')]);
  return dir;
}

describe('test guest image', () => {
  it(
    'boots from its disk, finds the seed where floe attaches it, gets a DHCP lease, runs user-data, powers off on the ACPI button',
    async (ctx) => {
      const { expect } = ctx;
      const image = await imageOrSkip(ctx);
      if (image === null) return;
      const dir = await scratch(image);
      let guest: Guest | null = null;
      try {
        const token = randomBytes(6).toString('hex');
        const vm = desiredInstance({
          name: 'guest-test',
          spec: { user_data: `#!/bin/sh\necho "user-data-${token} on $(hostname)"\n` },
        });
        const iso = await writeSeedIso(dir, seedFiles(vm));
        const started = Date.now();
        guest = Guest.start(dir, [
          // The seed exactly as floe's QEMU driver attaches it, a NIC on QEMU's user network (no way out).
          ...seedDriveArgs(iso),
          '-netdev',
          'user,id=net0,restrict=on',
          '-device',
          'virtio-net-pci,netdev=net0',
        ]);
        const text = await guest.waitFor([new RegExp(`^${READY_MARKER} guest-test\\r?$`, 'm')], BOOT_TIMEOUT_MS);
        console.log(`boot to ${READY_MARKER} under TCG: ${((Date.now() - started) / 1000).toFixed(1)} s`);
        expect(text).toMatch(new RegExp(`^user-data-${token} on guest-test\\r?$`, 'm'));
        expect(text.indexOf(`user-data-${token}`)).toBeLessThan(text.indexOf(READY_MARKER));
        expect(text).toMatch(new RegExp(`^${IP_MARKER} eth0 10\\.0\\.2\\.15/24\\r?$`, 'm'));
        expect(text).toContain('floe-test: user-data exited with 0');
        expect(text).not.toContain('cannot load module');
        // Found by its label on whatever device the cloud kernel made of it.
        expect(text).toMatch(/^floe-test: NoCloud seed on \/dev\/vd[b-z]\r?$/m);

        const powerdown = Date.now();
        expect(await guest.qmp('system_powerdown')).toHaveProperty('return');
        const code = await Promise.race([
          guest.exited,
          new Promise((r) => setTimeout(() => r('timeout'), POWEROFF_TIMEOUT_MS)),
        ]);
        expect(code, 'QEMU did not exit after system_powerdown').toBe(0);
        console.log(`ACPI power-down to QEMU exit: ${((Date.now() - powerdown) / 1000).toFixed(1)} s`);
        const after = await guest.serial();
        expect(after).toContain('floe-test: power button pressed');
        expect(after).toMatch(/reboot: Power down/);
      } finally {
        guest?.kill();
        await rm(dir, { recursive: true, force: true });
      }
    },
    BOOT_TIMEOUT_MS + POWEROFF_TIMEOUT_MS + 60_000,
  );

  it(
    'does not see a seed on an IDE CD-ROM on q35 (AHCI), as a cloud kernel does not',
    async (ctx) => {
      const { expect } = ctx;
      const image = await imageOrSkip(ctx);
      if (image === null) return;
      const dir = await scratch(image);
      let guest: Guest | null = null;
      try {
        const token = randomBytes(6).toString('hex');
        const vm = desiredInstance({
          name: 'guest-ahci',
          spec: { user_data: `#!/bin/sh\necho "user-data-${token}"\n` },
        });
        const iso = await writeSeedIso(dir, seedFiles(vm));
        guest = Guest.start(dir, [
          // What floe did before: the seed as a CD-ROM on q35's own AHCI controller. Debian's cloud kernel has no AHCI driver.
          '-drive',
          `file=${iso},if=none,id=seed,media=cdrom,format=raw,readonly=on`,
          '-device',
          'ide-cd,bus=ide.0,drive=seed',
        ]);
        // Without a seed the guest keeps its default name and runs no user-data.
        const text = await guest.waitFor(
          [new RegExp(`^${READY_MARKER} ${DEFAULT_GUEST_HOSTNAME}\\r?$`, 'm')],
          BOOT_TIMEOUT_MS,
        );
        expect(text).toContain('floe-test: no NoCloud seed (a device labelled cidata) found');
        expect(text).not.toContain(`user-data-${token}`);
        expect(text).not.toContain('guest-ahci');
        expect(text).not.toContain('cannot load module');
        // QEMU did attach the CD-ROM with the seed in it: the guest is what cannot see it.
        const block = (await guest.qmp('query-block')) as {
          return: Array<{ device: string; inserted?: { file: string } }>;
        };
        expect(block.return.find((b) => b.device === 'seed')?.inserted?.file).toBe(iso);
      } finally {
        guest?.kill();
        await rm(dir, { recursive: true, force: true });
      }
    },
    BOOT_TIMEOUT_MS + 60_000,
  );

  // Two guests at once: each is one TCG thread, and the machine has two cores.
  describe.concurrent('more seed attachments and power paths', () => {
    it(
      'reads the seed from a virtio disk and powers off on the ACPI button while user-data still runs',
      async (ctx) => {
        const { expect } = ctx;
        const image = await imageOrSkip(ctx);
        if (image === null) return;
        const dir = await scratch(image);
        let guest: Guest | null = null;
        try {
          const vm = desiredInstance({
            name: 'guest-busy',
            spec: { user_data: '#!/bin/sh\necho "long job started"\nsleep 600\n' },
          });
          const iso = await writeSeedIso(dir, seedFiles(vm));
          guest = Guest.start(dir, ['-drive', `file=${iso},if=virtio,format=raw,readonly=on`]);
          const text = await guest.waitFor([/^long job started\r?$/m], BOOT_TIMEOUT_MS);
          expect(text).toMatch(/floe-test: NoCloud seed on \/dev\/vd[b-z]/);
          expect(text).not.toContain(READY_MARKER);
          expect(text).not.toContain(IP_MARKER);
          const powerdown = Date.now();
          expect(await guest.qmp('system_powerdown')).toHaveProperty('return');
          const code = await Promise.race([
            guest.exited,
            new Promise((r) => setTimeout(() => r('timeout'), POWEROFF_TIMEOUT_MS)),
          ]);
          expect(code, 'QEMU did not exit after system_powerdown').toBe(0);
          console.log(
            `ACPI power-down during user-data to QEMU exit: ${((Date.now() - powerdown) / 1000).toFixed(1)} s`,
          );
        } finally {
          guest?.kill();
          await rm(dir, { recursive: true, force: true });
        }
      },
      BOOT_TIMEOUT_MS + POWEROFF_TIMEOUT_MS + 60_000,
    );

    it(
      'reads the seed from a virtio-scsi CD-ROM and powers off when the guest asks',
      async (ctx) => {
        const { expect } = ctx;
        const image = await imageOrSkip(ctx);
        if (image === null) return;
        const dir = await scratch(image);
        let guest: Guest | null = null;
        try {
          const vm = desiredInstance({
            name: 'guest-scsi',
            spec: { user_data: '#!/bin/sh\n(sleep 1; poweroff) &\necho "powering off soon"\n' },
          });
          const iso = await writeSeedIso(dir, seedFiles(vm));
          const started = Date.now();
          guest = Guest.start(dir, [
            '-device',
            'virtio-scsi-pci,id=scsi0',
            '-drive',
            `file=${iso},if=none,id=seed,media=cdrom,format=raw,readonly=on`,
            '-device',
            'scsi-cd,bus=scsi0.0,drive=seed',
          ]);
          const text = await guest.waitFor([new RegExp(`^${READY_MARKER} guest-scsi\\r?$`, 'm')], BOOT_TIMEOUT_MS);
          console.log(
            `boot to ${READY_MARKER} under TCG (seed on virtio-scsi, no NIC): ${((Date.now() - started) / 1000).toFixed(1)} s`,
          );
          expect(text).toMatch(/floe-test: NoCloud seed on \/dev\/sr0/);
          expect(text).toMatch(/^powering off soon\r?$/m);
          const code = await Promise.race([
            guest.exited,
            new Promise((r) => setTimeout(() => r('timeout'), POWEROFF_TIMEOUT_MS)),
          ]);
          expect(code, 'the guest did not power off by itself').toBe(0);
          expect(await guest.serial()).toMatch(/reboot: Power down/);
        } finally {
          guest?.kill();
          await rm(dir, { recursive: true, force: true });
        }
      },
      BOOT_TIMEOUT_MS + POWEROFF_TIMEOUT_MS + 60_000,
    );
  });
});
