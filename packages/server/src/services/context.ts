import { EventEmitter } from 'node:events';
import type { DesiredKind } from '@floe/api';
import type { Cluster } from '../cluster.js';
import type { Config } from '../config.js';
import type { Store } from '../db/index.js';
import type { EventBus } from './events.js';

export type { Principal } from './principal.js';

/** Signals between services and the agent hub, inside one control plane process. */
export interface Signals {
  /**
   * Desired state of `kind` on a host changed: push it to the host's agent.
   * `id` names the one item that changed; without it, the kind's whole set is sent again.
   */
  desired: (kind: DesiredKind, hostId: string, id?: string) => void;
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
        if (typeof p.kind === 'string' && typeof p.host_id === 'string')
          this.emit('desired', p.kind, p.host_id, typeof p.id === 'string' ? p.id : undefined);
      }) ?? (() => undefined);
  }

  /** Announce a change here and to the other control planes. */
  send<K extends keyof Signals>(name: K, ...args: Parameters<Signals[K]>): void {
    this.emit(name, ...args);
    if (this.cluster && name === 'desired') {
      const [kind, host_id, id] = args;
      void this.cluster.publish('floe_desired', { kind, host_id, id: id ?? null }).catch(() => undefined);
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
