import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import {
  FloeError,
  type DesiredInstance,
  type DesiredNetwork,
  type DesiredSecurityGroup,
  type RateLimit,
} from '@floe/api';
import { rateKey } from './nic-apply.js';
import type { DesiredUpdate, KindReconciler } from './kinds.js';
import { WorkQueue } from './work-queue.js';
import type { HostNetworkDriver } from './drivers/net/driver.js';
import { bridgeName, checkId, NET_ID_RE } from './drivers/net/names.js';
import { parseDefaultRoute, toNetSpec, toNicSpecs } from './net-specs.js';
import { FirewallApplier, firewallInput } from './firewall-applier.js';
import type { NetSpec, NicSpec } from './drivers/net/types.js';
import type { NatNic } from './drivers/net/nat-rules.js';

/** The part of HostNetworkDriver the network reconciler uses (a recording fake in unit tests). */
export type NetworkHost = Pick<
  HostNetworkDriver,
  | 'exec'
  | 'ensureNetwork'
  | 'removeNetwork'
  | 'ensureDhcp'
  | 'applyFirewall'
  | 'updateFirewallMembers'
  | 'ensureTap'
  | 'removeTap'
  | 'applyRateLimit'
  | 'clearRateLimit'
  | 'applyNat'
>;

/** How long `ensureTaps` waits for a NIC's network to be built before it fails. */
const NETWORK_WAIT_MS = 2_000;

/** Options of the network reconciler. */
export interface NetworkReconcilerOptions {
  host: NetworkHost;
  /** The host driver's state directory: `<stateDir>/net/<network id>` marks a network built here (found again after a restart). */
  stateDir: string;
  logger?: Logger;
  /** NAT uplink for host gateways; detected from the default route when absent. */
  natUplink?: string;
  /** Retry after a failed pass (exponential with jitter); default 1 s .. 30 s. */
  retryBackoff?: { initialMs: number; maxMs: number };
  /** A pass this often even when nothing was sent, to repair drift (a bridge or tap changed by hand); default 30 s. */
  resyncIntervalMs?: number;
}

/** A NIC of an instance on this host, with the tap the QEMU driver plugs in. */
export interface LocalNic {
  id: string;
  tap: string;
  mac: string;
}

/**
 * Makes this host's networks match what the control plane sends: for every
 * network with members here, the bridge, VXLAN peers, dnsmasq (pinned leases
 * for local NICs, names for all) and the firewall; networks that are gone are
 * removed. Level-triggered and idempotent: every pass compares with the host;
 * a failed pass is retried with backoff, and a new message triggers a pass.
 */
export class NetworkReconciler implements KindReconciler<'network'> {
  readonly kind = 'network';
  /** The instances placed here tell which NICs are local. */
  readonly follows = {
    instance: (items: readonly DesiredInstance[], { full }: DesiredUpdate) => {
      if (full) this.setInstances(items);
      else for (const i of items) this.updateInstance(i);
    },
    // The firewall is one ruleset: the security groups of the local NICs go into it. A change of them
    // reapplies the firewall alone, on its own key: it does not wait for a pass over the networks.
    security_group: (items: readonly DesiredSecurityGroup[], { full }: DesiredUpdate) => {
      const before = JSON.stringify([...this.groups.values()]);
      if (full) this.groups = new Map(items.map((g) => [g.id, g]));
      else for (const g of items) this.groups.set(g.id, g);
      // Groups are sent again on every change of the project's members: the firewall only when they changed.
      if (JSON.stringify([...this.groups.values()]) !== before) this.kickFirewall();
    },
  };
  /** Security groups the local NICs use or name as remotes, by id. */
  private groups = new Map<string, DesiredSecurityGroup>();
  private readonly log: Logger;
  private networks: DesiredNetwork[] | null = null;
  /** Instances on this host (not being deleted): their NICs are local. */
  private instances = new Map<string, DesiredInstance>();
  /**
   * `host`: a pass over all the host's networks at once; `firewall`: the firewall alone, from the
   * networks and local NICs of the last pass and the groups and instances as they are now.
   */
  private readonly queue: WorkQueue<'host' | 'firewall'>;
  private resyncTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly firewall: FirewallApplier;
  /** The networks and local NICs (without filters) the last pass gave the firewall; null before. */
  private firewallBase: { nets: NetSpec[]; nics: NicSpec[] } | null = null;
  private uplink: string | null | undefined;
  /** Networks the last pass built here, by id: taps can only be plugged into these. */
  private built = new Map<string, NetSpec>();
  /** The NAT last applied and when (as the firewall's). */
  private lastNat: { key: string; at: number } | null = null;
  /** Rate limits last put on local taps, by NIC id, and when. */
  private readonly ratesApplied = new Map<string, { key: string; at: number }>();
  /** Called at the end of the next pass: `ensureTaps` waiting for a network the control plane is sending. */
  private passWaiters: Array<() => void> = [];

