import { X509Certificate } from 'node:crypto';
import { AGENT_CLOSE, AGENT_PROTOCOL_VERSION, type ControlMessage, type HostFacts } from '@floe/api';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { issueClientCert } from './ca/index.js';
import { storeTargets } from './db/testing.js';
import { startTestControlPlane, type TestControlPlane } from './testing.js';

// The hub checks every agent message against its schema over a real agent link (mutual TLS
// on loopback): a malformed one closes the link with the protocol close code and is logged
// with the host's id.

const FACTS: HostFacts = {
  hostname: 'test',
  agent_version: '0.0.0',
  arch: 'x86_64',
  kernel: '6.1.0',
  cpus: 4,
  memory_mib: 8192,
  disk_free_gib: 100,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'test host' },
  accelerator: 'tcg',
  wireguard_kernel: false,
  vm_driver: 'fake',
};

interface RawAgent {
  hostId: string;
  ws: WebSocket;
  messages: ControlMessage[];
  closed: Promise<{ code: number; reason: string }>;
}

/** A hand-driven agent: says hello, waits for its snapshot, then sends whatever a test wants. */
async function connect(cp: TestControlPlane, name: string): Promise<RawAgent> {
  let cert: { certPem: string; keyPem: string } | undefined;
  const { id } = await cp.app.services.hosts.ensureLocal(name, async (hostId) => {
    cert = await issueClientCert(cp.ca, { commonName: hostId });
    return { serial: new X509Certificate(cert.certPem).serialNumber };
  });
  const ws = new WebSocket(`${cp.url.replace('https', 'wss')}/v1/agent`, {
    ca: cp.ca.certPem,
    cert: cert!.certPem,
    key: cert!.keyPem,
  });
  const messages: ControlMessage[] = [];
  ws.on('message', (data) => messages.push(JSON.parse((data as Buffer).toString()) as ControlMessage));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'hello', protocol: AGENT_PROTOCOL_VERSION, facts: FACTS, instances: [] }));
  const deadline = Date.now() + 20_000;
  while (!messages.some((m) => m.type === 'snapshot')) {
    if (Date.now() > deadline) throw new Error(`no snapshot; got ${messages.map((m) => m.type).join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { hostId: id, ws, messages, closed };
}

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

describe('agent hub', () => {
  let cp: TestControlPlane;
  const open: WebSocket[] = [];
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open());
  });
  afterEach(() => {
    for (const ws of open.splice(0)) ws.terminate();
    vi.restoreAllMocks();
  });
  afterAll(async () => {
    await cp?.close();
  });

  it('sends the snapshot by kind: every kind a provider serves, as whole sets', async () => {
    const agent = await connect(cp, 'node-snap');
    open.push(agent.ws);
    expect(agent.messages.map((m) => m.type)).toEqual(['welcome', 'snapshot']);
    expect(agent.messages[1]).toEqual({
      type: 'snapshot',
      desired: { instance: [], network: [], security_group: [], vpn: [] },
    });
  });

  it('closes the link on a malformed agent message and logs it with the host id', async () => {
    const agent = await connect(cp, 'node-bad');
    open.push(agent.ws);
    const warn = vi.spyOn(cp.app.http.log, 'warn');
    // A well-formed message first: the link stays up.
    agent.ws.send(JSON.stringify({ type: 'heartbeat', time: new Date().toISOString() }));
    agent.ws.send(
      JSON.stringify({
        type: 'status',
        instance: {
          id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3',
          state: 'flying',
          observed_revision: 1,
          observed_generation: 1,
          observed_restart_generation: 0,
          reason: null,
          accelerator: null,
          started_at: null,
          stopped_at: null,
        },
      }),
    );
    expect(await agent.closed).toEqual({ code: AGENT_CLOSE.protocol, reason: 'malformed message' });
    const refusals = warn.mock.calls.filter((c) => c[1] === 'refusing a malformed agent message; closing the link');
    expect(refusals).toEqual([
      [
        { hostId: agent.hostId, type: 'status', error: expect.stringContaining('/instance/state') as string },
        'refusing a malformed agent message; closing the link',
      ],
    ]);
  });

  it('refuses malformed channel messages the same way', async () => {
    const agent = await connect(cp, 'node-chan');
    open.push(agent.ws);
    const warn = vi.spyOn(cp.app.http.log, 'warn');
    agent.ws.send(JSON.stringify({ type: 'channel.closed', channel: 'ch1', error: { code: 404 } }));
    expect((await agent.closed).code).toBe(AGENT_CLOSE.protocol);
    expect(warn).toHaveBeenCalledWith(
      { hostId: agent.hostId, type: 'channel.closed', error: expect.stringContaining('/error/') as string },
      'refusing a malformed agent message; closing the link',
    );
  });

  it('refuses text that is not JSON, and unknown message types', async () => {
    for (const [name, text, error] of [
      ['node-json', '{"type": "heartbeat"', 'not JSON'],
      ['node-type', JSON.stringify({ type: 'instance', instance: {} }), '/type: unknown message type "instance"'],
    ] as const) {
      const agent = await connect(cp, name);
      open.push(agent.ws);
      const warn = vi.spyOn(cp.app.http.log, 'warn');
      agent.ws.send(text);
      expect((await agent.closed).code).toBe(AGENT_CLOSE.protocol);
      expect(warn).toHaveBeenCalledWith(
        expect.objectContaining({ hostId: agent.hostId, error }),
        'refusing a malformed agent message; closing the link',
      );
      warn.mockRestore();
    }
  });
});
