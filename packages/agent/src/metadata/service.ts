import { pino, type Logger } from 'pino';
import type { DesiredInstance, DesiredNetwork } from '@floe/api';
import { gatewayMac } from '../drivers/net/checked-spec.js';
import { checkId } from '../host/validate.js';
import type { RunOptions, RunResult } from '../host/exec.js';
import type { DesiredUpdate, KindReconciler } from '../kinds.js';
import { WorkQueue } from '../work-queue.js';
import type { MetadataContext } from './documents.js';
import { checkPortRange, metadataRuleset, METADATA_NFT_REMOVE, type MetadataNic, type PortRange } from './nft.js';
import type { FirstBootEvent } from './reports.js';
import { MetadataServer } from './server.js';

/** The default metadata port range: below Linux's ephemeral ports (32768..), so the host's own connections never use one. */
const DEFAULT_METADATA_PORTS: PortRange = { first: 20000, last: 20999 };

/** Options of the metadata service. */
export interface MetadataServiceOptions {
  /** Runs `nft` on the host (the host network driver's exec, inside its namespace when it has one). */
  exec(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** The ports NICs get theirs from; default DEFAULT_METADATA_PORTS. */
  ports?: PortRange;
  /** First-boot events of the VMs on this host (see FirstBootEvent). */
  onFirstBoot?: (instanceId: string, event: FirstBootEvent) => void;
  logger?: Logger;
  /** Retry after a failed pass; default 1 s .. 30 s. */
  retryBackoff?: { initialMs: number; maxMs: number };
  /** Listener address; default `::`. */
  host?: string;
  /** The operator's or instance's own vendor-data of a VM, served after floe's part; default: the desired state's `vendor_data`. */
  vendorData?: (vm: DesiredInstance) => string | null;
  /** Apply the rules again this often even when nothing changed (rules flushed by hand); default 30 s. */
  resyncIntervalMs?: number;
}

/**
 * The plan of one pass: which NIC listens on which port, and the ruleset.
 * Ports stay with their NIC while the agent runs; a new NIC takes the lowest
 * free one. Pure: `ports` is updated in place for the NICs that got one.
 */
export function planMetadata(
  instances: Iterable<DesiredInstance>,
  publicNets: ReadonlySet<string>,
  ports: Map<string, number>,
  range: PortRange,
  unavailable: ReadonlySet<number> = new Set(),
): { nics: MetadataNic[]; ruleset: string } {
  const wanted = new Map<string, string>();
  for (const vm of instances) for (const n of vm.nics ?? []) wanted.set(checkId('nic_id', n.id), n.network_id);
  for (const nic of [...ports.keys()]) if (!wanted.has(nic)) ports.delete(nic);
  const used = new Set([...ports.values(), ...unavailable]);
  let next = range.first;
  const nics: MetadataNic[] = [];
  for (const [nic, netId] of [...wanted].sort(([a], [b]) => a.localeCompare(b))) {
    let port = ports.get(nic);
    if (port === undefined) {
      while (used.has(next) && next <= range.last) next++;
      // More NICs than ports: the rest go without until a port frees up.
      if (next > range.last) continue;
      port = next;
      ports.set(nic, port);
      used.add(port);
    }
    nics.push({ nicId: nic, port, ...(publicNets.has(netId) ? {} : { bridgeMac: gatewayMac(netId) }) });
  }
  return { nics, ruleset: metadataRuleset(nics, range) };
}

/**
 * The metadata service of a host: follows the NICs of the instances placed
 * here (the desired state the reconcilers get), keeps one listener per NIC
 * (MetadataServer) and the `floe_meta` nftables tables in step with them.
 * Listeners open before the rules send traffic to them and close after the
 * rules stop. Level-triggered: a failed pass is retried; applying again
 * changes nothing. An agent restart builds both again from the first snapshot.
 */
export class MetadataService implements KindReconciler<'metadata'> {
  /** A pass of its own: the control plane sends no desired state of this kind, it follows instances and networks. */
  readonly kind = 'metadata';
  readonly follows = {
    instance: (items: readonly DesiredInstance[], { full }: DesiredUpdate) => {
      if (full) this.setInstances(items);
      else for (const i of items) this.updateInstance(i);
    },
    network: (items: readonly DesiredNetwork[], { full }: DesiredUpdate) => {
      if (full) this.setNetworks(items);
      else this.updateNetworks(items);
    },
  };
  private readonly log: Logger;
  private readonly range: PortRange;
  private readonly server: MetadataServer;
  private readonly ports = new Map<string, number>();
  private instances = new Map<string, DesiredInstance>();
  private byNic = new Map<string, DesiredInstance>();
  private publicNets = new Set<string>();
  /** One key: a pass plans all NICs at once. */
  private readonly queue: WorkQueue<'host'>;
  private readonly resyncTimer: NodeJS.Timeout;
  private appliedRules: string | null = null;
  /** The last ruleset logged: a resync that applies the same rules again says so only at debug level. */
  private loggedRules: string | null = null;
  /** Ports another process holds: never handed out again while the agent runs. */
  private readonly taken = new Set<number>();

