import type { ServiceContext } from './context.js';
import type { NewEvent } from './events.js';

/** What a committed transaction changed, for the rest of the control plane to hear of. */
interface Committed {
  /** Instances the transaction wrote: what reads cached while it ran is dropped. */
  forget?: ReadonlyArray<string | null | undefined>;
  /** Events to publish, in order. */
  events?: readonly NewEvent[];
  /** Instances whose desired state changed, with their host (nothing is sent for an unplaced one). */
  desired?: ReadonlyArray<{ instanceId: string; hostId: string | null }>;
  /** Hosts whose agents must get their networks again. */
  networkHosts?: ReadonlyArray<string | null>;
  /** Networks whose members changed: the hosts running a member of one are told too. */
  networks?: readonly string[];
}

/** Where the after-commit steps reach: the instance read cache and the hosts of networks. */
interface PostCommitDeps {
  forgotten?: (instanceId: string) => void;
  hostsOf?: (networkIds: readonly string[]) => Promise<string[]>;
}

/**
 * The one sequence after a write commits: forget (read cache), publish (events), signal (desired state
 * of instances, then networks to their hosts). Run it only once the transaction committed, never inside it.
 */
export class PostCommit {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly deps: PostCommitDeps = {},
  ) {}

  async run(c: Committed): Promise<void> {
    for (const id of c.forget ?? []) if (id) this.deps.forgotten?.(id);
    if (c.events !== undefined && c.events.length > 0) await this.ctx.bus.publish(...c.events);
    for (const d of c.desired ?? []) if (d.hostId) this.ctx.signals.send('desired', 'instance', d.hostId, d.instanceId);
    const hosts = (c.networkHosts ?? []).filter((h): h is string => h !== null);
    if (c.networks !== undefined && c.networks.length > 0 && this.deps.hostsOf)
      hosts.push(...(await this.deps.hostsOf(c.networks)));
    for (const hostId of new Set(hosts)) this.ctx.signals.send('desired', 'network', hostId);
  }
}
