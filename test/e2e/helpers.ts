import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Event } from '@floe/api';
import { FloeClient } from '@floe/client';
import { certificateSerial, issueClientCert } from '../../packages/server/src/ca/index.js';
import type { TestControlPlane } from '../../packages/server/src/testing.js';

/** The repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Run a workspace entry point from source (the same code the build ships). */
export function nodeArgs(entry: string, args: string[]): string[] {
  return ['--conditions=floe-source', '--import', 'tsx', path.join(ROOT, entry), ...args];
}

/** Register a host and write an agent data directory for it, as `floed init` does for the local host. */
export async function prepareAgent(cp: TestControlPlane, name: string): Promise<{ hostId: string; dataDir: string }> {
  let certPem = '';
  let keyPem = '';
  const { id } = await cp.app.services.hosts.ensureLocal(name, async (hostId) => {
    const cert = await issueClientCert(cp.ca, { commonName: hostId });
    certPem = cert.certPem;
    keyPem = cert.keyPem;
    return { serial: certificateSerial(cert.certPem) };
  });
  const dataDir = await mkdtemp(path.join(os.tmpdir(), `floe-agent-${name}-`));
  await mkdir(dataDir, { recursive: true });
  await writeFile(path.join(dataDir, 'agent.key'), keyPem, { mode: 0o600 });
  await writeFile(path.join(dataDir, 'agent.crt'), certPem);
  await writeFile(path.join(dataDir, 'ca.crt'), cp.ca.certPem);
  await writeFile(path.join(dataDir, 'agent.json'), JSON.stringify({ server: cp.url, host_id: id, host_name: name }));
  return { hostId: id, dataDir };
}

/** A floe-agent process with the fake VM driver. */
export function startAgent(server: string, dataDir: string, extra: string[] = []): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, nodeArgs('packages/agent/src/main.ts', ['--server', server, '--data', dataDir, '--driver', 'fake', '--log-level', 'warn', ...extra]), {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & { output: () => string };
  let out = '';
  child.stdout!.on('data', (d) => { out += String(d); });
  child.stderr!.on('data', (d) => { out += String(d); });
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
export async function eventually<T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 15_000): Promise<T> {
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
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** A client for the test control plane. */
export function clientFor(cp: TestControlPlane, token = cp.adminToken): FloeClient {
  return new FloeClient({ url: cp.url, token, ca: cp.ca.certPem });
}

/** Collect events from the SSE stream in the background. */
export function collectEvents(client: FloeClient, query: Record<string, unknown> = {}): { events: Event[]; stop: () => void } {
  const events: Event[] = [];
  const ac = new AbortController();
  void (async () => {
    try {
      for await (const e of client.events.stream(query as never, { signal: ac.signal })) events.push(e);
    } catch {
      // aborted
    }
  })();
  return { events, stop: () => ac.abort() };
}
