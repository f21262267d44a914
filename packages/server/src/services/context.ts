import { EventEmitter } from 'node:events';
import type { Cluster } from '../cluster.js';
import type { Config } from '../config.js';
import type { Store } from '../db/index.js';
import type { EventBus } from './events.js';

export type { Principal } from './principal.js';

/** Signals between services and the agent hub, inside one control plane process. */
export interface Signals {
  /** Desired state of an instance changed: push it to its host's agent. */
  desired: (instanceId: string, hostId: string) => void;
  /** Networks with members on a host changed (members, peers, leases): push the list to its agent. */
  networks: (hostId: string) => void;
}

/**
 * Typed signals between services and the agent hub. With a cluster, a signal
 * also reaches the other control planes (the agent may be connected to one of
 * them), and theirs reach this one.
 */
export class SignalBus extends EventEmitter {
  private readonly unsubscribe: () => void;

  constructor(private readonly cluster?: Cluster) {
    super();
    this.unsubscribe =
      cluster?.subscribe('floe_desired', (p) => {
        if (typeof p.instance_id === 'string' && typeof p.host_id === 'string')
          this.emit('desired', p.instance_id, p.host_id);
        // A network change names only the host (no instance).
        else if (p.instance_id === null && typeof p.host_id === 'string') this.emit('networks', p.host_id);
      }) ?? (() => undefined);
  }

  /** Announce a change here and to the other control planes. */
  send<K extends keyof Signals>(name: K, ...args: Parameters<Signals[K]>): void {
    this.emit(name, ...args);
    if (this.cluster && name === 'desired') {
      const [instance_id, host_id] = args as [string, string];
      void this.cluster.publish('floe_desired', { instance_id, host_id }).catch(() => undefined);
    } else if (this.cluster && name === 'networks') {
      const [host_id] = args as [string];
      void this.cluster.publish('floe_desired', { instance_id: null, host_id }).catch(() => undefined);
    }
  }

  /** Stop hearing other control planes. */
  close(): void {
    this.unsubscribe();
  }
  /** Listen for a change. */
  listen<K extends keyof Signals>(name: K, fn: Signals[K]): () => void {
    this.on(name, fn as (...a: unknown[]) => void);
    return () => this.off(name, fn as (...a: unknown[]) => void);
  }
}

/** What every service gets. */
export interface ServiceContext {
  readonly store: Store;
  readonly config: Config;
  readonly bus: EventBus;
  readonly signals: SignalBus;
  readonly cluster: Cluster;
}