  constructor(private readonly opts: NetworkReconcilerOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.uplink = opts.natUplink;
    this.firewall = new FirewallApplier(opts.host, this.log, opts.resyncIntervalMs ?? 30_000);
    this.queue = new WorkQueue({
      handler: (key) => (key === 'host' ? this.pass() : this.applyFirewallOnly()),
      retryBackoff: opts.retryBackoff ?? { initialMs: 1000, maxMs: 30_000 },
    });
  }

  /** The networks of this host: the full list (snapshot or `networks` message), or changed ones by id. */
  setDesired(networks: readonly DesiredNetwork[], { full }: DesiredUpdate): void {
    if (full) this.networks = [...networks];
    else {
      const byId = new Map((this.networks ?? []).map((n) => [n.id, n]));
      for (const n of networks) byId.set(n.id, n);
      this.networks = [...byId.values()];
    }
    // Drift (a bridge deleted by hand, a dnsmasq killed) is found by looking again now and then.
    if (this.resyncTimer === null && !this.stopped) {
      this.resyncTimer = setInterval(() => this.resync(), this.opts.resyncIntervalMs ?? 30_000);
      this.resyncTimer.unref();
    }
    this.kick();
  }

  /** The instances of a snapshot: which NICs are local. */
  setInstances(instances: readonly DesiredInstance[]): void {
    this.instances = new Map(instances.filter((i) => !i.deleting).map((i) => [i.id, i]));
    this.kick();
  }

  /** One instance changed (placed, updated or being deleted). */
  updateInstance(instance: DesiredInstance): void {
    if (instance.deleting) this.instances.delete(instance.id);
    else this.instances.set(instance.id, instance);
    this.kick();
    // Its NICs' groups or filtering may have changed on a running instance: the firewall need not wait for the pass.
    this.kickFirewall();
  }

  /** A pass now, unless one is due anyway (running, or waiting to retry). */
  resync(): void {
    if (this.networks !== null && !this.queue.has('host')) this.queue.add('host');
  }

