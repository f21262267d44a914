import { randomUUID } from 'node:crypto';
import {
  AGENT_CLOSE,
  AGENT_PROTOCOL_VERSION,
  FloeError,
  decodeAgentMessage,
  desiredMessage,
  type AgentMessage,
  type ControlMessage,
  type DesiredKind,
  type VmStats,
  type VpnPeerCounters,
} from '@floe/api';
import type { FastifyBaseLogger } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import { LinkChannels, type AgentStatsHistory, type ChannelOpen, type ServerChannel } from './channels.js';
import type { Config } from './config.js';
import { isStoreUnavailable } from './db/unavailable.js';
import type { DesiredStateProvider } from './desired-state.js';
import type { ServiceContext } from './services/context.js';
import type { HostService } from './services/hosts.js';
import type { InstanceService } from './services/instances.js';

/** One live agent link. */
interface Link {
  id: string;
  hostId: string;
  socket: WebSocket;
  /** Agent messages are applied strictly in order. */
  queue: Promise<void>;
  ready: boolean;
  /** Console and log channels and stats requests on this link. */
  channels: LinkChannels;
}

/** A WebSocket message as text (JSON is sent as text frames; a binary one fails its check). */
function text(data: RawData): string {
  return (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString(
    'utf8',
  );
}

/** One kind's whole set for a host. */
interface DesiredSet {
  provider: DesiredStateProvider;
  items: Awaited<ReturnType<DesiredStateProvider['forHost']>>;
}

/** How long an agent has to say hello after connecting. */
const HELLO_TIMEOUT_MS = 10_000;

/**
 * The control plane's side of the agent links: greets agents, sends them the
 * desired state (a full snapshot on connect, then changes) as the registered
 * providers assemble it, kind by kind, applies their reports, and marks hosts
 * offline when links close or heartbeats stop. Every agent message is checked
 * against its schema first: a malformed one closes the link.
 */
export class AgentHub {
  private readonly links = new Map<string, Link>();
  private sweeper: NodeJS.Timeout | null = null;
  private closing = false;
  /** Work of links that closed but is not finished yet (close() waits for it). */
  private readonly draining = new Set<Promise<void>>();
  private readonly stopSignals: () => void;
  /** Desired state by kind, in registration order (the order of the snapshot's work). */
  private readonly providers = new Map<string, DesiredStateProvider>();
  /**
   * Whole sets being pushed, by kind and host: a change that comes meanwhile marks the push to run
   * once more when it is done, instead of a push of its own.
   */
  private readonly wholePushes = new Map<string, { again: boolean }>();
  /** Identifies this control plane process in `hosts.connected_to`. */
  readonly processId = randomUUID();

  constructor(
    private readonly ctx: ServiceContext,
    private readonly hosts: HostService,
    private readonly instances: InstanceService,
    private readonly log: FastifyBaseLogger,
    providers: readonly DesiredStateProvider[] = [],
  ) {
    for (const p of providers) this.register(p);
    this.stopSignals = ctx.signals.listen('desired', (kind, hostId, id) => {
      void this.push(kind, hostId, id).catch((err) =>
        this.log.error({ err, kind, hostId, id }, 'pushing desired state failed'),
      );
    });
  }

  /** Add the provider of a kind of desired state; agents connecting from now on get it in their snapshot. */
  register(provider: DesiredStateProvider): void {
    if (this.providers.has(provider.kind)) throw new Error(`a provider for ${provider.kind} is registered already`);
    this.providers.set(provider.kind, provider);
  }

  /** Start the heartbeat sweeper. */
  start(config: Config): void {
    const every = Math.max(100, Math.min(1000, Math.floor(config.hostOfflineAfterMs / 3)));
    this.sweeper = setInterval(
      () =>
        void this.sweep(config.hostOfflineAfterMs).catch((err) =>
          isStoreUnavailable(err)
            ? this.log.warn({ reason: (err as Error).message }, 'host sweep skipped: the database is unavailable')
            : this.log.error({ err }, 'host sweep failed'),
        ),
      every,
    );
    this.sweeper.unref();
  }

  /** Hosts connected to this process. */
  connectedHosts(): string[] {
    return [...this.links.values()].filter((l) => l.ready).map((l) => l.hostId);
  }

  /**
   * Take over a new authenticated WebSocket from the agent of `hostId`. Listeners are
   * attached before anything is awaited: an agent says hello as soon as the socket
   * opens, and a message that arrives while no listener is attached is lost. The
   * host check runs first on the link's queue, so messages wait behind it.
   */
  accept(socket: WebSocket, hostId: string, certSerial: string): void {
    const channels = new LinkChannels(
      (msg) => this.send(link, msg),
      () => socket.bufferedAmount,
    );
    const link: Link = {
      id: `${this.processId}:${randomUUID()}`,
      hostId,
      socket,
      queue: Promise.resolve(),
      ready: false,
      channels,
    };
    let admitted = false;
    link.queue = this.admit(link, certSerial).then(
      (ok) => {
        admitted = ok;
      },
      (err) => {
        this.log.error({ err, hostId }, 'checking an agent failed');
        socket.close(1011, 'internal error');
      },
    );
    const helloTimer = setTimeout(() => {
      if (!link.ready) socket.close(AGENT_CLOSE.protocol, 'no hello');
    }, HELLO_TIMEOUT_MS);
    socket.on('message', (data) => {
      // After a refusal, nothing more from this link is looked at.
      if (socket.readyState !== socket.OPEN) return;
      const decoded = decodeAgentMessage(text(data));
      if (!decoded.ok) {
        // The agent and this control plane disagree on the protocol: carrying on would drop its reports
        // silently. Closing makes it reconnect and say hello again with the full picture (and log the refusal).
        this.log.warn(
          { hostId, type: decoded.type, error: decoded.error },
          'refusing a malformed agent message; closing the link',
        );
        socket.close(AGENT_CLOSE.protocol, 'malformed message');
        return;
      }
      const msg = decoded.value;
      // Channel bytes and stats answers skip the queue: they must not wait behind database work.
      if (link.ready && link.channels.deliver(msg)) return;
      link.queue = link.queue
        .then(() => (admitted && socket.readyState === socket.OPEN ? this.handle(link, msg) : undefined))
        .catch((err) => {
          this.log.error({ err, hostId, type: msg.type }, 'agent message failed');
        });
    });
    socket.on('close', () => {
      clearTimeout(helloTimer);
      link.channels.closeAll({ code: 'host_offline', message: 'the host disconnected' });
      if (this.links.get(hostId) === link) this.links.delete(hostId);
      if (this.closing) return; // close() already marked it offline
      const last = link.queue
        .then(async () => {
          if (!admitted) return;
          if (await this.hosts.markOffline(hostId, 'agent disconnected', link.id)) {
            this.log.info({ hostId }, 'host offline: agent disconnected');
            await this.instances.hostUnreachable(hostId);
          }
        })
        .catch((err) => this.log.error({ err, hostId }, 'marking host offline failed'));
      this.draining.add(last);
      void last.finally(() => this.draining.delete(last));
    });
    socket.on('error', (err) => this.log.warn({ err, hostId }, 'agent link error'));
  }

  /** Whether the link's host still exists and presents its current certificate; if so, the link replaces any older one. */
  private async admit(link: Link, certSerial: string): Promise<boolean> {
    const host = await this.hosts.forAgent(link.hostId);
    if (!host) {
      link.socket.close(AGENT_CLOSE.revoked, 'host removed');
      return false;
    }
    // Only the host's current certificate counts: a reissued one replaces the old.
    if (host.cert_serial !== null && host.cert_serial.toLowerCase() !== certSerial.toLowerCase()) {
      this.log.warn({ hostId: link.hostId }, 'agent presented a superseded certificate');
      link.socket.close(AGENT_CLOSE.revoked, 'certificate superseded');
      return false;
    }
    if (link.socket.readyState !== link.socket.OPEN || this.closing) return false;
    const previous = this.links.get(link.hostId);
    if (previous) previous.socket.close(AGENT_CLOSE.replaced, 'replaced by a new connection');
    this.links.set(link.hostId, link);
    return true;
  }

  private send(link: Link, msg: ControlMessage): boolean {
    if (link.socket.readyState !== link.socket.OPEN) return false;
    link.socket.send(JSON.stringify(msg));
    return true;
  }

  /** The ready link of a host connected to this process, or host_offline. */
  private linkFor(hostId: string): Link {
    const link = this.links.get(hostId);
    if (link === undefined || !link.ready)
      throw new FloeError('host_offline', 'the host is not connected to this control plane', { host: hostId });
    return link;
  }

  /** Open a console or log channel on a connected host; resolves once the agent opened it. */
  async openChannel(hostId: string, open: ChannelOpen, timeoutMs = 5000): Promise<ServerChannel> {
    return this.linkFor(hostId).channels.openChannel(open, timeoutMs);
  }

  /** Ask a connected host for one answer (a VM's stats); `host_timeout` after `timeoutMs`. */
  async request(hostId: string, msg: { type: 'stats.get'; instance_id: string }, timeoutMs = 5000): Promise<VmStats> {
    return this.linkFor(hostId).channels.stats(msg.instance_id, timeoutMs);
  }

  /** Ask a connected host for the stats history it keeps of a VM; `host_timeout` after `timeoutMs`. */
  async statsHistory(
    hostId: string,
    instanceId: string,
    since: string | undefined,
    timeoutMs = 5000,
  ): Promise<AgentStatsHistory> {
    return this.linkFor(hostId).channels.statsHistory(instanceId, since, timeoutMs);
  }

  /** Ask a connected gateway for the counters of a VPN network's peers; `host_timeout` after `timeoutMs`. */
  async vpnStats(hostId: string, vpnNetworkId: string, timeoutMs = 5000): Promise<VpnPeerCounters[]> {
    return this.linkFor(hostId).channels.vpnStats(vpnNetworkId, timeoutMs);
  }

  private async handle(link: Link, msg: AgentMessage): Promise<void> {
    switch (msg.type) {
      case 'hello': {
        if (msg.protocol !== AGENT_PROTOCOL_VERSION) {
          this.send(link, {
            type: 'error',
            code: 'protocol',
            message: `agent protocol ${msg.protocol} is not supported (want ${AGENT_PROTOCOL_VERSION})`,
          });
          link.socket.close(AGENT_CLOSE.protocol, 'protocol version');
          return;
        }
        const host = await this.hosts.forAgent(link.hostId);
        if (!host) {
          link.socket.close(AGENT_CLOSE.revoked, 'host removed');
          return;
        }
        await this.hosts.markOnline(link.hostId, msg.facts, link.id);
        this.send(link, {
          type: 'welcome',
          host_id: host.id,
          host_name: host.name,
          heartbeat_interval_ms: this.ctx.config.heartbeatIntervalMs,
        });
        // What the agent already runs first, so operations settle from real state.
        for (const obs of msg.instances) await this.instances.applyObserved(link.hostId, obs);
        await this.instances.hostReachable(link.hostId);
        const sets: DesiredSet[] = [];
        for (const provider of this.providers.values())
          sets.push({ provider, items: await provider.forHost(link.hostId) });
        const desired = Object.fromEntries(sets.map((s) => [s.provider.kind, s.items]));
        this.send(link, { type: 'snapshot', desired });
        link.ready = true;
        for (const { provider, items } of sets) await provider.sent?.(link.hostId, items, true);
        const counts = Object.fromEntries(sets.map((s) => [s.provider.kind, s.items.length]));
        this.log.info({ hostId: link.hostId, desired: counts }, 'agent connected');
        return;
      }
      case 'heartbeat':
        await this.hosts.heartbeat(link.hostId);
        return;
      case 'status':
        if (!link.ready) return;
        await this.instances.applyObserved(link.hostId, msg.instance);
        return;
      case 'event': {
        const desired = await this.instances.desiredOne(msg.instance_id);
        await this.ctx.bus.publish({
          type: 'instance.event',
          project: desired?.project ?? null,
          kind: 'instance',
          resource_id: msg.instance_id,
          data: { event: msg.event, message: msg.message, host: link.hostId, ...(msg.data ?? {}) },
        });
        return;
      }
      default:
        link.socket.close(AGENT_CLOSE.protocol, 'unknown message type');
    }
  }

  /** Send a change of one kind to the host's agent, if connected here: the item `id` names, else the kind's whole set. */
  private async push(kind: DesiredKind, hostId: string, id: string | undefined): Promise<void> {
    const link = this.links.get(hostId);
    const provider = this.providers.get(kind);
    if (!link || !link.ready || provider === undefined) return;
    if (id !== undefined && provider.one !== undefined) {
      const one = await provider.one(id);
      if (one === null) return;
      this.send(link, desiredMessage(kind, [one], false));
      await provider.sent?.(hostId, [one], false);
      return;
    }
    // A burst of changes (a group edited while its members come and go) is one whole set being assembled and
    // one more after it, with all of them: each host gets its sets in the order they were read, the newest last.
    const key = `${kind}\0${hostId}`;
    const running = this.wholePushes.get(key);
    if (running !== undefined) {
      running.again = true;
      return;
    }
    const state = { again: true };
    this.wholePushes.set(key, state);
    try {
      while (state.again) {
        state.again = false;
        const current = this.links.get(hostId);
        if (!current?.ready) return;
        try {
          const items = await provider.forHost(hostId);
          this.send(current, desiredMessage(kind, items, true));
          await provider.sent?.(hostId, items, false);
        } catch (err) {
          // A change that came meanwhile still gets its push.
          if (!state.again) throw err;
          this.log.error({ err, kind, hostId }, 'pushing desired state failed');
        }
      }
    } finally {
      this.wholePushes.delete(key);
    }
  }

  /** Mark hosts without recent heartbeats offline and drop their links. */
  private async sweep(offlineAfterMs: number): Promise<void> {
    const stale = await this.hosts.stale(new Date(Date.now() - offlineAfterMs).toISOString());
    for (const hostId of stale) {
      const link = this.links.get(hostId);
      // Only judge links of this process, or hosts no process holds.
      if (await this.hosts.markOffline(hostId, 'heartbeats missed')) {
        this.log.warn({ hostId }, 'host offline: heartbeats missed');
        link?.socket.terminate();
        await this.instances.hostUnreachable(hostId);
      }
    }
  }

  /** Disconnect a removed host for good. */
  revoke(hostId: string): void {
    this.links.get(hostId)?.socket.close(AGENT_CLOSE.revoked, 'host removed');
  }

  /** Close every link (agents reconnect to another control plane or later). */
  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.stopSignals();
    this.closing = true;
    const links = [...this.links.values()];
    this.links.clear();
    for (const link of links)
      link.channels.closeAll({ code: 'host_offline', message: 'the control plane is shutting down' });
    for (const link of links) link.socket.close(1001, 'control plane shutting down');
    await Promise.all([...links.map((l) => l.queue), ...this.draining]);
    for (const link of links) {
      const offline = await this.hosts.markOffline(link.hostId, 'control plane shut down', link.id).catch(() => false);
      if (offline) await this.instances.hostUnreachable(link.hostId).catch(() => undefined);
    }
  }
}
