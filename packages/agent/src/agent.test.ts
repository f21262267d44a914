import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { AGENT_CLOSE, type AgentMessage, type ControlMessage, type HostFacts, type ObservedInstance } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { FakeVmDriver } from './drivers/vm/fake.js';
import { FakeVpnDriver } from './drivers/vpn/fake.js';
// The agent never depends on the server package; only this test borrows its CA to make real certificates.
import { createCa, issueClientCert, issueServerCert, type Pki } from '../../server/src/ca/index.js';
import { Agent } from './agent.js';
import { AgentState } from './state.js';

const HOST_ID = 'host_01JB8X0Q3E6M2T9K4V7W5YB1C3';

const facts: HostFacts = {
  hostname: 'test-host',
  agent_version: '0.1.0',
  arch: 'x86_64',
  kernel: '6.1.0',
  cpus: 2,
  memory_mib: 2048,
  disk_free_gib: 10,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'no /dev/kvm and no QEMU' },
  accelerator: 'none',
  wireguard_kernel: false,
  vm_driver: 'fake',
};

interface Conn {
  ws: WebSocket;
  messages: AgentMessage[];
  closed: boolean;
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function statusesOf(conn: Conn | undefined, id: string): ObservedInstance[] {
  return (conn?.messages ?? []).flatMap((m) => (m.type === 'status' && m.instance.id === id ? [m.instance] : []));
}

describe('Agent', () => {
  let ca: Pki;
  let https: Server;
  let wss: WebSocketServer;
  let url: string;
  let dir: string;
  const conns: Conn[] = [];

  beforeAll(async () => {
    ca = await createCa();
    const serverPki = await issueServerCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    https = createServer({
      cert: serverPki.certPem,
      key: serverPki.keyPem,
      ca: [ca.certPem],
      requestCert: true,
      rejectUnauthorized: true,
    });
    wss = new WebSocketServer({ server: https, path: '/v1/agent' });
    wss.on('connection', (ws) => {
      const conn: Conn = { ws, messages: [], closed: false };
      conns.push(conn);
      ws.on('close', () => (conn.closed = true));
      ws.on('message', (data) => {
        const msg = JSON.parse((data as Buffer).toString()) as AgentMessage;
        conn.messages.push(msg);
        if (msg.type === 'hello') {
          const welcome: ControlMessage = {
            type: 'welcome',
            host_id: HOST_ID,
            host_name: 'host-a',
            heartbeat_interval_ms: 1000,
          };
          ws.send(JSON.stringify(welcome));
        }
      });
    });
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(https.address() as AddressInfo).port}`;
    dir = await mkdtemp(join(tmpdir(), 'floe-agent-'));
  });

  afterAll(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise((r) => wss.close(r));
    https.closeAllConnections();
    await new Promise((r) => https.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  async function joinedDataDir(name: string): Promise<string> {
    const dataDir = join(dir, name);
    const client = await issueClientCert(ca, { commonName: 'host-a' });
    const state = new AgentState(dataDir);
    await state.writeCredentials({ keyPem: client.keyPem, certPem: client.certPem, caPem: ca.certPem });
    await state.writeConfig({ server: url, host_name: 'host-a' });
    return dataDir;
  }

  const send = (conn: Conn, msg: ControlMessage) => conn.ws.send(JSON.stringify(msg));

  it('runs what the snapshot asks, says so again after a reconnect, and leaves VMs running when stopped', async () => {
    const dataDir = await joinedDataDir('run');
    const stateDir = join(dataDir, 'fake');
    const first = conns.length;
    const agent = new Agent({
      dataDir,
      driver: new FakeVmDriver({ stateDir }),
      facts: async () => facts,
      linkBackoff: { initialMs: 50, maxMs: 200 },
    });
    await agent.start();
    await waitFor('hello', () => conns[first]?.messages[0]?.type === 'hello');
    expect(conns[first]!.messages[0]).toMatchObject({ type: 'hello', facts, instances: [] });
    await waitFor('agent.json update', () => agent.hostId === HOST_ID);
    expect((await new AgentState(dataDir).readConfig())?.host_id).toBe(HOST_ID);

    const vm = desiredInstance({ generation: 4 });
    send(conns[first]!, { type: 'snapshot', desired: { instance: [vm] } });
    await waitFor('running', () => statusesOf(conns[first], vm.id).at(-1)?.state === 'running');
    expect(statusesOf(conns[first], vm.id).map((s) => s.state)).toEqual(['creating', 'starting', 'running']);

    conns[first]!.ws.terminate();
    await waitFor('hello again', () => conns[first + 1]?.messages[0]?.type === 'hello');
    const hello = conns[first + 1]!.messages[0];
    expect(hello?.type === 'hello' && hello.instances).toEqual([
      expect.objectContaining({ id: vm.id, state: 'running', observed_generation: 4, accelerator: 'fake' }),
    ]);

    await agent.stop();
    expect(await agent.done).toEqual({ reason: 'stopped' });
    await waitFor('link closed', () => conns[first + 1]!.closed);
    const after = new FakeVmDriver({ stateDir });
    expect((await after.inspect(vm.id))?.state).toBe('running');
    await after.close();
  });

  it('answers vpn.stats.get from its VPN interfaces, and says so when it runs no gateway', async () => {
    const vpnAgent = async (name: string, vpn: FakeVpnDriver | undefined) => {
      const dataDir = await joinedDataDir(name);
      const first = conns.length;
      const agent = new Agent({
        dataDir,
        driver: new FakeVmDriver({ stateDir: join(dataDir, 'fake') }),
        ...(vpn === undefined ? {} : { vpn }),
        facts: async () => facts,
        linkBackoff: { initialMs: 50, maxMs: 200 },
      });
      await agent.start();
      await waitFor('hello', () => conns[first]?.messages[0]?.type === 'hello');
      return { agent, conn: conns[first]! };
    };
    const answer = async (conn: Conn, id: string) => {
      send(conn, { type: 'vpn.stats.get', request_id: `rq-${id}`, vpn_network_id: id });
      await waitFor('vpn.stats', () =>
        conn.messages.some((m) => m.type === 'vpn.stats' && m.request_id === `rq-${id}`),
      );
      return conn.messages.find((m) => m.type === 'vpn.stats' && m.request_id === `rq-${id}`);
    };
    const driver = new FakeVpnDriver();
    const gw = await vpnAgent('vpn-gw', driver);
    const key = `${'A'.repeat(43)}=`;
    send(gw.conn, {
      type: 'snapshot',
      desired: {
        instance: [],
        vpn: [
          {
            id: 'vnet_1',
            project: 'p',
            listen_port: 51820,
            private_key: `${'Q'.repeat(43)}=`,
            addresses: ['fd50::1/64'],
            reach: ['fd50::/64'],
            peers: [{ id: 'vpeer_1', public_key: key, allowed_ips: ['fd50::2/128'] }],
          },
        ],
      },
    });
    await waitFor('the interface', () => driver.interfaces.size === 1);
    expect(await answer(gw.conn, 'vnet_1')).toEqual({
      type: 'vpn.stats',
      request_id: 'rq-vnet_1',
      vpn_network_id: 'vnet_1',
      peers: [{ public_key: key, endpoint: null, latest_handshake: 0, rx_bytes: 0, tx_bytes: 0 }],
    });
    expect(await answer(gw.conn, 'vnet_2')).toMatchObject({ error: { code: 'invalid_state' } });
    await gw.agent.stop();
    const plain = await vpnAgent('vpn-none', undefined);
    expect(await answer(plain.conn, 'vnet_1')).toMatchObject({
      error: { code: 'invalid_state', message: expect.stringContaining('no VPN gateway') as string },
    });
    await plain.agent.stop();
  });

  it('stops for good when the control plane revokes the host, VMs untouched', async () => {
    const dataDir = await joinedDataDir('revoked');
    const stateDir = join(dataDir, 'fake');
    const driver = new FakeVmDriver({ stateDir });
    const vm = desiredInstance();
    await driver.create(vm);
    await driver.start(vm.id);
    const first = conns.length;
    const agent = new Agent({ dataDir, driver, facts: async () => facts, linkBackoff: { initialMs: 50, maxMs: 200 } });
    await agent.start();
    await waitFor('hello', () => conns[first]?.messages[0]?.type === 'hello');
    conns[first]!.ws.close(AGENT_CLOSE.revoked, 'host deleted');
    expect(await agent.done).toEqual({ reason: 'revoked', message: 'host deleted' });
    await new Promise((r) => setTimeout(r, 300));
    expect(conns.length).toBe(first + 1);
    expect((await new FakeVmDriver({ stateDir }).inspect(vm.id))?.state).toBe('running');
  });

  it('refuses to start before joining', async () => {
    const agent = new Agent({ dataDir: join(dir, 'empty'), driver: new FakeVmDriver(), facts: async () => facts });
    await expect(agent.start()).rejects.toThrow(/not joined/);
  });

  it('floe-agent exits 0 on SIGTERM and leaves its VMs running', async () => {
    const dataDir = await joinedDataDir('main');
    const first = conns.length;
    const main = fileURLToPath(new URL('./main.ts', import.meta.url));
    const child = spawn(
      process.execPath,
      [
        '--conditions=floe-source',
        '--import',
        'tsx',
        main,
        '--data',
        dataDir,
        '--driver',
        'fake',
        '--log-level',
        'info',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('hello from floe-agent', () => conns[first]?.messages[0]?.type === 'hello', 20_000);
      const hello = conns[first]!.messages[0];
      expect(hello?.type === 'hello' && hello.facts.vm_driver).toBe('fake');
      const vm = desiredInstance();
      send(conns[first]!, { type: 'snapshot', desired: { instance: [vm] } });
      await waitFor('running', () => statusesOf(conns[first], vm.id).at(-1)?.state === 'running');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stderr).toBe('');
      const lines = stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { msg: string; level: number });
      expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['agent started', 'agent stopped']));
      expect((await new FakeVmDriver({ stateDir: join(dataDir, 'fake') }).inspect(vm.id))?.state).toBe('running');
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);
});