  /**
   * Create the taps of a local instance's NICs, plugged into their bridges,
   * before QEMU starts; returns them in guest order for the VM driver. Fails
   * (and the instance reconciler retries) while a network is not built yet.
   */
  async ensureTaps(vm: DesiredInstance): Promise<LocalNic[]> {
    await this.whenIdle();
    // An instance and its new network come in two messages, the instance often first: give the
    // network's pass a moment instead of failing into the instance reconciler's retry backoff.
    const deadline = Date.now() + NETWORK_WAIT_MS;
    const missing = () => (vm.nics ?? []).some((n) => !this.built.has(n.network_id));
    while (missing() && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.passWaiters.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, deadline - Date.now()))),
      ]);
      clearTimeout(timer);
      await this.whenIdle();
    }
    const out: LocalNic[] = [];
    for (const nic of [...(vm.nics ?? [])].sort((a, b) => a.index - b.index)) {
      const net = this.built.get(nic.network_id);
      if (net === undefined) {
        throw new FloeError(
          'invalid_state',
          `network ${nic.network_id} of NIC ${nic.id} is not built on this host yet`,
          { network_id: nic.network_id },
        );
      }
      const lease = this.networks?.find((n) => n.id === nic.network_id)?.leases.find((l) => l.nic_id === nic.id);
      const spec: NicSpec = {
        id: nic.id,
        instanceId: vm.id,
        networkId: nic.network_id,
        mac: nic.mac,
        ipv4: nic.ipv4,
        ipv6: nic.ipv6,
        hostname: lease?.hostname ?? vm.name,
      };
      const tap = await this.opts.host.ensureTap(spec, net);
      // A tap made again has lost its limits: put them on before QEMU sends anything through it.
      await this.applyRateLimit(nic.id, nic.rate_limit ?? null);
      out.push({ id: nic.id, tap, mac: nic.mac });
    }
    return out;
  }

  /** Delete the taps of an instance's NICs (after its VM is gone); missing taps are fine. */
  async removeTaps(vm: DesiredInstance): Promise<void> {
    for (const nic of vm.nics ?? []) await this.removeTap(nic.id);
  }

  /** Delete a NIC's tap and what its rate limits left beside it; a missing tap is fine. */
  async removeTap(nicId: string): Promise<void> {
    checkId('nic_id', nicId);
    await this.opts.host.removeTap(nicId);
    await this.opts.host.clearRateLimit(nicId);
    this.ratesApplied.delete(nicId);
  }

  /**
   * NAT of the local NICs' floating IPs and forwarded ports, in one transaction, on the first pass (what
   * an earlier run left goes), then when it changed or a resync interval passed. A NIC whose network has no NAT interface here gets none (and a warning).
   */
  private async applyNat(
    built: ReadonlyMap<string, NetSpec>,
    fail: (err: unknown, what: string) => void,
  ): Promise<void> {
    const nat: NatNic[] = [];
    for (const inst of this.instances.values())
      for (const nic of inst.nics ?? []) {
        if (nic.floating_ipv4 == null && (nic.forwards ?? []).length === 0) continue;
        const natInterface = built.get(nic.network_id)?.natInterface;
        if (nic.ipv4 === null || natInterface === undefined) {
          this.log.warn(
            { nic: nic.id, network: nic.network_id },
            'no NAT interface for this NIC: its floating IP and forwards wait',
          );
          continue;
        }
        nat.push({
          nicId: nic.id,
          ipv4: nic.ipv4,
          natInterface,
          floatingIpv4: nic.floating_ipv4 ?? null,
          forwards: nic.forwards ?? [],
        });
      }
    const key = JSON.stringify(nat);
    const last = this.lastNat;
    if (last !== null && last.key === key && Date.now() - last.at < (this.opts.resyncIntervalMs ?? 30_000)) return;
    try {
      this.lastNat = null;
      await this.opts.host.applyNat(nat);
      this.lastNat = { key, at: Date.now() };
    } catch (err) {
      fail(err, 'cannot apply NAT');
    }
  }

  /** Put a NIC's limits on its tap now, and remember them so that passes do not repeat it. */
  private async applyRateLimit(nicId: string, limit: RateLimit | null): Promise<void> {
    const key = rateKey({ rate_limit: limit }) ?? '';
    const done = await this.opts.host.applyRateLimit(nicId, limit);
    // No limits and no tap (a stopped instance): nothing to do until `ensureTaps` makes the tap and puts its
    // limits on. Not asking again saves every pass a look for each such NIC, a command each.
    if (done || key === '') this.ratesApplied.set(nicId, { key, at: Date.now() });
  }

  /**
   * The limits of every local NIC whose tap exists, unless applied the same
   * within a resync interval (a limit changed on a running instance, or drift).
   */
  private async applyRateLimits(fail: (err: unknown, what: string) => void): Promise<void> {
    const every = this.opts.resyncIntervalMs ?? 30_000;
    for (const inst of this.instances.values())
      for (const nic of inst.nics ?? []) {
        const key = rateKey(nic) ?? '';
        const last = this.ratesApplied.get(nic.id);
        // A tap found without limits once stays so: no commands for it on every resync.
        if (last !== undefined && last.key === key && (key === '' || Date.now() - last.at < every)) continue;
        try {
          await this.applyRateLimit(nic.id, nic.rate_limit ?? null);
        } catch (err) {
          fail(err, 'cannot apply rate limits');
        }
      }
  }

  /** Wait for the pass in flight and those asked for. */
  whenIdle(): Promise<void> {
    return this.queue.whenIdle();
  }

  isIdle(): boolean {
    return this.queue.size === 0;
  }

  /** Stop retrying; the host's networks stay as they are (guests keep their connectivity). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer !== null) clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    await this.queue.stop();
  }

  private kick(): void {
    if (this.networks !== null) this.queue.add('host');
  }

  private kickFirewall(): void {
    if (this.networks !== null && this.firewallBase !== null) this.queue.add('firewall');
  }

  /** The firewall alone: the networks and local NICs of the last pass, with the groups and instances of now. */
  private async applyFirewallOnly(): Promise<void> {
    const base = this.firewallBase;
    if (base === null) return;
    try {
      await this.firewall.apply(() => firewallInput(base.nets, base.nics, this.instances.values(), this.groups));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot apply the firewall');
      throw err;
    }
  }

  private async pass(): Promise<void> {
    try {
      await this.buildAll();
    } finally {
      const waiters = this.passWaiters;
      this.passWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async buildAll(): Promise<void> {
    const networks = this.networks ?? [];
    let failed = false;
    const fail = (err: unknown, what: string, network?: string) => {
      failed = true;
      this.log.warn({ err: (err as Error).message, network }, what);
    };
    const localNicIds = new Set<string>();
    for (const inst of this.instances.values()) for (const n of inst.nics ?? []) localNicIds.add(n.id);

    // Networks built here before (this run or an earlier one) that are no longer wanted; removed first, so that a
    // public network giving the host's address back to its interface does so before the NAT uplink is looked up.
    const wanted = new Set(networks.map((n) => n.id));
    const present = await readdir(join(this.opts.stateDir, 'net')).catch(() => [] as string[]);
    const stale = present.filter((id) => NET_ID_RE.test(id) && !wanted.has(id));
    for (const id of stale) {
      try {
        await this.opts.host.removeNetwork(id);
        this.log.info({ network: id }, 'network removed from this host');
      } catch (err) {
        fail(err, 'cannot remove network', id);
      }
    }

    // Looked up on every pass: a public network taking over (or giving back) the default route's interface moves it.
    if (this.opts.natUplink === undefined && networks.some((n) => n.gateway === 'host')) {
      const out = await this.opts.host
        .exec(['ip', '-j', 'route', 'show', 'default'], { allowFail: true })
        .catch(() => null);
      const uplink = out === null ? null : parseDefaultRoute(out.stdout);
      if (uplink === null && this.uplink !== null)
        this.log.warn('no default route: host-gateway networks are not NATed');
      this.uplink = uplink;
    }

    const built: NetSpec[] = [];
    const builtById = new Map<string, NetSpec>();
    const localNics: NicSpec[] = [];
    // Public networks first: they hold the host's address, and private ones may NAT through them.
    const ordered = [...networks.filter((n) => n.kind === 'public'), ...networks.filter((n) => n.kind !== 'public')];
    for (const net of ordered) {
      // Once a public network's bridge took over the default route's interface, host gateways NAT out through the bridge.
      const owner = this.uplink == null ? undefined : built.find((b) => b.physical === this.uplink);
      const natUplink = this.uplink == null ? undefined : owner !== undefined ? bridgeName(owner.id) : this.uplink;
      let spec: NetSpec;
      try {
        spec = toNetSpec(net, { natUplink });
      } catch (err) {
        fail(err, 'cannot build network', net.id);
        continue;
      }
      const nics = toNicSpecs(net);
      const local = nics.filter((n) => localNicIds.has(n.id));
      try {
        // The marker first: a network half built before a failure is still found and removed later.
        await mkdir(join(this.opts.stateDir, 'net', net.id), { recursive: true, mode: 0o755 });
        // With the local NICs: their taps go back into a bridge that was rebuilt.
        await this.opts.host.ensureNetwork(spec, local);
        const dhcp = await this.opts.host.ensureDhcp(
          spec,
          local,
          nics.filter((n) => !localNicIds.has(n.id)),
        );
        if (dhcp.started) this.log.info({ network: net.id, name: net.name, pid: dhcp.pid }, 'dnsmasq started');
        if (dhcp.skipped !== undefined)
          this.log.warn({ network: net.id, name: net.name, reason: dhcp.skipped }, 'no DHCP on this network');
        built.push(spec);
        builtById.set(spec.id, spec);
        localNics.push(...local);
      } catch (err) {
        fail(err, 'cannot build network', net.id);
      }
    }

    this.built = builtById;

    if (built.length > 0 || stale.length > 0 || this.firewall.applied) {
      // The security groups and filters as they are when the firewall's turn comes (a change may have come meanwhile).
      this.firewallBase = { nets: built, nics: localNics };
      try {
        await this.firewall.apply(() => firewallInput(built, localNics, this.instances.values(), this.groups));
      } catch (err) {
        fail(err, 'cannot apply the firewall');
      }
    }

    await this.applyRateLimits(fail);
    await this.applyNat(builtById, fail);

    // Each failure was logged where it happened; the queue retries the whole pass with backoff.
    if (failed) throw new Error('network pass failed');
  }
}
