import type { DesiredInstance, DesiredNetwork, DesiredSecurityGroup, DesiredVpn } from '@floe/api';

/**
 * The desired state the control plane sends, by kind. A new kind (firewalls,
 * VPNs, volumes) is one more line here, a KindReconciler doing its passes on a
 * WorkQueue, and one `register` call where the agent builds its reconcilers;
 * the agent's message handling does not change.
 */
export interface DesiredKinds {
  instance: DesiredInstance;
  network: DesiredNetwork;
  security_group: DesiredSecurityGroup;
  vpn: DesiredVpn;
}

/** A kind of desired state. */
export type Kind = keyof DesiredKinds;

/** Desired state of several kinds at once (a snapshot): each kind present is replaced or updated as a whole. */
export type DesiredState = { [K in Kind]?: ReadonlyArray<DesiredKinds[K]> };

/** How `setDesired` treats the items. */
export interface DesiredUpdate {
  /** The items are all there is of the kind (a snapshot); otherwise they change the items with their ids. */
  full: boolean;
}

/**
 * Something that makes one area of the host match the desired state: it
 * keeps the items of its kind, works through them on a WorkQueue (one key
 * per item or one for the whole area) and retries failures with backoff.
 * It may follow the desired state of other kinds it depends on (networks
 * need the instances placed here to know their local NICs).
 */
export interface KindReconciler<K extends string = string> {
  /** The kind it reconciles, or a name of its own for a pass that owns no kind (the metadata service). */
  readonly kind: K;
  /** New desired state of its kind. */
  setDesired(items: readonly (K extends Kind ? DesiredKinds[K] : never)[], opts: DesiredUpdate): void;
  /** Desired state of the other kinds it reads, by kind. */
  readonly follows?: { [F in Kind]?: (items: readonly DesiredKinds[F][], opts: DesiredUpdate) => void };
  /** Look at everything again now (drift repair); also done on its own every resync interval. */
  resync(): void | Promise<void>;
  /** Resolves once no work is queued or running. */
  whenIdle(): Promise<void>;
  /** Whether no work is queued or running now. */
  isIdle(): boolean;
  /** No more work; waits for the work in progress. What was built stays. */
  stop(): Promise<void>;
}

/**
 * The reconcilers of an agent by kind. The agent hands it desired state of
 * any kind; it goes to the kind's reconciler and to those that follow the
 * kind, without the agent knowing which kinds there are. Work starts on a
 * microtask, so everything delivered in one turn is seen by the first pass.
 */
export class ReconcilerRegistry {
  private readonly byKind = new Map<string, KindReconciler>();

  constructor(private readonly onUnknownKind: (kind: string) => void = () => {}) {}

  /** Add a reconciler; one per kind. */
  register<K extends string>(reconciler: KindReconciler<K>): void {
    if (this.byKind.has(reconciler.kind)) throw new Error(`a reconciler of ${reconciler.kind} is registered already`);
    this.byKind.set(reconciler.kind, reconciler);
  }

  /** The reconciler of a kind. */
  get(kind: string): KindReconciler | undefined {
    return this.byKind.get(kind);
  }

  /** The kinds registered, in registration order. */
  kinds(): string[] {
    return [...this.byKind.keys()];
  }

  /** Desired state of one kind: its followers hear of it first, then its reconciler. */
  setDesired<K extends Kind>(kind: K, items: readonly DesiredKinds[K][], opts: DesiredUpdate): void {
    let heard = false;
    for (const r of this.byKind.values()) {
      const follow = r.follows?.[kind];
      if (follow === undefined) continue;
      follow(items, opts);
      heard = true;
    }
    const owner = this.byKind.get(kind) as KindReconciler<K> | undefined;
    if (owner !== undefined) owner.setDesired(items as never, opts);
    else if (!heard) this.onUnknownKind(kind);
  }

  /** Desired state of several kinds (a snapshot); kinds absent from `state` keep theirs. */
  apply(state: DesiredState, opts: DesiredUpdate): void {
    for (const [kind, items] of Object.entries(state) as Array<[Kind, ReadonlyArray<DesiredKinds[Kind]>]>) {
      if (items !== undefined) this.setDesired(kind, items, opts);
    }
  }

  /** Every reconciler looks at everything again now. */
  async resync(): Promise<void> {
    const all = [...this.byKind.values()].map((r) => r.resync());
    await Promise.all(all.filter((p): p is Promise<void> => p instanceof Promise));
  }

  /** Resolves once no reconciler has work queued or running. */
  async whenIdle(): Promise<void> {
    // A pass of one kind may queue work for another (and back): settle until all are idle together.
    for (;;) {
      await Promise.all([...this.byKind.values()].map((r) => r.whenIdle()));
      if ([...this.byKind.values()].every((r) => r.isIdle())) return;
    }
  }

  /** Stop all, in the reverse order of registration. */
  async stop(): Promise<void> {
    for (const r of [...this.byKind.values()].reverse()) await r.stop();
  }
}