  constructor(private readonly opts: MetadataServiceOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.range = checkPortRange(opts.ports ?? DEFAULT_METADATA_PORTS);
    this.server = new MetadataServer({
      lookup: (nicId) => this.lookup(nicId),
      logger: this.log,
      ...(opts.onFirstBoot === undefined ? {} : { onFirstBoot: opts.onFirstBoot }),
      ...(opts.host === undefined ? {} : { host: opts.host }),
    });
    this.queue = new WorkQueue({
      handler: () => this.pass(),
      retryBackoff: opts.retryBackoff ?? { initialMs: 1000, maxMs: 30_000 },
      onError: (_key, err, delay) => {
        this.appliedRules = null;
        this.log.warn({ err: (err as Error).message, retry_in_ms: delay }, 'metadata service pass failed');
      },
    });
    this.resyncTimer = setInterval(() => this.resync(), opts.resyncIntervalMs ?? 30_000);
    this.resyncTimer.unref();
  }

  /** The desired state of no kind names the metadata service: it follows instances and networks. */
  setDesired(): void {}

  /** Apply the rules again now (rules flushed by hand), unless a pass is due anyway. */
  resync(): void {
    if (this.queue.has('host')) return;
    this.appliedRules = null;
    this.queue.add('host');
  }

  /** The instances of a snapshot (those being deleted lose their listeners). */
  setInstances(instances: readonly DesiredInstance[]): void {
    this.instances = new Map(instances.filter((i) => !i.deleting).map((i) => [i.id, i]));
    this.kick();
  }

  /** One instance changed. */
  updateInstance(instance: DesiredInstance): void {
    if (instance.deleting) this.instances.delete(instance.id);
    else this.instances.set(instance.id, instance);
    this.kick();
  }

  /** The networks of this host: on public ones the bridge's MAC is the uplink's, so requests are not re-addressed. */
  setNetworks(networks: readonly DesiredNetwork[]): void {
    this.setPublicNets(new Set(networks.filter((n) => n.kind === 'public').map((n) => n.id)));
  }

  /** Some networks changed (the others stay as they are). */
  updateNetworks(networks: readonly DesiredNetwork[]): void {
    const pub = new Set(this.publicNets);
    for (const n of networks) {
      if (n.kind === 'public') pub.add(n.id);
      else pub.delete(n.id);
    }
    this.setPublicNets(pub);
  }

  private setPublicNets(pub: Set<string>): void {
    if (pub.size === this.publicNets.size && [...pub].every((id) => this.publicNets.has(id))) return;
    this.publicNets = pub;
    this.kick();
  }

  /** Each NIC's port now (tests, diagnostics). */
  listening(): Map<string, number> {
    return this.server.ports();
  }

  /** Wait for the pass in flight and those asked for. */
  whenIdle(): Promise<void> {
    return this.queue.whenIdle();
  }

  isIdle(): boolean {
    return this.queue.size === 0;
  }

  /** Stop: listeners close, the rules stay (a restarted agent replaces them; until then requests are refused). */
  async stop(): Promise<void> {
    clearInterval(this.resyncTimer);
    await this.queue.stop();
    await this.server.stop();
  }

  /** Remove the metadata tables from the host (`--metadata off`). */
  static async removeRules(exec: MetadataServiceOptions['exec']): Promise<void> {
    await exec(['nft', '-f', '-'], { input: METADATA_NFT_REMOVE });
  }

  private lookup(nicId: string): MetadataContext | null {
    const vm = this.byNic.get(nicId);
    return vm === undefined ? null : { vm, nicId, vendorData: this.opts.vendorData?.(vm) ?? vm.vendor_data ?? null };
  }

  // New listeners first: the rules must never redirect to a port nobody listens on. Returns the NICs whose port is taken.
  private async openAll(nics: readonly MetadataNic[]): Promise<Array<[string, number]>> {
    const busy: Array<[string, number]> = [];
    for (const n of nics) {
      try {
        await this.server.open(n.nicId, n.port);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
        busy.push([n.nicId, n.port]);
      }
    }
    return busy;
  }

  private kick(): void {
    this.queue.add('host');
  }

  private async pass(): Promise<void> {
    let plan = planMetadata(this.instances.values(), this.publicNets, this.ports, this.range, this.taken);
    for (let tries = 0; ; tries++) {
      const busy = await this.openAll(plan.nics);
      if (busy.length === 0 || tries > 8) break;
      // A port another process holds: its NIC takes another one.
      for (const [nic, port] of busy) {
        this.taken.add(port);
        this.ports.delete(nic);
        this.log.warn({ nic, port }, 'metadata port in use by another process; taking another');
      }
      plan = planMetadata(this.instances.values(), this.publicNets, this.ports, this.range, this.taken);
    }
    const { nics, ruleset } = plan;
    const byNic = new Map<string, DesiredInstance>();
    for (const vm of this.instances.values()) for (const n of vm.nics ?? []) byNic.set(n.id, vm);
    this.byNic = byNic;
    if (ruleset !== this.appliedRules) {
      await this.opts.exec(['nft', '-f', '-'], { input: ruleset });
      this.appliedRules = ruleset;
      if (ruleset !== this.loggedRules) this.log.info({ nics: nics.length }, 'metadata rules applied');
      else this.log.debug({ nics: nics.length }, 'metadata rules applied again');
      this.loggedRules = ruleset;
    }
    const keep = new Set(nics.map((n) => n.nicId));
    for (const nic of this.server.ports().keys()) if (!keep.has(nic)) await this.server.close(nic);
  }
}
