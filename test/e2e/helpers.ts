import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Event } from '@floe/api';
import { FloeClient } from '@floe/client';
import { prepareAgentDir, type TestControlPlane } from '../../packages/server/src/testing.js';

/** The repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Run a workspace entry point from source (the same code the build ships). */
export function nodeArgs(entry: string, args: string[]): string[] {
  return ['--conditions=floe-source', '--import', 'tsx', path.join(ROOT, entry), ...args];
}

/** Register a host and write an agent data directory for it. */
export function prepareAgent(cp: TestControlPlane, name: string): Promise<{ hostId: string; dataDir: string }> {
  return prepareAgentDir(cp, name);
}

/** A floe-agent process with the fake VM driver. */
export function startAgent(
  server: string,
  dataDir: string,
  extra: string[] = [],
): ChildProcess & { output: () => string } {
  const child = spawn(
    process.execPath,
    nodeArgs('packages/agent/src/main.ts', [
      '--server',
      server,
      '--data',
      dataDir,
      '--driver',
      'fake',
      '--log-level',
      'warn',
      ...extra,
    ]),
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  ) as ChildProcess & { output: () => string };
  let out = '';
  child.stdout!.on('data', (d) => {
    out += String(d);
  });
  child.stderr!.on('data', (d) => {
    out += String(d);
  });
  child.output = () => out;
  return child;
}

/** Kill a process and wait until it is gone. */
export async function kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/** Poll `check` until it returns a value (not undefined/false) or time runs out. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${JSON.stringify(last)}` : ''}`);
}

/** A client for the test control plane. */
export function clientFor(cp: TestControlPlane, token = cp.adminToken): FloeClient {
  return new FloeClient({ url: cp.url, token, ca: cp.ca.certPem });
}

/** Collect events from the SSE stream in the background. */
export function collectEvents(
  client: FloeClient,
  query: Record<string, unknown> = {},
): { events: Event[]; stop: () => void } {
  const events: Event[] = [];
  const ac = new AbortController();
  void (async () => {
    try {
      for await (const e of client.events.stream(query, { signal: ac.signal })) events.push(e);
    } catch {
      // aborted
    }
  })();
  return { events, stop: () => ac.abort() };
}

/** A fake-driver agent registered as `name` and started, once its host is online; stopped again if it never is. */
export async function startOnlineAgent(
  cp: TestControlPlane,
  name: string,
): Promise<{ hostId: string; dataDir: string; agent: ReturnType<typeof startAgent> }> {
  const { hostId, dataDir } = await prepareAgent(cp, name);
  const agent = startAgent(cp.url, dataDir);
  try {
    await eventually(
      async () => (await clientFor(cp).hosts.get(hostId)).status.state === 'online',
      `host ${name} online\n${agent.output()}`,
      60_000,
    );
  } catch (err) {
    await kill(agent);
    throw err;
  }
  return { hostId, dataDir, agent };
}
