import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { pino, type Logger } from 'pino';
import { AGENT_CLOSE, AGENT_PROTOCOL_VERSION, type AgentMessage, type ControlMessage, type HostFacts } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
// The agent never depends on the server package; only this test borrows its CA to make real certificates.
import { createCa, issueClientCert, issueServerCert, type Pki } from '../../server/src/ca/index.js';
import { backoffDelay } from './backoff.js';
import { AgentLink, agentLinkUrl } from './link.js';
import type { AgentCredentials } from './state.js';

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
  cn: string | null;
  messages: AgentMessage[];
  at: number;
}

// A control plane stand-in: mutual TLS, the agent endpoint, records what arrives.
class TestControlPlane {
  readonly conns: Conn[] = [];
  private https!: Server;
  private wss!: WebSocketServer;
  port = 0;

  constructor(
    private readonly pki: { server: Pki; ca: Pki },
    private readonly heartbeatMs = 50,
  ) {}

  async listen(): Promise<void> {
    this.https = createServer({
      cert: this.pki.server.certPem,
      key: this.pki.server.keyPem,
      ca: [this.pki.ca.certPem],
      requestCert: true,
      rejectUnauthorized: true,
    });
    this.wss = new WebSocketServer({ server: this.https, path: '/v1/agent' });
    this.wss.on('connection', (ws, req) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      const conn: Conn = {
        ws,
        cn: typeof peer.subject?.CN === 'string' ? peer.subject.CN : null,
        messages: [],
        at: Date.now(),
      };
      this.conns.push(conn);
      ws.on('message', (data) => {
        const msg = JSON.parse((data as Buffer).toString()) as AgentMessage;
        conn.messages.push(msg);
        if (msg.type === 'hello') {
          this.send(conn, {
            type: 'welcome',
            host_id: 'host_01JB8X0Q3E6M2T9K4V7W5YB1C3',
            host_name: 'host-a',
            heartbeat_interval_ms: this.heartbeatMs,
          });
        }
      });
    });
    await new Promise<void>((resolve) => this.https.listen(0, '127.0.0.1', resolve));
    this.port = (this.https.address() as AddressInfo).port;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  send(conn: Conn, msg: ControlMessage): void {
    conn.ws.send(JSON.stringify(msg));
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise((r) => this.wss.close(r));
    this.https.closeAllConnections();
    await new Promise((r) => this.https.close(r));
  }
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('AgentLink', () => {
  let ca: Pki;
  let serverPki: Pki;
  let creds: AgentCredentials;
  let otherCa: Pki;

  beforeAll(async () => {
    ca = await createCa();
    otherCa = await createCa({ commonName: 'not floe' });
    serverPki = await issueServerCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const client = await issueClientCert(ca, { commonName: 'host-a' });
    creds = { certPem: client.certPem, keyPem: client.keyPem, caPem: ca.certPem };
  });

  async function plane(pki = { server: serverPki, ca }): Promise<TestControlPlane> {
    const cp = new TestControlPlane(pki);
    await cp.listen();
    cleanups.push(() => cp.close());
    return cp;
  }

  function link(
    server: string,
    extra: { onMessage?: (m: ControlMessage) => void; onRevoked?: (r: string) => void; logger?: Logger } = {},
  ): AgentLink {
    const l = new AgentLink({
      server,
      credentials: creds,
      ...(extra.logger === undefined ? {} : { logger: extra.logger }),
      hello: async () => ({ facts, instances: [] }),
      onMessage: extra.onMessage ?? (() => {}),
      ...(extra.onRevoked === undefined ? {} : { onRevoked: extra.onRevoked }),
      backoff: { initialMs: 200, maxMs: 1000, stableMs: 60_000 },
    });
    cleanups.push(() => l.stop());
    return l;
  }

  it('says hello with its facts over mutual TLS, then sends heartbeats', async () => {
    const cp = await plane();
    const received: ControlMessage[] = [];
    const l = link(cp.url, { onMessage: (m) => received.push(m) });
    l.start();
    await waitFor('hello', () => cp.conns[0]?.messages.length === 1);
    const conn = cp.conns[0]!;
    expect(conn.cn).toBe('host-a');
    expect(conn.messages[0]).toEqual({ type: 'hello', protocol: AGENT_PROTOCOL_VERSION, facts, instances: [] });
    await waitFor('heartbeats', () => conn.messages.filter((m) => m.type === 'heartbeat').length >= 3, 3000);
    const beat = conn.messages.find((m) => m.type === 'heartbeat');
    expect(beat?.type === 'heartbeat' && !Number.isNaN(Date.parse(beat.time))).toBe(true);
    expect(received[0]).toMatchObject({ type: 'welcome', heartbeat_interval_ms: 50 });

    const snapshot: ControlMessage = { type: 'snapshot', desired: { instance: [desiredInstance()] } };
    cp.send(conn, snapshot);
    await waitFor('snapshot', () => received.length === 2);
    expect(received[1]).toEqual(snapshot);
    const networks: ControlMessage = { type: 'desired', kind: 'network', items: [], full: true };
    cp.send(conn, networks);
    await waitFor('networks', () => received.length === 3);
    expect(received[2]).toEqual(networks);

    expect(l.send({ type: 'event', instance_id: 'inst_x', event: 'test', message: 'hi' })).toBe(true);
    await waitFor('event', () => conn.messages.some((m) => m.type === 'event'));
  });

  it('reconnects with backoff after the server closes, and says hello again', async () => {
    const cp = await plane();
    const l = link(cp.url);
    l.start();
    await waitFor('first hello', () => cp.conns[0]?.messages.some((m) => m.type === 'hello') === true);
    const closedAt = Date.now();
    cp.conns[0]!.ws.close(1001, 'going away');
    await waitFor('disconnect', () => !l.connected);
    expect(l.send({ type: 'heartbeat', time: new Date().toISOString() })).toBe(false);
    await waitFor('second hello', () => cp.conns[1]?.messages.some((m) => m.type === 'hello') === true);
    // First retry waits between half and all of initialMs (200 ms).
    expect(cp.conns[1]!.at - closedAt).toBeGreaterThanOrEqual(100);
    expect(cp.conns[1]!.messages[0]?.type).toBe('hello');
    expect(l.connections).toBe(2);

    // A second drop right after: the delay grows.
    const again = Date.now();
    cp.conns[1]!.ws.terminate();
    await waitFor('third hello', () => cp.conns[2]?.messages.some((m) => m.type === 'hello') === true);
    expect(cp.conns[2]!.at - again).toBeGreaterThanOrEqual(200);
  });

  it('stops for good when the control plane revokes the host', async () => {
    const cp = await plane();
    let revoked: string | null = null;
    const l = link(cp.url, { onRevoked: (r) => (revoked = r) });
    l.start();
    await waitFor('hello', () => cp.conns.length === 1 && cp.conns[0]!.messages.length > 0);
    cp.conns[0]!.ws.close(AGENT_CLOSE.revoked, 'host deleted');
    await waitFor('revocation', () => revoked !== null);
    expect(revoked).toBe('host deleted');
    await new Promise((r) => setTimeout(r, 600));
    expect(cp.conns).toHaveLength(1);
  });

  it('refuses a server whose certificate comes from another CA', async () => {
    const strangerServer = await issueServerCert(otherCa, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    // The impostor accepts floe's client certificates; only the agent's check can stop it.
    const cp = await plane({ server: strangerServer, ca });
    const l = link(cp.url);
    l.start();
    await new Promise((r) => setTimeout(r, 700));
    expect(cp.conns).toHaveLength(0);
    expect(l.connected).toBe(false);
    expect(l.connections).toBe(0);
  });

  it('drops a malformed control message, logs it with the host id, and stays up', async () => {
    const cp = await plane();
    const received: ControlMessage[] = [];
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: 'warn' },
      { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
    );
    const l = link(cp.url, { onMessage: (m) => received.push(m), logger });
    l.start();
    await waitFor('welcome', () => received.length === 1);
    const conn = cp.conns[0]!;
    const bad = [
      // An instance change whose item is not an instance.
      { type: 'desired', kind: 'instance', items: [{ id: 'inst_x' }], full: false },
      // A kind this protocol does not have.
      { type: 'desired', kind: 'volume', items: [], full: true },
      // A console without the instance it is for.
      { type: 'console.open', channel: 'ch1' },
      // The old, per-kind message of protocol 1.
      { type: 'networks', networks: [] },
    ];
    for (const m of bad) conn.ws.send(JSON.stringify(m));
    const good: ControlMessage = { type: 'channel.close', channel: 'ch1' };
    cp.send(conn, good);
    await waitFor('the next good message', () => received.length === 2);
    expect(received[1]).toEqual(good);
    const dropped = lines.filter((l) => l.msg === 'dropping a malformed control message');
    expect(dropped.map((d) => [d.host_id, d.type])).toEqual([
      ['host_01JB8X0Q3E6M2T9K4V7W5YB1C3', 'desired'],
      ['host_01JB8X0Q3E6M2T9K4V7W5YB1C3', 'desired'],
      ['host_01JB8X0Q3E6M2T9K4V7W5YB1C3', 'console.open'],
      ['host_01JB8X0Q3E6M2T9K4V7W5YB1C3', 'networks'],
    ]);
    expect(dropped.map((d) => d.error)).toEqual([
      expect.stringContaining('/items/0'),
      '/kind: unknown kind "volume"',
      expect.stringContaining('instance_id'),
      '/type: unknown message type "networks"',
    ]);
    expect(l.connected).toBe(true);
    expect(l.connections).toBe(1);
  });

  it('builds the agent endpoint URL and backoff delays', () => {
    expect(agentLinkUrl('https://floe.example:8443')).toBe('wss://floe.example:8443/v1/agent');
    expect(agentLinkUrl('https://floe.example/base/')).toBe('wss://floe.example/base/v1/agent');
    expect(() => agentLinkUrl('http://floe.example')).toThrow(/https/);
    expect(backoffDelay(0, 250, 30_000, () => 1)).toBe(250);
    expect(backoffDelay(0, 250, 30_000, () => 0)).toBe(125);
    expect(backoffDelay(3, 250, 30_000, () => 1)).toBe(2000);
    expect(backoffDelay(20, 250, 30_000, () => 1)).toBe(30_000);
  });
});
