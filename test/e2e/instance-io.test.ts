import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { InstanceStats } from '@floe/api';
import { FloeApiError, type ConsoleSession, type FloeClient } from '@floe/client';
import { waitFor } from '@floe/testkit';
import { run } from '../../packages/cli/src/program.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, eventually, kill, nodeArgs, prepareAgent, ROOT, startAgent } from './helpers.js';

/** Bytes a console session has shown so far. */
function collect(session: ConsoleSession): { text: () => string } {
  const chunks: Buffer[] = [];
  session.onData((d) => chunks.push(d));
  return { text: () => Buffer.concat(chunks).toString('utf8') };
}

/** What `p` resolves to, or `fallback` after `ms`. */
async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** The error a promise rejects with. */
async function failure(p: Promise<unknown>): Promise<FloeApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof FloeApiError) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

/** Read a whole log through the client. */
async function readLogs(
  client: FloeClient,
  id: string,
  options: { tailBytes?: number; project?: string } = {},
): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of client.instances.logs(id, options)) parts.push(chunk);
  return Buffer.concat(parts).toString('utf8');
}

/** A CLI writer that keeps what it was given (text or bytes). */
class Buf {
  text = '';
  write(s: string | Uint8Array): boolean {
    this.text += typeof s === 'string' ? s : Buffer.from(s).toString('utf8');
    return true;
  }
}

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

/**
 * Serial console, console log and stats of a VM, end to end: the client (and
 * the CLI) talk to the real control plane, which reaches a real floe-agent
 * process (fake VM driver) over its mutual-TLS link.
 */
