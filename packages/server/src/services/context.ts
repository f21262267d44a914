import { EventEmitter } from 'node:events';
import type { Config } from '../config.js';
import type { Store } from '../db/index.js';
import type { EventBus } from './events.js';

/** Who is asking: resolved from the bearer token. */
export interface Principal {
  /** Token id, or "system" / "agent:<host>" for internal callers. */
  readonly actor: string;
  readonly admin: boolean;
  /** Projects a non-admin may use. Ignored for admins. */
  readonly projects: ReadonlySet<string>;
}

/** The principal for work the control plane does on its own. */
export const SYSTEM: Principal = Object.freeze({ actor: 'system', admin: true, projects: new Set<string>() });

/** Signals between services and the agent hub, inside one control plane process. */
export interface Signals {
  /** Desired state of an instance changed: push it to its host's agent. */
  desired: (instanceId: string, hostId: string) => void;
}

/** Typed wrapper over EventEmitter for Signals. */
export class SignalBus extends EventEmitter {
  /** Announce a change. */
  send<K extends keyof Signals>(name: K, ...args: Parameters<Signals[K]>): void {
    this.emit(name, ...args);
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
}
