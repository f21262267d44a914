import { X509Certificate } from 'node:crypto';
import {
  AGENT_PROTOCOL_VERSION,
  type ControlMessage,
  type DesiredItem,
  type DesiredKind,
  type DesiredNetwork,
  type HostFacts,
} from '@floe/api';
import WebSocket from 'ws';
import { issueClientCert } from './ca/index.js';
import type { TestControlPlane } from './testing.js';

/*
 * A stand-in agent for tests of what the control plane sends over a real agent link (mutual TLS on
 * loopback): it says hello and records every message.
 */

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

/** A stand-in agent: says hello and records what the control plane sends. */
export class FakeAgent {
  readonly messages: ControlMessage[] = [];
  constructor(
    readonly hostId: string,
    private readonly ws: WebSocket,
  ) {
    ws.on('message', (data) => this.messages.push(JSON.parse((data as Buffer).toString()) as ControlMessage));
  }

  static async connect(
    cp: TestControlPlane,
    name: string,
    underlay: string,
    snapshotWithinMs = 20_000,
  ): Promise<FakeAgent> {
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
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const agent = new FakeAgent(id, ws);
    ws.send(
      JSON.stringify({
        type: 'hello',
        protocol: AGENT_PROTOCOL_VERSION,
        facts: { ...FACTS, hostname: name, underlay_ipv4: underlay },
        instances: [],
      }),
    );
    // Generous: on a loaded machine (the whole suite in parallel) the first snapshot can take seconds.
    await agent.next('snapshot', 0, snapshotWithinMs);
    return agent;
  }

  /** The first message of `type` after `from` (an index into messages), waiting for it. */
  async next<T extends ControlMessage['type']>(
    type: T,
    from = 0,
    timeoutMs = 5000,
  ): Promise<Extract<ControlMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.slice(from).find((x) => x.type === type);
      if (m) return m as Extract<ControlMessage, { type: T }>;
      if (Date.now() > deadline)
        throw new Error(`no ${type} message; got ${this.messages.map((x) => x.type).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The first `desired` message of `kind` after `from`, waiting for it. */
  async desired<K extends DesiredKind>(kind: K, from = 0, timeoutMs = 5000): Promise<DesiredItem<K>[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.slice(from).find((x) => x.type === 'desired' && x.kind === kind);
      if (m?.type === 'desired') return m.items as DesiredItem<K>[];
      if (Date.now() > deadline)
        throw new Error(`no ${kind} message; got ${this.messages.map((x) => x.type).join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Wait until the latest list of networks (snapshot or full `desired`) satisfies `check`. */
  async networks(check: (n: DesiredNetwork[]) => boolean, timeoutMs = 5000): Promise<DesiredNetwork[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = [...this.messages]
        .reverse()
        .find((x) => (x.type === 'desired' && x.kind === 'network' && x.full) || x.type === 'snapshot');
      const list =
        last?.type === 'desired' && last.kind === 'network'
          ? last.items
          : last?.type === 'snapshot'
            ? (last.desired.network ?? [])
            : [];
      if (check(list)) return list;
      if (Date.now() > deadline) throw new Error(`networks never matched; last: ${JSON.stringify(list)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Wait until the latest whole set of `kind` (snapshot or full `desired`) satisfies `check`. */
  async latest<K extends DesiredKind>(
    kind: K,
    check: (items: DesiredItem<K>[]) => boolean,
    timeoutMs = 5000,
  ): Promise<DesiredItem<K>[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = [...this.messages]
        .reverse()
        .find((x) => (x.type === 'desired' && x.kind === kind && x.full) || x.type === 'snapshot');
      const list = (
        last?.type === 'desired' ? last.items : last?.type === 'snapshot' ? (last.desired[kind] ?? []) : []
      ) as DesiredItem<K>[];
      if (check(list)) return list;
      if (Date.now() > deadline) throw new Error(`${kind} never matched; last: ${JSON.stringify(list)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Send a message as the agent would (unchecked: tests send malformed ones too). */
  send(msg: unknown): void {
    this.ws.send(JSON.stringify(msg));
  }

  close(): void {
    this.ws.close();
  }
}