describe('console, logs and stats through the agent link', () => {
  let cp: TestControlPlane;
  let agentDir: string;
  let hostId: string;
  let agent: ReturnType<typeof startAgent>;
  let client: FloeClient;
  let tmp: string;
  let caFile: string;
  let webId: string;

  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open(), {
      FLOE_HEARTBEAT_MS: '300',
      FLOE_HOST_OFFLINE_AFTER_MS: '1500',
    });
    ({ hostId, dataDir: agentDir } = await prepareAgent(cp, 'node-io'));
    agent = startAgent(cp.url, agentDir);
    client = clientFor(cp);
    await eventually(async () => (await client.hosts.get(hostId)).status.state === 'online', 'host online');
    await client.images.create({ name: 'img' });
    const web = await client.instances.create({ name: 'web', image: 'img', machine_type: 'nano' });
    webId = web.instance.id;
    expect((await client.operations.wait(web.operation.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
    const idle = await client.instances.create({ name: 'idle', image: 'img', machine_type: 'nano', start: false });
    await client.operations.wait(idle.operation.id, { timeoutMs: 15_000 });
    tmp = await mkdtemp(path.join(os.tmpdir(), 'floe-io-'));
    caFile = path.join(tmp, 'ca.pem');
    await writeFile(caFile, cp.ca.certPem);
  }, 60_000);

  afterAll(async () => {
    // The control plane first: it ends any stream a failed test left open, so the client can close.
    if (agent) await kill(agent);
    await cp?.close();
    await client?.close();
    if (agentDir) await rm(agentDir, { recursive: true, force: true });
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('logs of a running VM hold its boot output', async () => {
    const log = await readLogs(client, 'web');
    expect(log).toContain('FLOE-FAKE READY web');
    const tail = await readLogs(client, webId, { tailBytes: 10 });
    expect(tail).toBe(log.slice(-10));
  });

  it('a console echoes what is typed; round trips are measured', async () => {
    const session = await client.instances.console('web');
    const seen = collect(session);
    session.write('hello-console\r\n');
    await waitFor('echo', () => seen.text().includes('hello-console'), { intervalMs: 2 });
    // Round-trip latency: type a fresh marker, take the time when its echo arrives, many times.
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const marker = `m${i}-${randomBytes(4).toString('hex')}`;
      let echoed = '';
      const back = new Promise<bigint>((resolve) => {
        const off = session.onData((d) => {
          echoed += d.toString('utf8');
          if (echoed.includes(marker)) {
            off();
            resolve(process.hrtime.bigint());
          }
        });
      });
      const t0 = process.hrtime.bigint();
      session.write(`${marker}\r\n`);
      const t1 = await within(back, 5000, null);
      if (t1 === null) throw new Error(`no echo of marker ${i}`);
      times.push(Number(t1 - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    const p = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(2);
    console.log(
      `[floe] console round trip client → control plane → agent → driver → back: median ${p(0.5)} ms, p95 ${p(0.95)} ms, max ${p(1)} ms (${times.length} sequential samples)`,
    );
    expect(times.length).toBe(50);
    session.close();
    const end = await session.done;
    expect(end.error).toBeNull();
    expect(end.code).toBe(1000);
  });

  it('logs --follow receives new output until the client goes', async () => {
    const ac = new AbortController();
    const parts: Buffer[] = [];
    const follower = (async () => {
      for await (const chunk of client.instances.logs('web', { follow: true, signal: ac.signal })) parts.push(chunk);
    })();
    const text = () => Buffer.concat(parts).toString('utf8');
    try {
      await waitFor('history', () => text().includes('FLOE-FAKE READY web'), { intervalMs: 2 });
      const session = await client.instances.console('web');
      session.write('followed-line\r\n');
      await waitFor('followed output', () => text().includes('followed-line'), { intervalMs: 2 });
      session.close();
      // Written once, shown once.
      expect(text().split('followed-line').length).toBe(2);
    } finally {
      ac.abort();
    }
    await follower; // ends quietly on abort
  });

  it('stats of a running VM are numbers that grow', async () => {
    const a: InstanceStats = await client.instances.stats('web');
    await new Promise((r) => setTimeout(r, 30));
    const b = await client.instances.stats(webId);
    expect(typeof a.cpu_time_ns).toBe('number');
    expect(b.cpu_time_ns!).toBeGreaterThan(a.cpu_time_ns!);
    expect(b.disk_read_bytes!).toBeGreaterThan(a.disk_read_bytes!);
    expect(a.memory_bytes).toBeGreaterThan(0);
    expect(Date.parse(b.at)).toBeGreaterThanOrEqual(Date.parse(a.at));
  });

  it('a stopped VM has no console and no stats (409), but its log can be read', async () => {
    const con = await failure(client.instances.console('idle'));
    expect([con.status, con.code]).toEqual([409, 'invalid_state']);
    const st = await failure(client.instances.stats('idle'));
    expect([st.status, st.code]).toEqual([409, 'invalid_state']);
    expect(await readLogs(client, 'idle')).toBe('');
  });

  it("another project's token sees none of it (404)", async () => {
    await client.projects.create({ name: 'other' });
    const { secret } = await client.tokens.create({ name: 'other-user', projects: ['other'] });
    const stranger = clientFor(cp, secret);
    try {
      for (const ref of ['web', webId]) {
        const errs = await Promise.all([
          failure(stranger.instances.console(ref, { project: 'other' })),
          failure(readLogs(stranger, ref, { project: 'other' })),
          failure(stranger.instances.stats(ref, { project: 'other' })),
        ]);
        for (const e of errs) expect([e.status, e.code]).toEqual([404, 'instance_not_found']);
      }
      const byDefault = await failure(stranger.instances.stats('web', { project: 'default' }));
      expect(byDefault.status).toBe(404);
    } finally {
      await stranger.close();
    }
  });

  it('speaks plain WebSocket: binary frames, ?access_token= for browsers, 401 without a token', async () => {
    const base = `${cp.url.replace('https', 'wss')}/v1/instances/web/console`;
    const ws = new WebSocket(`${base}?access_token=${encodeURIComponent(cp.adminToken)}`, { ca: cp.ca.certPem });
    const got: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => resolve());
      ws.on('error', reject);
    });
    ws.on('message', (d, isBinary) => {
      if (isBinary) got.push(d as Buffer);
    });
    ws.send(Buffer.from('raw-frame\r\n'));
    await waitFor('raw echo', () => Buffer.concat(got).toString().includes('raw-frame'), { intervalMs: 2 });
    ws.close();
    const status = await new Promise<number>((resolve) => {
      const anon = new WebSocket(base, { ca: cp.ca.certPem });
      anon.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      anon.on('open', () => resolve(101));
      anon.on('error', () => resolve(-1));
    });
    expect(status).toBe(401);
    // A plain GET is told to upgrade.
    const plain = await failure(client.request('GET', '/v1/instances/web/console'));
    expect(plain.code).toBe('validation_failed');
  });

  it('drops a console whose client stops reading instead of buffering without bound', async () => {
    // A VM of its own: the flood fills its console log.
    const noisy = await client.instances.create({ name: 'noisy', image: 'img', machine_type: 'nano' });
    expect((await client.operations.wait(noisy.operation.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
    const ws = new WebSocket(`${cp.url.replace('https', 'wss')}/v1/instances/noisy/console`, {
      ca: cp.ca.certPem,
      headers: { authorization: `Bearer ${cp.adminToken}` },
    });
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => resolve());
      ws.on('error', reject);
    });
    let received = 0;
    let error: { code?: string } | undefined;
    ws.on('message', (d, isBinary) => {
      if (isBinary) received += (d as Buffer).length;
      else error = (JSON.parse((d as Buffer).toString()) as { error: { code: string } }).error;
    });
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    // Stop reading, then type far more than the server may queue; the fake guest echoes all of it.
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const block = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    // Paced, so the host keeps up with the input and only the output towards this client piles up.
    for (let i = 0; i < 120 && ws.readyState === WebSocket.OPEN; i++) {
      ws.send(block);
      sent += block.length;
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 1000));
    (ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const code = await within(closed, 10_000, -1);
    if (code === -1) ws.terminate();
    expect(code).toBe(4503);
    expect(error?.code).toBe('stream_overflow');
    expect(received).toBeLessThan(sent);
  }, 30_000);

  it('the CLI prints logs and stats', async () => {
    const env = {
      FLOE_CONFIG: path.join(tmp, 'config.json'),
      FLOE_URL: cp.url,
      FLOE_TOKEN: cp.adminToken,
      FLOE_CA: caFile,
      NO_COLOR: '1',
    };
    const floe = async (...argv: string[]) => {
      const out = new Buf();
      const err = new Buf();
      const code = await run(argv, { stdout: out, stderr: err, env, stdinIsTTY: false });
      return { code, out: out.text, err: err.text };
    };
    const logs = await floe('vm', 'logs', 'web');
    expect(logs.code, logs.err).toBe(0);
    expect(logs.out).toContain('FLOE-FAKE READY web');
    const tail = await floe('vm', 'logs', 'web', '--tail', '8');
    expect(tail.out).toBe(logs.out.slice(-8));
    const stats = await floe('vm', 'stats', 'web');
    expect(stats.code, stats.err).toBe(0);
    expect(stats.out).toMatch(/CPU TIME\s+MEMORY\s+DISK READ\s+DISK WRITE\s+NET RX\s+NET TX/);
    expect(stats.out).toContain('64.0 MiB / 256.0 MiB');
    const json = await floe('vm', 'stats', 'web', '-o', 'json');
    expect((JSON.parse(json.out) as InstanceStats).cpu_time_ns).toBeGreaterThan(0);
    const stopped = await floe('vm', 'stats', 'idle');
    expect(stopped.code).toBe(1);
    expect(stopped.err).toContain('(invalid_state)');
  });

  it('floe vm console pipes stdin to the console and stdout back, and exits at EOF', async () => {
    const env = {
      ...process.env,
      FLOE_CONFIG: path.join(tmp, 'config.json'),
      FLOE_URL: cp.url,
      FLOE_TOKEN: cp.adminToken,
      FLOE_CA: caFile,
      NO_COLOR: '1',
    };
    const child = spawn(
      process.execPath,
      nodeArgs('packages/cli/src/main.ts', ['vm', 'console', 'web', '--linger', '300']),
      { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (err += String(d)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.stdin.end('from-the-cli\r\n');
    const code = await within(exited, 20_000, 'timeout');
    if (code === 'timeout') await kill(child);
    expect(code, err).toBe(0);
    expect(out).toContain('from-the-cli');
  }, 30_000);

  it('when the agent goes away, open streams end and new ones answer 503 host_offline', async () => {
    const session = await client.instances.console('web');
    const ac = new AbortController();
    const follow = (async () => {
      const parts: Buffer[] = [];
      for await (const chunk of client.instances.logs('web', { follow: true, signal: ac.signal })) parts.push(chunk);
      return Buffer.concat(parts).toString('utf8');
    })();
    await new Promise((r) => setTimeout(r, 200));
    await kill(agent, 'SIGKILL');
    const end = await session.done;
    expect(end.code).toBe(4503);
    expect(end.error?.code).toBe('host_offline');
    // The follow response ends (the host is gone); what came before is intact.
    expect(await follow).toContain('FLOE-FAKE READY web');
    for (const attempt of [
      () => client.instances.console('web'),
      () => readLogs(client, 'web'),
      () => client.instances.stats('web'),
    ]) {
      const e = await failure(attempt());
      expect([e.status, e.code]).toEqual([503, 'host_offline']);
    }
  });
});
