import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitFor as waitForCondition } from '@floe/testkit';
import { ensureTestImage } from '@floe/testkit/guest-image';
import { ROOT } from './helpers.js';

const HAVE_QEMU = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
const skip = !HAVE_QEMU && !process.env.CI ? 'qemu-system-x86_64 is not installed' : null;
if (skip) console.warn(`skipping the real-VM resize test: ${skip}`);

/** What the guest prints at every boot: its CPUs, MemTotal in kB and the 512-byte sectors of its root disk. */
const REPORT = `#!/bin/sh
set -- $(grep MemTotal /proc/meminfo)
echo "GUEST-SIZE boot cpus=$(grep -c ^processor /proc/cpuinfo) mem_kb=$2 disk_sectors=$(cat /sys/block/vda/size)"
`;

interface GuestSize {
  cpus: number;
  mem_kb: number;
  disk_sectors: number;
}

/** Every size the guest reported on its console, oldest first. */
function guestSizes(log: string): GuestSize[] {
  return [...log.matchAll(/GUEST-SIZE boot cpus=(\d+) mem_kb=(\d+) disk_sectors=(\d+)/g)].map((m) => ({
    cpus: Number(m[1]),
    mem_kb: Number(m[2]),
    disk_sectors: Number(m[3]),
  }));
}

/**
 * A real VM from the test image through `floe up`, the CLI and the QEMU driver (TCG): stopped, resized
 * (more vCPUs, more memory, a larger disk) and started again, the guest sees the new size; a smaller disk
 * and a running VM are refused with their codes.
 */
describe.skipIf(skip)('resizing a real VM', () => {
  const data = mkdtempSync(path.join(os.tmpdir(), 'floe-resize-data-'));
  const home = mkdtempSync(path.join(os.tmpdir(), 'floe-resize-home-'));
  const work = mkdtempSync(path.join(os.tmpdir(), 'floe-resize-work-'));
  const cli = path.join(ROOT, 'packages', 'cli', 'dist', 'main.js');
  let env: NodeJS.ProcessEnv;

  const floe = (...args: string[]) => {
    const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', timeout: 300_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const show = () => {
    const r = floe('vm', 'show', 'rz', '-o', 'json');
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out) as {
      spec: { vcpus: number; memory_mib: number; disk_gib: number };
      status: { state: string };
    };
  };
  const sizes = () => guestSizes(floe('vm', 'logs', 'rz').out);

  beforeAll(async () => {
    if (!existsSync(cli)) {
      const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
      if (build.status !== 0) throw new Error(`build failed: ${build.stdout}${build.stderr}`);
    }
    const image = (await ensureTestImage()).path;
    env = {
      ...process.env,
      FLOE_DATA: data,
      XDG_CONFIG_HOME: home,
      FLOE_LISTEN: `127.0.0.1:${await freePort()}`,
      FLOE_ACCEL: 'tcg',
      FLOE_HEARTBEAT_MS: '500',
      NO_COLOR: '1',
    };
    for (const k of ['FLOE_CONFIG', 'FLOE_URL', 'FLOE_TOKEN', 'FLOE_CONTEXT']) delete env[k];
    const up = floe('up', '--detach', '--driver', 'qemu');
    expect(up.code, `${up.out}\n${up.err}`).toBe(0);
    const imported = floe('image', 'import', image, '--name', 'floe-test');
    expect(imported.code, imported.err).toBe(0);
  }, 300_000);

  afterAll(() => {
    floe('vm', 'rm', 'rz', '--yes', '--wait');
    floe('down', '--data', data);
    spawnSync('pkill', ['-9', '-f', data]);
    rmSync(data, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('boots with more vCPUs, memory and disk after a stop, resize and start', async () => {
    const script = path.join(work, 'size.sh');
    writeFileSync(script, REPORT);
    const created = floe(
      'vm',
      'create',
      'rz',
      '--image',
      'floe-test',
      '--vcpus',
      '1',
      '--memory-mib',
      '256',
      '--user-data',
      script,
      '--wait',
    );
    expect(created.code, created.err).toBe(0);
    await waitForCondition('the first boot reports its size', () => sizes().length >= 1, {
      timeoutMs: 240_000,
      intervalMs: 1000,
    });
    const disk = show().spec.disk_gib;
    const first = sizes()[0]!;
    expect(first.cpus).toBe(1);
    expect(first.mem_kb).toBeLessThan(256 * 1024);
    expect(first.disk_sectors).toBe((disk * 1024 ** 3) / 512);

    // Running: refused, and nothing changes.
    const running = floe('vm', 'resize', 'rz', '--vcpus', '2');
    expect(running.code).toBe(1);
    expect(running.err).toContain('(invalid_state)');
    expect(running.err).toContain('floe vm stop rz');

    expect(floe('vm', 'stop', 'rz', '--wait').code).toBe(0);
    const resized = floe(
      'vm',
      'resize',
      'rz',
      '--vcpus',
      '2',
      '--memory-mib',
      '512',
      '--disk-gib',
      String(disk + 2),
      '--wait',
    );
    expect(resized.code, resized.err).toBe(0);
    expect(resized.out).toContain('start it to boot with the new size');
    expect(show().spec).toMatchObject({ vcpus: 2, memory_mib: 512, disk_gib: disk + 2 });
    const shrink = floe('vm', 'resize', 'rz', '--disk-gib', String(disk));
    expect(shrink.code).toBe(1);
    expect(shrink.err).toContain('(disk_shrink_refused)');

    expect(floe('vm', 'start', 'rz', '--wait').code).toBe(0);
    await waitForCondition('the second boot reports its size', () => sizes().length >= 2, {
      timeoutMs: 240_000,
      intervalMs: 1000,
    });
    const second = sizes()[1]!;
    expect(second.cpus).toBe(2);
    expect(second.mem_kb).toBeGreaterThan(256 * 1024);
    expect(second.mem_kb).toBeLessThanOrEqual(512 * 1024);
    expect(second.disk_sectors).toBe(((disk + 2) * 1024 ** 3) / 512);

    const history = floe('vm', 'history', 'rz').out;
    expect(history).toMatch(/resize\s+\S+\s+.*spec\.disk_gib, spec\.memory_mib, spec\.vcpus/);
  }, 900_000);
});
