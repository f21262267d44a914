import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { ControlMessage, DesiredInstance, HostFacts } from '@floe/api';
import type { VmDriver } from './drivers/vm/types.js';
import { AgentChannels } from './channels.js';
import { probeFacts } from './facts.js';
import { ImageCache } from './images.js';
import { AgentLink, type BackoffOptions } from './link.js';
import { NetworkReconciler, type NetworkReconcilerOptions } from './networks.js';
import { VpnReconciler } from './vpn.js';
import type { VpnDriver } from './drivers/vpn/types.js';
import { desiredOf } from './desired-messages.js';
import { ReconcilerRegistry } from './kinds.js';
import { MetadataService } from './metadata/service.js';
import type { PortRange } from './metadata/nft.js';
import type { FirstBootEvent } from './metadata/reports.js';
import { InstanceReconciler, type InstanceReconcilerOptions } from './reconciler.js';
import { AgentState, type AgentConfig } from './state.js';
import { StatsSampler } from './stats-history.js';

/** Options of the agent. */
export interface AgentOptions {
  /** The data directory holding the identity from `joinControlPlane`. */
  dataDir: string;
  driver: VmDriver;
  logger?: Logger;
  /** Use this control plane URL instead of the one in agent.json. */
  server?: string;
  /** Host facts for `hello`; probed on this host when absent. */
  facts?: () => Promise<HostFacts>;
  linkBackoff?: BackoffOptions;
  /** Reconciler timing (resync, retry and restart backoff, stop timeout). */
  reconciler?: Pick<
    InstanceReconcilerOptions,
    'resyncIntervalMs' | 'retryBackoff' | 'restartBackoff' | 'stopTimeoutMs'
  >;
  /** Build this host's networks (bridges, VXLAN, dnsmasq, firewall); without it the agent ignores networks. */
  network?: Omit<NetworkReconcilerOptions, 'logger'>;
  /** Serve this host's VPN networks as a gateway (WireGuard interfaces); without it the agent ignores them. */
  vpn?: VpnDriver;
  /**
   * The metadata service on 169.254.169.254 (needs `network`): on by default
   * with the default port range; false turns it off and removes its rules.
   */
  metadata?: { ports?: PortRange } | false;
  /** Stats history sampling (default: every 10 s, the last hour, saved in the data directory across restarts). */
  statsHistory?: { intervalMs?: number; retentionMs?: number };
  /** Also told of every first-boot event of the metadata service (the instance's status gets them either way). */
  onFirstBoot?: (instanceId: string, event: FirstBootEvent) => void;
}

/** Why the agent stopped. */
export type AgentExit = { reason: 'stopped' } | { reason: 'revoked'; message: string };

/**
 * floe-agent: the link to the control plane plus the reconciler over one VM
 * driver. `stop()` closes the link and the driver but leaves VMs running.
 */
