import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTool } from './exec.js';
import { ensureTestImage, IP_MARKER, READY_MARKER, TestImageError } from './index.js';
import { LINK_MARKER } from './guest-files.js';
// QMP and the seed builder are internals of the agent's VM driver, which @floe/agent does not export.
import { connectWithRetry } from '../../../agent/src/drivers/vm/qemu/qmp.js';
import { seedFiles, writeSeedIso } from '../../../agent/src/drivers/vm/seed.js';
import { desiredInstance } from '../factories.js';

const BOOT_TIMEOUT_MS = 120_000;

// The guest's side of NIC hot-plug: a NIC plugged into a running guest (on
// QEMU's user network, which answers DHCP and sends router advertisements and
// reaches nothing outside) is brought up, gets its IPv4 lease and its SLAAC
// address; pulled out, the guest says it is gone.
describe('test guest with hot-plugged NICs', () => {
  it(
    'takes DHCP and SLAAC on a NIC plugged in after boot, and notices when it goes',
    async (ctx) => {
      let imagePath: string;
      try {
        await runTool('qemu-system-x86_64', ['--version'], { timeoutMs: 10_000 });
        imagePath = (await ensureTestImage()).path;
      } catch (err) {
        if (process.env.CI || (err instanceof TestImageError && err.reason !== 'unavailable')) throw err;
        ctx.skip(`no test image or QEMU here: ${(err as Error).message}`);
        return;
      }
      const dir = await mkdtemp(join(tmpdir(), 'floe-guest-hotplug-'));
      const serial = join(dir, 'serial.log');
      const text = () => readFile(serial, 'utf8').catch(() => '');
      let proc: ReturnType<typeof spawn> | null = null;
      try {
        await runTool('qemu-img', [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-F',
          'qcow2',
          '-b',
          imagePath,
          join(dir, 'disk.qcow2'),
        ]);
        const iso = await writeSeedIso(dir, seedFiles(desiredInstance({ name: 'guest-hotplug' })));
        proc = spawn(
          'qemu-system-x86_64',
          [
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
            `file:${serial}`,
            '-qmp',
            `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
            '-drive',
            `file=${join(dir, 'disk.qcow2')},if=virtio,format=qcow2`,
            '-drive',
            `file=${iso},if=virtio,format=raw,readonly=on`,
            '-device',
            'pcie-root-port,id=port0,chassis=1,slot=0,io-reserve=0',
          ],
          { stdio: 'ignore' },
        );
        await expect
          .poll(text, { timeout: BOOT_TIMEOUT_MS, interval: 250 })
          .toMatch(new RegExp(`^${READY_MARKER} guest-hotplug\\r?$`, 'm'));
        expect(await text()).not.toContain(LINK_MARKER);

        const qmp = await connectWithRetry(join(dir, 'qmp.sock'), { attempts: 50, delayMs: 100 });
        try {
          const plugged = Date.now();
          await qmp.execute('netdev_add', { type: 'user', id: 'nd0', restrict: true });
          await qmp.execute('device_add', {
            driver: 'virtio-net-pci',
            id: 'nic0',
            netdev: 'nd0',
            bus: 'port0',
            mac: '52:54:00:12:34:56',
          });
          // Marker lines come after the console shell's prompt; each still starts a line of its own.
          await expect
            .poll(text, { timeout: 60_000, interval: 250 })
            .toMatch(new RegExp(`^${LINK_MARKER} eth0 52:54:00:12:34:56 up\\r?$`, 'm'));
          await expect
            .poll(text, { timeout: 60_000, interval: 250 })
            .toMatch(new RegExp(`^${IP_MARKER} eth0 10\\.0\\.2\\.15/24\\r?$`, 'm'));
          console.log(`hot-plugged NIC to its DHCP lease under TCG: ${((Date.now() - plugged) / 1000).toFixed(1)} s`);
          // QEMU's user network advertises fec0::/64; SLAAC derives the address from the MAC.
          await expect
            .poll(text, { timeout: 60_000, interval: 250 })
            .toMatch(new RegExp(`^${IP_MARKER} eth0 fec0::5054:ff:fe12:3456/64\\r?$`, 'm'));

          const deleted = new Promise<void>((resolve) =>
            qmp.onEvent('DEVICE_DELETED', (e) => e.data.device === 'nic0' && resolve()),
          );
          await qmp.execute('device_del', { id: 'nic0' });
          await deleted;
          await expect
            .poll(text, { timeout: 30_000, interval: 250 })
            .toMatch(new RegExp(`^${LINK_MARKER} eth0 gone\\r?$`, 'm'));
        } finally {
          qmp.close();
        }
      } finally {
        proc?.kill('SIGKILL');
        await rm(dir, { recursive: true, force: true });
      }
    },
    BOOT_TIMEOUT_MS + 240_000,
  );
});
