/**
 * The disk part of the boot benchmark: the disk work floe's QEMU driver does
 * for a new VM against one bare `qemu-img create` of the same overlay.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { run } from '@floe/agent';
import { ensureOverlay, QEMU_IMG } from '../packages/agent/src/drivers/vm/qemu/disk.js';

/** Disk provisionings per side: each takes milliseconds, so many more than boots. */
export const DISK_RUNS = 40;

/**
 * The disk work the QEMU driver does for a new VM: `ensureOverlay` in create
 * (`qemu-img info` of the base, remembered while the base is unchanged, then
 * `qemu-img create` under a temporary name and a rename). The start right
 * after create trusts the size create left instead of checking it again.
 */
async function floeDisk(base: string, overlay: string, bytes: number): Promise<void> {
  await ensureOverlay(base, overlay, bytes);
}

/** One bare `qemu-img create` of the same overlay. */
async function bareDisk(base: string, overlay: string, bytes: number): Promise<void> {
  await run(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', base, overlay, String(bytes)], {
    timeoutMs: 60_000,
  });
}

export async function benchDisks(
  root: string,
  base: string,
  bytes: number,
): Promise<{ floe: number[]; bare: number[]; floeFirst: number }> {
  const dir = path.join(root, 'disks');
  await mkdir(dir, { recursive: true });
  const floe: number[] = [];
  const bare: number[] = [];
  const timed = async (fn: (b: string, o: string, n: number) => Promise<void>, overlay: string) => {
    const t0 = performance.now();
    await fn(base, overlay, bytes);
    const t = performance.now() - t0;
    await rm(overlay, { force: true });
    return t;
  };
  // The first call in this process, before any warm-up: nothing of floe's is cached yet.
  const floeFirst = await timed(floeDisk, path.join(dir, 'first.qcow2'));
  for (let i = 0; i < 3; i++) {
    await timed(bareDisk, path.join(dir, `warm-bare-${i}.qcow2`));
    await timed(floeDisk, path.join(dir, `warm-floe-${i}.qcow2`));
  }
  for (let i = 0; i < DISK_RUNS; i++) {
    const order = i % 2 === 0 ? (['bare', 'floe'] as const) : (['floe', 'bare'] as const);
    for (const side of order) {
      if (side === 'bare') bare.push(await timed(bareDisk, path.join(dir, `bare-${i}.qcow2`)));
      else floe.push(await timed(floeDisk, path.join(dir, `floe-${i}.qcow2`)));
    }
  }
  await rm(dir, { recursive: true, force: true });
  return { floe, bare, floeFirst };
}
