import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '@floe/testkit';
import { ROOT } from './helpers.js';

/**
 * The README's first command on an empty data directory, then the CLI against
 * the real control plane and the real local agent (the built packages, as a
 * user runs them).
 */
describe('floe up and the CLI, end to end', () => {
  const data = mkdtempSync(path.join(os.tmpdir(), 'floe-up-data-'));
  const home = mkdtempSync(path.join(os.tmpdir(), 'floe-up-home-'));
  let env: NodeJS.ProcessEnv;
  const cli = path.join(ROOT, 'packages', 'cli', 'dist', 'main.js');

  const floe = (...args: string[]) => {
    const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', timeout: 90_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const json = <T>(...args: string[]): T => {
    const r = floe(...args, '-o', 'json');
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out) as T;
  };

  beforeAll(async () => {
    if (!existsSync(cli) || !existsSync(path.join(ROOT, 'packages', 'server', 'dist', 'main.js'))) {
      const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
      if (build.status !== 0) throw new Error(`build failed: ${build.stdout}${build.stderr}`);
    }
    const port = await freePort();
    env = {
      ...process.env,
      FLOE_DATA: data,
      XDG_CONFIG_HOME: home,
      FLOE_LISTEN: `127.0.0.1:${port}`,
      FLOE_HEARTBEAT_MS: '500',
      NO_COLOR: '1',
    };
    delete env.FLOE_CONFIG;
    delete env.FLOE_URL;
    delete env.FLOE_TOKEN;
    delete env.FLOE_CONTEXT;
  }, 180_000);

  afterAll(() => {
    floe('down', '--data', data);
    rmSync(data, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });

  it('starts from an empty data directory and says what it made', () => {
    const r = floe('up', '--detach', '--driver', 'fake');
    expect(r.code, `${r.out}\n${r.err}`).toBe(0);
    expect(r.out).toMatch(/admin token \(shown once/);
    expect(r.out).toContain('floe is up');
    expect(r.out).toContain('VMs are simulated');
    for (const f of ['floe.db', 'pki/ca.crt', 'pki/ca.key', 'pki/server.crt', 'agent/agent.crt', 'agent/agent.key']) {
      expect(existsSync(path.join(data, f)), f).toBe(true);
    }
    // The token is stored by the CLI, never in clear by the server.
    const config = JSON.parse(readFileSync(path.join(home, 'floe', 'config.json'), 'utf8')) as {
      contexts: { local: { token: string } };
    };
    const token = config.contexts.local.token;
    expect(token).toMatch(/^floe_/);
    const db = readFileSync(path.join(data, 'floe.db'));
    expect(db.includes(Buffer.from(token))).toBe(false);
  }, 120_000);

  it('shows the local host online with its facts', () => {
    const hosts = json<{
      items: Array<{ status: { state: string; facts: { vm_driver: string; kvm: { detail: string } } } }>;
    }>('host', 'ls');
    const list = Array.isArray(hosts) ? hosts : hosts.items;
    expect(list).toHaveLength(1);
    expect(list[0]!.status.state).toBe('online');
    expect(list[0]!.status.facts.vm_driver).toBe('fake');
  });

  it('creates, lists, stops and deletes a simulated VM', () => {
    expect(floe('image', 'create', 'img1').code).toBe(0);
    const created = floe(
      'vm',
      'create',
      't1',
      '--image',
      'img1',
      '--type',
      'nano',
      '--label',
      'env=test',
      '--wait-boot',
      '60',
    );
    expect(created.code, created.err).toBe(0);
    expect(created.out).toContain('first boot of t1 finished');
    const shown = json<{
      name: string;
      status: { state: string; first_boot: { source: string; result: string } };
      labels: Record<string, string>;
    }>('vm', 'show', 't1');
    expect(shown.status.state).toBe('running');
    expect(shown.status.first_boot).toMatchObject({ source: 'config-drive', result: 'ok' });
    // A guest that never fetches its data (the simulated one has no metadata client): --wait-boot says so and fails.
    const silent = floe(
      'vm',
      'create',
      't0',
      '--image',
      'img1',
      '--type',
      'nano',
      '--no-config-drive',
      '--wait-boot',
      '3',
    );
    expect(silent.code, silent.out).toBe(1);
    expect(silent.err).toContain('never fetched its first-boot data from the metadata service at 169.254.169.254');
    expect(silent.err).toContain('first_boot_not_fetched');
    expect(floe('vm', 'rm', 't0', '--yes', '--wait').code).toBe(0);
    expect(shown.labels).toEqual({ env: 'test' });
    const table = floe('vm', 'ls');
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/t1\s+running/);
    expect(floe('vm', 'stop', 't1', '--wait').code).toBe(0);
    expect(json<{ status: { state: string } }>('vm', 'show', 't1').status.state).toBe('stopped');
    const rm = floe('vm', 'rm', 't1', '--yes', '--wait');
    expect(rm.code, rm.err).toBe(0);
    const after = floe('vm', 'show', 't1');
    expect(after.code).toBe(1);
    expect(after.err).toContain('instance_not_found');
  }, 120_000);

  it('exits 2 on usage errors and 1 on API errors', () => {
    expect(floe('vm', 'create').code).toBe(2);
    expect(floe('vm', 'frobnicate').code).toBe(2);
    const bad = floe('vm', 'create', 't2', '--image', 'no-such-image', '--type', 'nano');
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('image_not_found');
    const big = floe('vm', 'create', 't3', '--image', 'img1', '--vcpus', '256', '--memory-mib', '4096');
    expect(big.code).toBe(1);
    expect(big.err).toContain('no_host_capacity');
    const left = json<unknown[] | { items: unknown[] }>('vm', 'ls');
    expect(Array.isArray(left) ? left : left.items).toHaveLength(0);
  });

  it('reuses the data directory on the next start', () => {
    expect(floe('down', '--data', data).code).toBe(0);
    const r = floe('up', '--detach', '--driver', 'fake');
    expect(r.code, `${r.out}\n${r.err}`).toBe(0);
    expect(r.out).not.toMatch(/admin token \(shown once/);
    expect(r.out).toContain('floe is up');
    expect(floe('image', 'show', 'img1').code).toBe(0);
  }, 120_000);
});
