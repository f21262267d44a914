import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FloeApiError, type ConsoleSession, type FloeClient } from '@floe/client';
import { distinctColours, foregroundShare, RfbClient, type RfbTransport } from '@floe/testkit';
import { run } from '../../packages/cli/src/program.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, eventually, kill, prepareAgent, startAgent } from './helpers.js';

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

/** A plain WebSocket (as noVNC opens one) as an RFB transport: binary frames both ways. */
async function webSocketTransport(url: string, ca: string): Promise<{ io: RfbTransport; ws: WebSocket }> {
  const ws = new WebSocket(url, { ca, perMessageDeflate: false });
  const listeners = new Set<(d: Buffer) => void>();
  ws.on('message', (d, isBinary) => {
    if (isBinary) for (const l of listeners) l(d as Buffer);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    io: {
      write: (d) => ws.send(d, { binary: true }),
      onData: (l) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
    },
  };
}

/** A CLI writer that keeps what it was given. */
class Buf {
  text = '';
  write(s: string | Uint8Array): boolean {
    this.text += typeof s === 'string' ? s : Buffer.from(s).toString('utf8');
    return true;
  }
}

const sessionTransport = (s: ConsoleSession): RfbTransport => ({
  write: (d) => s.write(d),
  onData: (l) => s.onData(l),
});

/**
 * The graphical console and the stats history through the real control plane
 * and a real floe-agent process (fake VM driver, whose VMs show a test picture
 * over RFB), on both stores.
 */
describe.each(storeTargets())('graphical console and stats history through the agent link on $name', (target) => {
  let cp: TestControlPlane;
  let agentDir: string;
  let agent: ReturnType<typeof startAgent>;
  let client: FloeClient;
  let webId: string;

  beforeAll(async () => {
    cp = await startTestControlPlane(await target.open(), {
      FLOE_HEARTBEAT_MS: '300',
      FLOE_HOST_OFFLINE_AFTER_MS: '1500',
    });
    const prepared = await prepareAgent(cp, 'node-vnc');
    agentDir = prepared.dataDir;
    // Sampling every second, so a history builds up while the test runs.
    agent = startAgent(cp.url, agentDir, ['--stats-interval', '1']);
    client = clientFor(cp);
    await eventually(async () => (await client.hosts.get(prepared.hostId)).status.state === 'online', 'host online');
    await client.images.create({ name: 'img' });
    const web = await client.instances.create({ name: 'web', image: 'img', machine_type: 'nano' });
    webId = web.instance.id;
    expect((await client.operations.wait(web.operation.id, { timeoutMs: 15_000 })).status).toBe('succeeded');
    const idle = await client.instances.create({ name: 'idle', image: 'img', machine_type: 'nano', start: false });
    await client.operations.wait(idle.operation.id, { timeoutMs: 15_000 });
  }, 60_000);

  afterAll(async () => {
    if (agent) await kill(agent);
    await cp?.close();
    await client?.close();
    if (agentDir) await rm(agentDir, { recursive: true, force: true });
  });

  it('the graphical console speaks RFB through the client: handshake, then a frame with a picture', async () => {
    const session = await client.instances.vnc('web');
    try {
      const rfb = await RfbClient.connect(sessionTransport(session), 10_000);
      expect(rfb.handshake).toEqual({ version: 'RFB 003.008', securityTypes: [1] });
      expect(rfb.fb.name).toBe('fake web');
      const fb = await rfb.frame(10_000);
      expect(fb.width * fb.height).toBeGreaterThan(0);
      expect(distinctColours(fb)).toBeGreaterThan(1);
      expect(foregroundShare(fb)).toBeGreaterThan(0.05);
    } finally {
      session.close();
    }
    expect((await session.done).code).toBe(1000);
  });

  it('is a plain WebSocket for browsers (noVNC): ?access_token=, by id, binary frames', async () => {
    const url = `${cp.url.replace('https', 'wss')}${client.instances.vncPath(webId)}?access_token=${encodeURIComponent(cp.adminToken)}`;
    const { io, ws } = await webSocketTransport(url, cp.ca.certPem);
    try {
      const rfb = await RfbClient.connect(io, 10_000);
      expect(distinctColours(await rfb.frame(10_000))).toBeGreaterThan(1);
    } finally {
      ws.close();
    }
  });

  it('a stopped VM has no graphical console (409); a plain GET is told to upgrade', async () => {
    const stopped = await failure(client.instances.vnc('idle'));
    expect([stopped.status, stopped.code]).toEqual([409, 'invalid_state']);
    const plain = await failure(client.request('GET', '/v1/instances/web/vnc'));
    expect(plain.code).toBe('validation_failed');
  });

  it('a viewer of the project may read the stats history but not open the graphical console (403)', async () => {
    await client.users.create({ name: 'vnc-viewer', email: 'viewer@example.org' });
    await client.members.add('default', { user: 'vnc-viewer', role: 'viewer' });
    const { secret } = await client.tokens.create({ name: 'vnc-viewer', user: 'vnc-viewer' });
    const viewer = clientFor(cp, secret);
    try {
      const err = await failure(viewer.instances.vnc('web'));
      expect([err.status, err.code]).toEqual([403, 'forbidden']);
      const serial = await failure(viewer.instances.console('web'));
      expect(serial.status).toBe(403);
      expect((await viewer.instances.statsHistory('web')).instance_id).toBe(webId);
    } finally {
      await viewer.close();
    }
  });

  it("another project's caller sees neither (404)", async () => {
    await client.projects.create({ name: 'elsewhere' });
    const { secret } = await client.tokens.create({ name: 'stranger', projects: ['elsewhere'] });
    const stranger = clientFor(cp, secret);
    try {
      for (const ref of ['web', webId]) {
        const errs = await Promise.all([
          failure(stranger.instances.vnc(ref, { project: 'elsewhere' })),
          failure(stranger.instances.statsHistory(ref, { project: 'elsewhere' })),
          failure(stranger.instances.vnc(ref)),
        ]);
        for (const e of errs) expect([e.status, e.code]).toEqual([404, 'instance_not_found']);
      }
    } finally {
      await stranger.close();
    }
  });

  it('the stats history grows every interval, as rates; since= gives only what is new', async () => {
    const history = await eventually(
      async () => {
        const h = await client.instances.statsHistory('web');
        return h.samples.length >= 3 ? h : undefined;
      },
      'three samples',
      20_000,
    );
    expect(history).toMatchObject({ instance_id: webId, interval_seconds: 1, retention_seconds: 3600, vcpus: 1 });
    const [first, ...rest] = history.samples;
    expect(first!.cpu_percent).toBeNull();
    for (const p of rest) {
      // The fake VM's counters grow steadily: 10 µs of CPU, 100 B read, 10 B written, 3 B in, 2 B out per ms.
      expect(p.cpu_percent).toBeCloseTo(1, 0);
      expect(p.disk_read_bytes_per_second).toBeCloseTo(100_000, -4);
      expect(p.disk_write_bytes_per_second).toBeCloseTo(10_000, -3);
      expect(p.net_rx_bytes_per_second).toBeCloseTo(3000, -3);
      expect(p.net_tx_bytes_per_second).toBeCloseTo(2000, -3);
      expect(p.memory_bytes).toBe(64 * 1024 * 1024);
    }
    const times = history.samples.map((p) => Date.parse(p.at));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    const last = history.samples.at(-1)!.at;
    const newer = await eventually(
      async () => {
        const h = await client.instances.statsHistory(webId, { since: last });
        return h.samples.length >= 1 ? h : undefined;
      },
      'a newer sample',
      10_000,
    );
    for (const p of newer.samples) expect(Date.parse(p.at)).toBeGreaterThan(Date.parse(last));
    // The first new point is still a rate: it is measured against the sample before it.
    expect(newer.samples[0]!.cpu_percent).not.toBeNull();
    const bad = await failure(client.request('GET', '/v1/instances/web/stats/history?since=yesterday'));
    expect([bad.status, bad.code]).toEqual([400, 'validation_failed']);
    // A stopped VM has no samples (it has not run while the agent watched), but asking is no error.
    expect((await client.instances.statsHistory('idle')).samples).toEqual([]);

    // The CLI draws it.
    const caFile = path.join(cp.dataDir, 'cli-ca.pem');
    await writeFile(caFile, cp.ca.certPem);
    const out = new Buf();
    const err = new Buf();
    const code = await run(['vm', 'stats', 'web', '--history', '--since', '1h'], {
      stdout: out,
      stderr: err,
      env: {
        FLOE_CONFIG: path.join(cp.dataDir, 'cli.json'),
        FLOE_URL: cp.url,
        FLOE_TOKEN: cp.adminToken,
        FLOE_CA: caFile,
        NO_COLOR: '1',
      },
      stdinIsTTY: false,
    });
    expect(code, err.text).toBe(0);
    expect(out.text).toMatch(/samples every 1 s/);
    expect(out.text).toMatch(/CPU\s+1\.0 %/);
    expect(out.text).toMatch(/[▁▂▃▄▅▆▇█]{2,}/);
  }, 40_000);
});