export class Agent {
  /** Resolves when the agent stopped, by `stop()` or because the control plane revoked the host. */
  readonly done: Promise<AgentExit>;
  private resolveDone!: (exit: AgentExit) => void;
  private readonly log: Logger;
  private readonly state: AgentState;
  private link: AgentLink | null = null;
  /** The reconcilers by kind; the messages' desired state goes there. */
  private readonly registry: ReconcilerRegistry;
  /** The instance reconciler also answers `hello` and hears of first boots. */
  private instances: InstanceReconciler | null = null;
  /** The VPN reconciler (gateways only) also answers for its interfaces' counters. */
  private vpn: VpnReconciler | null = null;
  private started = false;
  private channels: AgentChannels | null = null;
  private sampler: StatsSampler | null = null;
  private config: AgentConfig | null = null;
  private stopping: Promise<void> | null = null;

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.state = new AgentState(opts.dataDir);
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.registry = new ReconcilerRegistry((kind) =>
      this.log.debug({ kind }, 'no reconciler for this kind on this host; ignored'),
    );
  }

  /** The host id the control plane gave this agent, once known. */
  get hostId(): string | undefined {
    return this.config?.host_id;
  }

  /** Load the identity, start the reconciler and dial the control plane. */
  async start(): Promise<void> {
    const [config, credentials] = await Promise.all([this.state.readConfig(), this.state.readCredentials()]);
    if (config === null || credentials === null) {
      throw new Error(`this agent has not joined a control plane yet (no identity in ${this.opts.dataDir})`);
    }
    this.config = config;
    const server = this.opts.server ?? config.server;
    const driver = this.opts.driver;
    const facts = this.opts.facts ?? (() => probeFacts({ dataDir: this.opts.dataDir, driver: driver.name }));

    const network = this.opts.network;
    const networks =
      network === undefined
        ? null
        : new NetworkReconciler({
            ...network,
            ...(this.opts.reconciler?.resyncIntervalMs === undefined
              ? {}
              : { resyncIntervalMs: this.opts.reconciler.resyncIntervalMs }),
            logger: this.log.child({ component: 'networks' }),
          });
    if (networks !== null) this.registry.register(networks);
    if (this.opts.vpn !== undefined) {
      this.vpn = new VpnReconciler({
        driver: this.opts.vpn,
        ...(this.opts.reconciler?.resyncIntervalMs === undefined
          ? {}
          : { resyncIntervalMs: this.opts.reconciler.resyncIntervalMs }),
        logger: this.log.child({ component: 'vpn' }),
      });
      this.registry.register(this.vpn);
    }
    if (network !== undefined && this.opts.metadata !== false) {
      const ports = this.opts.metadata?.ports;
      const metadata = new MetadataService({
        exec: (argv, o) => network.host.exec(argv, o),
        ...(ports === undefined ? {} : { ports }),
        ...(this.opts.reconciler?.resyncIntervalMs === undefined
          ? {}
          : { resyncIntervalMs: this.opts.reconciler.resyncIntervalMs }),
        logger: this.log.child({ component: 'metadata' }),
        onFirstBoot: (instanceId, event) => this.firstBoot(instanceId, event),
      });
      this.registry.register(metadata);
    } else if (network !== undefined) {
      await MetadataService.removeRules((argv, o) => network.host.exec(argv, o)).catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message }, 'cannot remove the metadata rules');
      });
    }
    const reconciler = new InstanceReconciler({
      ...this.opts.reconciler,
      ...(networks === null || network === undefined
        ? {}
        : {
            nics: {
              ensure: (vm: DesiredInstance) => networks.ensureTaps(vm),
              remove: (vm: DesiredInstance) => networks.removeTaps(vm),
              // A hot-removed NIC's tap and what its limits left beside it.
              removeNic: (nicId: string) => networks.removeTap(nicId),
            },
          }),
      driver,
      images: new ImageCache({
        dir: join(this.opts.dataDir, 'images'),
        server,
        credentials,
        logger: this.log.child({ component: 'images' }),
      }),
      store: this.state.appliedStore(),
      logger: this.log.child({ component: 'reconciler' }),
      reporter: {
        status: (instance) => {
          this.link?.send({ type: 'status', instance });
        },
        event: (instanceId, event, message, data) => {
          this.link?.send({
            type: 'event',
            instance_id: instanceId,
            event,
            message,
            ...(data === undefined ? {} : { data }),
          });
        },
      },
    });
    await reconciler.start();
    this.instances = reconciler;
    this.registry.register(reconciler);
    this.started = true;
    if (this.stopping !== null) {
      // stop() came while starting (and stopped the others): do not dial.
      await reconciler.stop();
      return;
    }

    this.sampler = new StatsSampler({
      driver,
      ...this.opts.statsHistory,
      file: join(this.opts.dataDir, 'stats-history.json'),
      logger: this.log.child({ component: 'stats' }),
    });
    await this.sampler.start();
    if (this.stopping !== null) return; // stop() came while the history was loading
    const link = (): AgentLink | null => this.link;
    this.channels = new AgentChannels({
      driver,
      history: this.sampler,
      logger: this.log.child({ component: 'channels' }),
      link: {
        send: (msg) => link()?.send(msg) ?? false,
        get bufferedAmount() {
          return link()?.bufferedAmount ?? 0;
        },
      },
    });
    this.link = new AgentLink({
      server,
      credentials,
      logger: this.log.child({ component: 'link' }),
      ...(this.opts.linkBackoff === undefined ? {} : { backoff: this.opts.linkBackoff }),
      hostId: config.host_id,
      hello: async () => ({ facts: await facts(), instances: await reconciler.observed() }),
      onMessage: (msg) => this.onMessage(msg),
      onDown: () => this.channels?.closeAll(),
      onRevoked: (reason) => {
        this.log.fatal({ reason }, 'the control plane revoked this host; stopping (VMs keep running)');
        void this.shutdown().then(() => this.resolveDone({ reason: 'revoked', message: reason }));
      },
    });
    this.link.start();
    this.log.info({ server, host: config.host_name, driver: driver.name }, 'agent started');
  }

  /** Close the link and the driver; VMs keep running. */
  async stop(): Promise<void> {
    await this.shutdown();
    this.resolveDone({ reason: 'stopped' });
  }

  private shutdown(): Promise<void> {
    this.stopping ??= (async () => {
      await this.link?.stop();
      this.channels?.closeAll();
      await this.sampler?.stop();
      // The instances first (registered last), then the networks their VMs use.
      await this.registry.stop();
      await this.opts.driver.close();
      this.log.info('agent stopped');
    })();
    return this.stopping;
  }

  private onMessage(msg: ControlMessage): void {
    if (!this.started) return;
    if (this.channels?.handle(msg) === true) return;
    const desired = desiredOf(msg);
    if (desired !== null) {
      this.log.debug({ type: msg.type, full: desired.update.full }, 'desired state');
      this.registry.apply(desired.state, desired.update);
      return;
    }
    switch (msg.type) {
      case 'welcome':
        this.log.info({ host_id: msg.host_id, host_name: msg.host_name }, 'welcomed by the control plane');
        void this.remember(msg.host_id, msg.host_name);
        break;
      case 'error':
        this.log.warn({ code: msg.code, message: msg.message }, 'the control plane reported an error');
        break;
      case 'vpn.stats.get':
        void this.vpnStats(msg.request_id, msg.vpn_network_id);
        break;
    }
  }

  // A VM fetched its data from the metadata service or reported its first boot: the reconciler folds it into the
  // instance's status (first_boot) and reports it as a `first-boot` instance event.
  private firstBoot(instanceId: string, event: FirstBootEvent): void {
    this.log.info({ id: instanceId, ...event }, 'first boot');
    this.instances?.noteFirstBoot(
      instanceId,
      event.type === 'fetched'
        ? { source: 'metadata', fetched_at: event.at }
        : { finished_at: event.at, result: event.result, detail: event.detail ?? null },
    );
    this.opts.onFirstBoot?.(instanceId, event);
  }

  private async vpnStats(requestId: string, vpnNetworkId: string): Promise<void> {
    const answer =
      this.vpn === null
        ? ({
            type: 'vpn.stats',
            request_id: requestId,
            vpn_network_id: vpnNetworkId,
            error: { code: 'invalid_state', message: 'this host runs no VPN gateway (no WireGuard here)' },
          } as const)
        : await this.vpn.answerStats(requestId, vpnNetworkId);
    this.link?.send(answer);
  }

  // Keep agent.json in step with what the control plane calls this host.
  private async remember(hostId: string, hostName: string): Promise<void> {
    const config = this.config;
    if (config === null || (config.host_id === hostId && config.host_name === hostName)) return;
    const next = { ...config, host_id: hostId, host_name: hostName };
    try {
      // The file first: whoever sees the new id in memory may rely on it being on disk.
      await this.state.writeConfig(next);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot update agent.json');
    }
    this.config = next;
  }
}
