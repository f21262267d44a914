import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FloeClient } from '@floe/client';
import { freePort, waitFor as waitForCondition } from '@floe/testkit';
import { ensureTestImage } from '@floe/testkit/guest-image';
import { ROOT } from './helpers.js';

const HAVE_QEMU = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
const skip = !HAVE_QEMU && !process.env.CI ? 'qemu-system-x86_64 is not installed' : null;
if (skip) console.warn(`skipping real-VM end-to-end tests: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A killed QEMU may linger as a zombie where nothing reaps it.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Real VMs from the project's test image, through `floe up`, the CLI, the
 * control plane and the agent with the QEMU driver (TCG): first boot with
 * user-data, lifecycle, VMs outliving both daemons, restart policy, and the
 * backing-file check on import.
 */
describe.skipIf(skip)('real VMs with QEMU, end to end', () => {
  const data = mkdtempSync(path.join(os.tmpdir(), 'floe-qemu-data-'));
  const home = mkdtempSync(path.join(os.tmpdir(), 'floe-qemu-home-'));
  const work = mkdtempSync(path.join(os.tmpdir(), 'floe-qemu-work-'));
  const cli = path.join(ROOT, 'packages', 'cli', 'dist', 'main.js');
  let env: NodeJS.ProcessEnv;
  let image: string;

  const floe = (...args: string[]) => {
    const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', timeout: 180_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const json = <T>(...args: string[]): T => {
    const r = floe(...args, '-o', 'json');
    expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0);
    return JSON.parse(r.out) as T;
  };
  const vm = (name: string) =>
    json<{ id: string; status: { state: string; accelerator: string | null } }>('vm', 'show', name);
  const pidOf = (id: string) => Number(readFileSync(path.join(data, 'agent', 'vms', id, 'qemu.pid'), 'utf8').trim());
  const logsOf = (name: string) => floe('vm', 'logs', name).out;
  const waitFor = (what: string, check: () => boolean, timeoutMs = 180_000) =>
    waitForCondition(what, check, { timeoutMs, intervalMs: 1000 });

  beforeAll(async () => {
    if (!existsSync(cli)) {
      const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
      if (build.status !== 0) throw new Error(`build failed: ${build.stdout}${build.stderr}`);
    }
    image = (await ensureTestImage()).path;
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
    expect(up.out).toContain('QEMU');
  }, 300_000);

  afterAll(() => {
    for (const name of ['t1', 't2', 't3']) floe('vm', 'rm', name, '--yes', '--wait');
    floe('down', '--data', data);
    // Nothing of ours may keep running.
    spawnSync('pkill', ['-9', '-f', data]);
    rmSync(data, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('imports the test image, refusing one whose backing file is /etc/shadow', () => {
    const imported = floe('image', 'import', image, '--name', 'floe-test');
    expect(imported.code, imported.err).toBe(0);
    const img = json<{ status: { state: string; sha256: string } }>('image', 'show', 'floe-test');
    expect(img.status.state).toBe('ready');
    expect(img.status.sha256).toMatch(/^[0-9a-f]{64}$/);

    const evil = path.join(work, 'evil.qcow2');
    expect(
      spawnSync('qemu-img', ['create', '-f', 'qcow2', '-F', 'raw', '-b', '/etc/shadow', '-u', evil, '1M']).status,
    ).toBe(0);
    const refused = floe('image', 'import', evil, '--name', 'evil');
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('image_backing_file_forbidden');
    expect(floe('image', 'show', 'evil').code).toBe(1);
  }, 120_000);

  it('boots a VM that runs its first-boot script, then stops, starts, restarts and deletes it', async () => {
    const script = path.join(work, 'hello.sh');
    writeFileSync(script, '#!/bin/sh\necho "HELLO FROM USER-DATA on $(hostname)"\n');
    const created = floe(
      'vm',
      'create',
      't1',
      '--image',
      'floe-test',
      '--type',
      'nano',
      '--user-data',
      script,
      '--wait',
    );
    expect(created.code, created.err).toBe(0);
    const t1 = vm('t1');
    expect(t1.status.state).toBe('running');
    expect(t1.status.accelerator).toBe('tcg');
    await waitFor('READY on the serial console', () => logsOf('t1').includes('FLOE-TEST READY t1'));
    expect(logsOf('t1')).toContain('HELLO FROM USER-DATA on t1');

    const started = Date.now();
    const stop = floe('vm', 'stop', 't1', '--wait');
    expect(stop.code, stop.err).toBe(0);
    expect(vm('t1').status.state).toBe('stopped');
    // The guest powered off on the ACPI button, well before the 30 s fallback.
    expect(Date.now() - started).toBeLessThan(25_000);

    expect(floe('vm', 'start', 't1', '--wait').code).toBe(0);
    expect(vm('t1').status.state).toBe('running');
    const readyCount = () => logsOf('t1').split('FLOE-TEST READY t1').length - 1;
    await waitFor('READY after start', () => readyCount() >= 2);
    expect(floe('vm', 'restart', 't1', '--wait').code).toBe(0);
    await waitFor('READY after restart', () => readyCount() >= 3);

    const dir = path.join(data, 'agent', 'vms', t1.id);
    expect(existsSync(path.join(dir, 'disk.qcow2'))).toBe(true);
    const rm = floe('vm', 'rm', 't1', '--yes', '--wait');
    expect(rm.code, rm.err).toBe(0);
    expect(existsSync(dir)).toBe(false);
  }, 600_000);

  it('keeps VMs running through kill -9 of the agent and the control plane, and re-adopts them', async () => {
    expect(floe('vm', 'create', 't2', '--image', 'floe-test', '--type', 'nano', '--wait').code).toBe(0);
    expect(
      floe('vm', 'create', 't3', '--image', 'floe-test', '--type', 'nano', '--restart-policy', 'on-failure', '--wait')
        .code,
    ).toBe(0);
    const ids = { t2: vm('t2').id, t3: vm('t3').id };
    await waitFor('t2 READY', () => logsOf('t2').includes('FLOE-TEST READY t2'));
    const pids = { t2: pidOf(ids.t2), t3: pidOf(ids.t3) };

    for (const name of ['agent', 'floed']) {
      const pid = Number(readFileSync(path.join(data, 'run', `${name}.pid`), 'utf8'));
      process.kill(pid, 'SIGKILL');
    }
    await sleep(2000);
    expect(alive(pids.t2)).toBe(true);
    expect(alive(pids.t3)).toBe(true);

    const up = floe('up', '--detach', '--driver', 'qemu');
    expect(up.code, `${up.out}\n${up.err}`).toBe(0);
    await waitFor(
      're-adopted VMs running',
      () => vm('t2').status.state === 'running' && vm('t3').status.state === 'running',
      60_000,
    );
    expect(pidOf(ids.t2)).toBe(pids.t2);
    expect(pidOf(ids.t3)).toBe(pids.t3);

    // The console of a re-adopted VM works: the guest's shell answers.
    const console = spawn(process.execPath, [cli, 'vm', 'console', 't2', '--linger', '3000'], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let errOut = '';
    console.stdout.on('data', (d) => {
      out += String(d);
    });
    console.stderr.on('data', (d) => {
      errOut += String(d);
    });
    // Typed input can be lost while the shell is busy (e.g. its terminal query): ask again until it answers.
    const deadline = Date.now() + 90_000;
    while (!out.includes('CONSOLE-42') && Date.now() < deadline) {
      console.stdin.write('\r\necho CONSOLE-$((40+2))\r\n');
      for (let i = 0; i < 10 && !out.includes('CONSOLE-42'); i++) await sleep(500);
    }
    expect(out, `console stderr: ${errOut}; exit: ${console.exitCode}`).toContain('CONSOLE-42');
    console.stdin.end();
    await new Promise((r) => console.once('exit', r));
  }, 600_000);

  it('brings back a VM whose QEMU was killed, under restart policy on-failure', async () => {
    const id = vm('t3').id;
    const before = pidOf(id);
    process.kill(before, 'SIGKILL');
    await waitFor(
      't3 restarted with a new QEMU',
      () => {
        try {
          return pidOf(id) !== before && alive(pidOf(id)) && vm('t3').status.state === 'running';
        } catch {
          return false;
        }
      },
      120_000,
    );
    const ctx = (
      JSON.parse(readFileSync(path.join(home, 'floe', 'config.json'), 'utf8')) as {
        contexts: { local: { url: string; token: string; ca_file: string } };
      }
    ).contexts.local;
    const client = new FloeClient({ url: ctx.url, token: ctx.token, ca: readFileSync(ctx.ca_file, 'utf8') });
    try {
      const page = await client.request<{ items: Array<{ type: string; data: { event?: string } }> }>(
        'GET',
        '/v1/events',
        { query: { since: 0, resource: id } },
      );
      expect(page.items.some((e) => e.type === 'instance.event' && e.data.event === 'restarted')).toBe(true);
    } finally {
      await client.close();
    }
  }, 300_000);
});
