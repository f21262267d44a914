import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FloeClient } from '@floe/client';
import { CTRL_ALT_DEL, distinctColours, foregroundShare, freePort, RfbClient, until } from '@floe/testkit';
import { ensureTestImage, READY_MARKER, TestImageError } from '@floe/testkit/guest-image';
import { run } from '../../packages/cli/src/program.js';
import { FloedProcess } from './floed.js';
import { eventually, kill, startAgent } from './helpers.js';

const HAVE_QEMU = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
const skip = !HAVE_QEMU && !process.env.CI ? 'qemu-system-x86_64 is not installed' : null;
if (skip) console.warn(`skipping the graphical console test with a real VM: ${skip}`);

/** A CLI writer that keeps what it was given. */
class Buf {
  text = '';
  write(s: string | Uint8Array): boolean {
    this.text += typeof s === 'string' ? s : Buffer.from(s).toString('utf8');
    return true;
  }
}

/**
 * A real VM from the test image behind a real floed and a real floe-agent
 * with the QEMU driver (TCG): its graphical console through the control
 * plane's WebSocket and the agent link shows the guest's screen, and its
 * stats history, kept by the agent, outlives a crash of the control plane.
 */
describe.skipIf(skip)('a real VM: graphical console and stats history', () => {
  let dir: string;
  let floed: FloedProcess;
  let agent: ReturnType<typeof startAgent> | null = null;
  let client: FloeClient;
  let id = '';
  let imageMissing: string | null = null;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-vnc-e2e-'));
    let image: string;
    try {
      image = (await ensureTestImage()).path;
    } catch (err) {
      if (err instanceof TestImageError && err.reason === 'unavailable' && !process.env.CI) {
        imageMissing = err.message;
        return;
      }
      throw err;
    }
    floed = new FloedProcess({
      dataDir: path.join(dir, 'data'),
      port: await freePort(),
      env: { FLOE_HEARTBEAT_MS: '500' },
    });
    floed.init();
    await floed.start();
    agent = startAgent(floed.url, floed.agentDir, [
      '--driver',
      'qemu',
      '--accel',
      'tcg',
      '--network-driver',
      'none',
      '--stats-interval',
      '1',
    ]);
    client = floed.client();
    await eventually(
      async () => (await client.hosts.get(floed.hostId)).status.state === 'online',
      'host online',
      60_000,
    );
    const caFile = path.join(dir, 'ca.pem');
    await writeFile(caFile, floed.ca);
    const out = new Buf();
    const err = new Buf();
    const code = await run(['image', 'import', image, '--name', 'floe-test'], {
      stdout: out,
      stderr: err,
      env: {
        FLOE_CONFIG: path.join(dir, 'config.json'),
        FLOE_URL: floed.url,
        FLOE_TOKEN: floed.adminToken,
        FLOE_CA: caFile,
        NO_COLOR: '1',
      },
      stdinIsTTY: false,
    });
    expect(code, err.text).toBe(0);
    const created = await client.instances.create({ name: 'gfx', image: 'floe-test', machine_type: 'nano' });
    id = created.instance.id;
    const done = await client.operations.wait(created.operation.id, { timeoutMs: 180_000 });
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
  }, 300_000);

  afterAll(async () => {
    if (client && id) {
      const op = await client.instances.delete(id).catch(() => null);
      if (op) await client.operations.wait(op.id, { timeoutMs: 120_000 }).catch(() => null);
    }
    await client?.close();
    if (agent) await kill(agent, 'SIGTERM');
    await floed?.stop();
    // A VM the deletion missed must not outlive the test.
    spawnSync('pkill', ['-9', '-f', dir]);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 180_000);

  it('shows the guest screen over RFB: handshake, None security, a frame with text on it', async (ctx) => {
    if (imageMissing !== null) return ctx.skip(imageMissing);
    const session = await client.instances.vnc('gfx');
    try {
      const rfb = await RfbClient.connect({ write: (d) => session.write(d), onData: (l) => session.onData(l) }, 30_000);
      expect(rfb.handshake.version).toBe('RFB 003.008');
      expect(rfb.handshake.securityTypes).toEqual([1]);
      // The VM's QEMU names the guest: `-name guest=gfx`.
      expect(rfb.fb.name).toBe('QEMU (gfx)');
      expect(rfb.fb.width).toBeGreaterThanOrEqual(320);
      expect(rfb.fb.height).toBeGreaterThanOrEqual(200);
      // Firmware, boot loader and kernel write text on the VGA screen: light glyphs on black.
      const fb = await until(
        'text on the screen',
        async () => {
          const frame = await rfb.frame(60_000);
          return distinctColours(frame) > 1 && foregroundShare(frame) > 0.001 ? frame : null;
        },
        { timeoutMs: 180_000, intervalMs: 1000 },
      );
      const share = foregroundShare(fb);
      console.log(
        `[floe] graphical console frame: ${fb.width}x${fb.height}, ${distinctColours(fb)} colours, ${(share * 100).toFixed(2)}% foreground pixels`,
      );
      expect(share).toBeLessThan(0.9);
    } finally {
      session.close();
    }
    expect((await session.done).error).toBeNull();
  }, 240_000);

  it('keeps a stats history in the agent, as rates, that outlives a crash of the control plane', async (ctx) => {
    if (imageMissing !== null) return ctx.skip(imageMissing);
    // The guest is booting: its QEMU burns CPU and reads its disk.
    await eventually(
      async () => {
        const logs: Buffer[] = [];
        for await (const chunk of client.instances.logs('gfx')) logs.push(chunk);
        return Buffer.concat(logs).toString('utf8').includes(`${READY_MARKER} gfx`);
      },
      'the guest ready',
      180_000,
    );
    const history = await eventually(
      async () => {
        const h = await client.instances.statsHistory('gfx');
        return h.samples.length >= 5 ? h : undefined;
      },
      'five samples',
      60_000,
    );
    expect(history).toMatchObject({ instance_id: id, interval_seconds: 1, retention_seconds: 3600, vcpus: 1 });
    const rated = history.samples.slice(1);
    expect(
      rated.every((p) => p.cpu_percent !== null && p.cpu_percent >= 0),
      JSON.stringify(history.samples),
    ).toBe(true);
    expect(Math.max(...rated.map((p) => p.cpu_percent!))).toBeGreaterThan(0);
    const memoryMib = (await client.instances.get('gfx')).spec.memory_mib;
    for (const p of history.samples) {
      expect(p.memory_bytes).toBeGreaterThan(0);
      expect(p.memory_assigned_bytes).toBe(memoryMib * 1024 * 1024);
    }
    // QEMU's block counters come over QMP, which may be too busy to answer now and then under TCG: most are known.
    const diskKnown = rated.filter(
      (p) => p.disk_read_bytes_per_second !== null && p.disk_write_bytes_per_second !== null,
    );
    expect(diskKnown.length, JSON.stringify(history.samples)).toBeGreaterThanOrEqual(rated.length / 2);
    // No NICs: no traffic, but known to be none.
    expect(rated.every((p) => p.net_rx_bytes_per_second === 0 && p.net_tx_bytes_per_second === 0)).toBe(true);
    console.log(
      `[floe] stats history of a booted TCG guest: ${history.samples.length} samples, CPU ${rated.map((p) => p.cpu_percent!.toFixed(0)).join(' ')} %, disk rates known in ${diskKnown.length} of ${rated.length}`,
    );

    await floed.crash();
    await floed.start();
    await eventually(async () => (await client.hosts.get(floed.hostId)).status.state === 'online', 'host back', 60_000);
    const after = await eventually(
      async () => {
        const h = await client.instances.statsHistory('gfx');
        return h.samples.length > history.samples.length ? h : undefined;
      },
      'the history after the restart',
      60_000,
    );
    const times = new Set(after.samples.map((p) => p.at));
    // What was sampled before the crash is still there.
    expect(history.samples.filter((p) => times.has(p.at)).length).toBe(history.samples.length);
  }, 360_000);

  it('carries the keyboard: Ctrl-Alt-Del typed on the graphical console reaches the guest', async (ctx) => {
    if (imageMissing !== null) return ctx.skip(imageMissing);
    const session = await client.instances.vnc('gfx');
    try {
      const rfb = await RfbClient.connect({ write: (d) => session.write(d), onData: (l) => session.onData(l) }, 30_000);
      await rfb.frame(30_000);
      // The test image's init powers off on Ctrl-Alt-Del (PS/2 keyboard -> kernel -> init).
      rfb.chord(...CTRL_ALT_DEL);
      await eventually(
        async () => {
          const logs: Buffer[] = [];
          for await (const chunk of client.instances.logs('gfx', { tailBytes: 4096 })) logs.push(chunk);
          return Buffer.concat(logs).toString('utf8').includes('floe-test: shutting down');
        },
        'the guest shutting down',
        120_000,
      );
    } finally {
      session.close();
    }
  }, 180_000);
});
