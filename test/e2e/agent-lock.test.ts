import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FloeClient } from '@floe/client';
import { probeInstanceLock } from '@floe/process';
import { freePort } from '@floe/testkit';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { ROOT, clientFor, eventually, kill, prepareAgent, startAgent } from './helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** One floe-agent per data directory: real agent processes on a real control plane. */
describe('one agent per data directory', () => {
  const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;
  let cp: TestControlPlane;
  let dataDir: string;
  let hostId: string;
  const agents: ChildProcess[] = [];

  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open(), {
      FLOE_HEARTBEAT_MS: '300',
      FLOE_HOST_OFFLINE_AFTER_MS: '1500',
    });
    ({ hostId, dataDir } = await prepareAgent(cp, 'lock-a'));
  });

  afterAll(async () => {
    for (const a of agents) await kill(a);
    await cp?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses a second agent naming the first one, and takes over after the first is killed -9', async () => {
    const client = clientFor(cp);
    const first = startAgent(cp.url, dataDir);
    agents.push(first);
    await eventually(async () => (await client.hosts.get(hostId)).status.state === 'online', 'host online');
    const connectedAt = (await client.hosts.get(hostId)).status.connected_at;

    const second = startAgent(cp.url, dataDir);
    agents.push(second);
    expect(await exited(second)).toBe(4);
    expect(second.output()).toContain(`another floe-agent (pid ${first.pid}) is already running`);
    // The first one kept its link all along.
    await sleep(1000);
    const host = await client.hosts.get(hostId);
    expect(host.status.state).toBe('online');
    expect(host.status.connected_at).toBe(connectedAt);

    // kill -9 leaves the socket file behind; the kernel has let go of it, so the next agent takes it.
    await kill(first, 'SIGKILL');
    expect(existsSync(path.join(dataDir, 'agent.lock'))).toBe(true);
    expect(await probeInstanceLock(dataDir, 'agent')).toBeNull();
    const third = startAgent(cp.url, dataDir);
    agents.push(third);
    await eventually(async () => (await probeInstanceLock(dataDir, 'agent'))?.pid === third.pid, 'third holds lock');
    await eventually(async () => {
      const h = await client.hosts.get(hostId);
      return h.status.state === 'online' && h.status.connected_at !== connectedAt;
    }, 'host online through the third agent');
    expect(third.exitCode).toBeNull();
  }, 60_000);
});

/** `floe up` after its control plane was killed -9 keeps the agent that still runs. */
describe('floe up after a crash of the control plane', () => {
  const data = mkdtempSync(path.join(os.tmpdir(), 'floe-lock-'));
  const home = mkdtempSync(path.join(os.tmpdir(), 'floe-lock-home-'));
  const cli = path.join(ROOT, 'packages', 'cli', 'dist', 'main.js');
  let env: NodeJS.ProcessEnv;
  const floe = (...args: string[]) => {
    const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8', timeout: 90_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const pidOf = (name: string) => Number(readFileSync(path.join(data, 'run', `${name}.pid`), 'utf8').trim());

  beforeAll(async () => {
    if (!existsSync(cli) || !existsSync(path.join(ROOT, 'packages', 'agent', 'dist', 'main.js'))) {
      const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
      if (build.status !== 0) throw new Error(`build failed: ${build.stdout}${build.stderr}`);
    }
    env = {
      ...process.env,
      FLOE_DATA: data,
      XDG_CONFIG_HOME: home,
      FLOE_LISTEN: `127.0.0.1:${await freePort()}`,
      FLOE_HEARTBEAT_MS: '300',
      FLOE_HOST_OFFLINE_AFTER_MS: '1500',
      NO_COLOR: '1',
    };
    for (const k of ['FLOE_CONFIG', 'FLOE_URL', 'FLOE_TOKEN', 'FLOE_CONTEXT']) delete env[k];
  }, 180_000);

  afterAll(() => {
    floe('down', '--data', data);
    rmSync(data, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });

  it('reuses the running agent, says so, and the host stays online', async () => {
    const first = floe('up', '--detach', '--driver', 'fake');
    expect(first.code, `${first.out}\n${first.err}`).toBe(0);
    const agentPid = pidOf('agent');
    process.kill(pidOf('floed'), 'SIGKILL');
    await eventually(async () => !alive(pidOf('floed')), 'floed gone');
    expect(alive(agentPid)).toBe(true);

    const again = floe('up', '--detach', '--driver', 'fake');
    expect(again.code, `${again.out}\n${again.err}`).toBe(0);
    expect(again.err).toContain(
      `the local agent is already running (pid ${agentPid}); using it instead of starting another`,
    );
    expect(again.out).toContain('floe is up');
    expect(pidOf('agent')).toBe(agentPid);
    expect((await probeInstanceLock(path.join(data, 'agent'), 'agent'))?.pid).toBe(agentPid);

    // No second agent fights for the link: the host keeps one connection, online, for several heartbeats.
    const config = JSON.parse(readFileSync(path.join(home, 'floe', 'config.json'), 'utf8')) as {
      contexts: { local: { url: string; token: string; ca_file: string } };
    };
    const { url, token, ca_file } = config.contexts.local;
    const client = new FloeClient({ url, token, ca: readFileSync(ca_file, 'utf8') });
    try {
      const [host] = (await client.hosts.list()).items;
      const connectedAt = host!.status.connected_at;
      for (let i = 0; i < 10; i++) {
        await sleep(300);
        const h = await client.hosts.get(host!.id);
        expect(h.status.state).toBe('online');
        expect(h.status.connected_at).toBe(connectedAt);
      }
    } finally {
      await client.close();
    }
    expect(floe('down', '--data', data).code).toBe(0);
    await eventually(async () => !alive(agentPid), 'agent stopped by floe down');
  }, 180_000);
});
