import { pino, type Logger } from 'pino';
import { FloeError, type AgentMessage, type DesiredVpn, type VpnPeerCounters } from '@floe/api';
import { errorBody } from './channels.js';
import type { DesiredUpdate, KindReconciler } from './kinds.js';
import { WorkQueue } from './work-queue.js';
import { vpnIfName } from './drivers/vpn/commands.js';
import type { VpnDriver, VpnInterfaceSpec, VpnPeerStats } from './drivers/vpn/types.js';

/** Options of the VPN reconciler. */
export interface VpnReconcilerOptions {
  driver: VpnDriver;
  logger?: Logger;
  resyncIntervalMs?: number;
  retryBackoff?: { initialMs?: number; maxMs?: number };
}

/** A DesiredVpn as the driver builds it (pure). */
function toInterfaceSpec(v: DesiredVpn): VpnInterfaceSpec {
  return {
    name: vpnIfName(v.id),
    listenPort: v.listen_port,
    privateKey: v.private_key,
    addresses: v.addresses,
    reach: v.reach,
    peers: v.peers.map((p) => ({ publicKey: p.public_key, allowedIps: p.allowed_ips, endpoint: p.endpoint ?? null })),
  };
}

/** A peer's counters as the agent link carries them (pure). */
export function countersOf(p: VpnPeerStats): VpnPeerCounters {
  return {
    public_key: p.publicKey,
    endpoint: p.endpoint,
    latest_handshake: p.latestHandshake,
    rx_bytes: p.rxBytes,
    tx_bytes: p.txBytes,
  };
}

/**
 * Makes this host's WireGuard interfaces match the VPN networks it serves as a gateway: one interface
 * per VPN network, peers changed in place, interfaces of networks that went removed, and the filter
 * rewritten for exactly the interfaces there are. One pass covers the whole area.
 */
export class VpnReconciler implements KindReconciler<'vpn'> {
  readonly kind = 'vpn';
  private desired: DesiredVpn[] | null = null;
  private readonly queue: WorkQueue<'host'>;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly opts: VpnReconcilerOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.queue = new WorkQueue({
      handler: () => this.pass(),
      retryBackoff: opts.retryBackoff ?? { initialMs: 1000, maxMs: 30_000 },
      // The error names the step; the desired state (with the private key) is never logged.
      onError: (_k, err, retryInMs) => this.log.warn({ err: (err as Error).message, retryInMs }, 'VPN pass failed'),
    });
  }

  setDesired(items: readonly DesiredVpn[], { full }: DesiredUpdate): void {
    if (full) this.desired = [...items];
    else {
      const byId = new Map((this.desired ?? []).map((v) => [v.id, v]));
      for (const v of items) byId.set(v.id, v);
      this.desired = [...byId.values()];
    }
    if (this.timer === null && !this.stopped) {
      this.timer = setInterval(() => this.resync(), this.opts.resyncIntervalMs ?? 30_000);
      this.timer.unref();
    }
    if (!this.stopped) this.queue.add('host');
  }

  resync(): void {
    if (this.desired !== null && !this.stopped && !this.queue.has('host')) this.queue.add('host');
  }

  whenIdle(): Promise<void> {
    return this.queue.whenIdle();
  }

  isIdle(): boolean {
    return !this.queue.has('host');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    await this.queue.whenIdle();
  }

  /** Peer counters of a VPN network's interface here, or null when it has none. */
  stats(vpnNetworkId: string): Promise<VpnPeerStats[] | null> {
    return this.opts.driver.stats(vpnIfName(vpnNetworkId));
  }

  /**
   * The answer to `vpn.stats.get`: the counters of the VPN network's interface here, or an error
   * (`validation_failed` for a malformed id, `invalid_state` when this host has no such interface).
   */
  async answerStats(requestId: string, vpnNetworkId: string): Promise<Extract<AgentMessage, { type: 'vpn.stats' }>> {
    const answer = { type: 'vpn.stats', request_id: requestId, vpn_network_id: vpnNetworkId } as const;
    try {
      const stats = await this.stats(vpnNetworkId);
      if (stats === null)
        throw new FloeError('invalid_state', `this gateway has no interface for VPN network ${vpnNetworkId} yet`);
      return { ...answer, peers: stats.map(countersOf) };
    } catch (err) {
      return { ...answer, error: errorBody(err) };
    }
  }

  private async pass(): Promise<void> {
    if (this.desired === null) return;
    const specs = this.desired.map(toInterfaceSpec);
    const driver = this.opts.driver;
    // The filter first: a new interface is never up without it.
    await driver.applyFilter(specs);
    for (const s of specs) await driver.ensure(s);
    const wanted = new Set(specs.map((s) => s.name));
    for (const name of await driver.list()) if (!wanted.has(name)) await driver.remove(name);
  }
}
