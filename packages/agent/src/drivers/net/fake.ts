import { FloeError } from '@floe/api';
import { checkId } from '../../host/validate.js';
import type { DhcpDriver, DhcpState, FirewallDriver, NetworkDriver } from './areas.js';
import { checkNet, checkNic, type CheckedNet } from './checked-spec.js';
import { dnsmasqFiles, dnsmasqPaths } from './dnsmasq.js';
import type { ObservedHost } from './host-exec.js';
import { inSubnet } from './ip.js';
import { networkCommands, portCommands, type Argv } from './link-commands.js';
import { bridgeName, tapName, vxlanName } from './names.js';
import type { NftTable } from './nft-tables.js';
import { firewallTables, memberSetUpdate, renderFirewall } from './ruleset.js';
import {
  hostConfig,
  releaseCommands,
  takeoverCommands,
  type HostAddr,
  type HostConfig,
  type TakeoverObserved,
} from './takeover-commands.js';
import type { NetSpec, NicSpec, ObservedLink, SecurityGroupSpec } from './types.js';

/*
 * Fakes of the three host areas over one in-memory host. The network fake
 * runs the same pure builders as the Linux driver and applies their `ip` and
 * `bridge` commands to its model, so the two decide alike; the DHCP fake
 * keeps dnsmasq's files and a pid per network; the firewall fake keeps the
 * last ruleset. All three pass the contract suites of @floe/testkit.
 */

/** One interface of the fake host. */
export interface FakeLink extends ObservedLink {
  /** `address/prefix` list. */
  addrs: string[];
  /** VXLAN only: flood destinations. */
  floods: string[];
}

/** One network's fake dnsmasq. */
export interface FakeDnsmasq {
  pid: number;
  conf: string;
  hosts: string;
  names: string;
}

const ZERO_MAC = '00:00:00:00:00:00';

/** Run `fn` as an async method would: what it throws becomes a rejection. */
const settle = <T>(fn: () => T): Promise<T> => new Promise((resolve) => resolve(fn()));

/** The host the fakes share: links, sysctls, DHCP servers and the firewall ruleset. */
export class FakeHost {
  readonly links = new Map<string, FakeLink>();
  readonly sysctls = new Map<string, string>();
  readonly dnsmasq = new Map<string, FakeDnsmasq>();
  /** The last ruleset applied; null before the first. */
  ruleset: string | null = null;
  /** Every command the network fake ran, as text (tests and debugging). */
  readonly commands: string[] = [];
  private nextPid = 1000;

  /** A physical interface of the host (a public network takes it over). */
  addInterface(name: string, opts: { mac: string; addrs?: string[]; mtu?: number }): void {
    this.links.set(name, this.link(name, null, { address: opts.mac, mtu: opts.mtu ?? 1500, up: true }));
    this.links.get(name)!.addrs.push(...(opts.addrs ?? []));
  }

  /** A pid for a new fake process. */
  pid(): number {
    return this.nextPid++;
  }

  /** What the Linux driver would read back with `ip -j -d addr` and `bridge -j fdb`. */
  observe(): ObservedHost {
    const out: ObservedHost = { links: new Map(), addrs: new Map(), floods: new Map() };
    for (const l of this.links.values()) {
      const { addrs, floods, ...link } = l;
      out.links.set(l.name, { ...link });
      out.addrs.set(l.name, [...addrs]);
      if (l.kind === 'vxlan' && floods.length > 0) out.floods.set(l.name, [...floods]);
    }
    return out;
  }

  /** Delete a link as `ip link del` would (ports of a bridge leave it); false when it did not exist. */
  deleteLink(name: string): boolean {
    if (!this.links.delete(name)) return false;
    for (const l of this.links.values()) if (l.master === name) l.master = null;
    return true;
  }

  private link(name: string, kind: string | null, rest: Partial<FakeLink> = {}): FakeLink {
    return {
      name,
      kind,
      master: null,
      mtu: 1500,
      up: false,
      address: '',
      vni: null,
      local: null,
      addrs: [],
      floods: [],
      ...rest,
    };
  }

  private need(name: string | undefined): FakeLink {
    const l = name === undefined ? undefined : this.links.get(name);
    if (l === undefined) throw new Error(`Cannot find device "${name}"`);
    return l;
  }

  /** Apply one command of the builders (link-commands.ts, takeover-commands.ts) to the model; throws as `ip` would. */
  run(cmd: Argv): void {
    this.commands.push(cmd.join(' '));
    const [tool, obj, verb, ...rest] = cmd;
    const opt = (key: string): string | undefined => {
      const i = rest.indexOf(key);
      return i < 0 ? undefined : rest[i + 1];
    };
    if (tool === 'bridge' && obj === 'fdb') {
      const vx = this.need(opt('dev'));
      const dst = opt('dst')!;
      if (rest[0] !== ZERO_MAC) throw new Error(`fake: only flood entries are modelled: ${cmd.join(' ')}`);
      if (verb === 'append' && !vx.floods.includes(dst)) vx.floods.push(dst);
      else if (verb === 'del') vx.floods = vx.floods.filter((d) => d !== dst);
      return;
    }
    if (tool !== 'ip') throw new Error(`fake: unknown command ${cmd.join(' ')}`);
    if (obj === 'link' && verb === 'add') {
      const name = rest[0]!;
      if (this.links.has(name)) throw new Error('RTNETLINK answers: File exists');
      const kind = opt('type')!;
      this.links.set(
        name,
        this.link(name, kind, {
          mtu: Number(opt('mtu') ?? 1500),
          address: opt('address') ?? '',
          vni: kind === 'vxlan' ? Number(opt('id')) : null,
          local: kind === 'vxlan' ? (opt('local') ?? null) : null,
        }),
      );
    } else if (obj === 'link' && verb === 'set') {
      const l = this.need(rest[0]);
      if (opt('address') !== undefined) l.address = opt('address')!;
      if (opt('mtu') !== undefined) l.mtu = Number(opt('mtu'));
      if (opt('master') !== undefined) l.master = this.need(opt('master')).name;
      if (rest.includes('nomaster')) l.master = null;
      if (rest.includes('up')) l.up = true;
    } else if (obj === 'link' && verb === 'del') {
      if (!this.deleteLink(rest[0]!)) throw new Error(`Cannot find device "${rest[0]}"`);
    } else if (obj === 'tuntap' && verb === 'add') {
      const name = opt('dev')!;
      if (this.links.has(name)) throw new Error('ioctl(TUNSETIFF): Device or resource busy');
      this.links.set(name, this.link(name, 'tun'));
    } else if (obj === 'addr' && (verb === 'replace' || verb === 'del')) {
      const l = this.need(opt('dev'));
      const a = rest[0]!;
      l.addrs = l.addrs.filter((x) => x !== a);
      if (verb === 'replace') l.addrs.push(a);
    } else if (obj === 'route' && verb === 'replace') {
      this.need(opt('dev'));
    } else {
      throw new Error(`fake: unknown command ${cmd.join(' ')}`);
    }
  }
}

/** The network area over a FakeHost: the Linux driver's decisions, applied to the model. */
export class FakeNetworkDriver implements NetworkDriver {
  private readonly takeovers = new Map<string, { physical: string; config: HostConfig }>();

  constructor(
    readonly host: FakeHost,
    private readonly opts: { underlay: string; beforeBridgeCreated?: (netId: string) => Promise<void> },
  ) {}

  async ensureNetwork(net: NetSpec, nics: readonly NicSpec[] = []): Promise<string> {
    const c = checkNet(net);
    if (c.physical !== null) return this.ensurePublic(c);
    nics.forEach((n, i) => checkNic(n, `nics[${i}]`));
    const o = this.host.observe();
    const bridge = o.links.get(c.bridge);
    const cmds = networkCommands(
      net,
      {
        bridge,
        vxlan: o.links.get(c.vxlan),
        bridgeAddrs: o.addrs.get(c.bridge) ?? [],
        floods: o.floods.get(c.vxlan) ?? [],
        ports: nics.map((n) => o.links.get(tapName(n.id))).filter((l): l is ObservedLink => l !== undefined),
      },
      this.opts.underlay,
    );
    if (bridge === undefined) await this.opts.beforeBridgeCreated?.(net.id);
    for (const cmd of cmds) this.host.run(cmd);
    if (net.gatewayMode === 'host' && net.natInterface !== undefined) {
      if (c.v4 !== null) this.host.sysctls.set('net.ipv4.ip_forward', '1');
      if (c.v6 !== null) this.host.sysctls.set('net.ipv6.conf.all.forwarding', '1');
    }
    return c.bridge;
  }

  private observeTakeover(c: CheckedNet): TakeoverObserved {
    const phys = this.host.links.get(c.physical!);
    if (phys === undefined)
      throw new FloeError('validation_failed', `network ${c.net.id}: the host has no interface ${c.physical}`, {
        field: 'physical',
      });
    const global = (l: FakeLink | undefined): HostAddr[] =>
      (l?.addrs ?? [])
        .filter((a) => !a.startsWith('fe80:'))
        .map((a) => {
          const [address, prefix] = a.split('/') as [string, string];
          return { address, prefix: Number(prefix), family: address.includes(':') ? 6 : 4 };
        });
    const bridge = this.host.links.get(c.bridge);
    const saved = this.takeovers.get(c.net.id);
    return {
      physical: { mac: phys.address, master: phys.master },
      bridgeExists: bridge !== undefined,
      physAddrs: global(phys),
      physRoutes: [],
      bridgeAddrs: global(bridge),
      bridgeRoutes: [],
      saved: saved !== undefined && saved.physical === c.physical ? saved.config : null,
    };
  }

  private async ensurePublic(c: CheckedNet): Promise<string> {
    const o = this.observeTakeover(c);
    const link = this.host.links.get(c.bridge);
    if (link !== undefined && link.kind !== 'bridge')
      throw new Error(`interface ${c.bridge} exists and is not a bridge`);
    if (!o.bridgeExists) await this.opts.beforeBridgeCreated?.(c.net.id);
    this.takeovers.set(c.net.id, { physical: c.physical!, config: hostConfig(o) });
    for (const cmd of takeoverCommands(c, o)) this.host.run(cmd);
    return c.bridge;
  }

  removeNetwork(netId: string): Promise<void> {
    return settle(() => this.remove(netId));
  }

  private remove(netId: string): void {
    checkId('network_id', netId);
    const rec = this.takeovers.get(netId);
    if (rec !== undefined && this.host.links.has(rec.physical)) {
      const c = checkNet({
        id: netId,
        kind: 'public',
        physical: rec.physical,
        vni: 1,
        mtu: 1500,
        gatewayMode: 'none',
        dns: false,
        peers: [],
        ipv4: { cidr: '192.0.2.0/24', gateway: null },
        ipv6: null,
      });
      for (const cmd of releaseCommands(c, hostConfig(this.observeTakeover(c)))) this.host.run(cmd);
    }
    this.takeovers.delete(netId);
    this.host.deleteLink(vxlanName(netId));
    this.host.deleteLink(bridgeName(netId));
  }

  ensureTap(nic: NicSpec, net: NetSpec): Promise<string> {
    return settle(() => this.tap(nic, net));
  }

  private tap(nic: NicSpec, net: NetSpec): string {
    checkNic(nic);
    const tap = tapName(nic.id);
    const link = this.host.links.get(tap);
    if (link !== undefined && link.kind !== 'tun') throw new Error(`interface ${tap} exists and is not a tap`);
    const c = checkNet(net);
    if (link === undefined) this.host.run(['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    for (const cmd of portCommands(tap, c)) this.host.run(cmd);
    return tap;
  }

  attachPort(ifname: string, net: NetSpec): Promise<void> {
    return settle(() => {
      for (const cmd of portCommands(ifname, checkNet(net))) this.host.run(cmd);
    });
  }

  removeTap(nicId: string): Promise<void> {
    return settle(() => void this.host.deleteLink(tapName(nicId)));
  }
}

/** The DHCP/DNS area over a FakeHost: dnsmasq's files as the Linux driver would write them, and a pid per network. */
export class FakeDhcpDriver implements DhcpDriver {
  constructor(
    readonly host: FakeHost,
    /** Where the real files would live (absolute; nothing is written): it shapes the config's paths. */
    private readonly stateDir: string,
  ) {
    dnsmasqPaths(stateDir, 'net_x');
  }

  async ensureDhcp(net: NetSpec, nics: readonly NicSpec[], remoteNics: readonly NicSpec[] = []): Promise<DhcpState> {
    const files = dnsmasqFiles(net, nics, dnsmasqPaths(this.stateDir, net.id), remoteNics);
    if (net.kind === 'public') {
      const c = checkNet(net);
      const have = this.host.links.get(c.bridge)?.addrs ?? [];
      if (!have.some((a) => c.v4 !== null && inSubnet(a.split('/')[0]!, c.v4.address, c.v4.prefix))) {
        await this.stopDhcp(net.id);
        return {
          pid: null,
          started: false,
          skipped: `the host has no address of ${c.v4?.cidr} on ${c.bridge}: no DHCP, guests need static network-config`,
        };
      }
    }
    const running = this.host.dnsmasq.get(net.id);
    if (running !== undefined && running.conf === files.conf) {
      if (running.hosts === files.hosts && running.names === files.names) return { pid: running.pid, started: false };
      Object.assign(running, { hosts: files.hosts, names: files.names });
      return { pid: running.pid, started: false, reloaded: true };
    }
    const pid = this.host.pid();
    this.host.dnsmasq.set(net.id, { pid, ...files });
    return { pid, started: true };
  }

  dhcpPid(netId: string): Promise<number | null> {
    return settle(() => this.host.dnsmasq.get(checkId('network_id', netId))?.pid ?? null);
  }

  stopDhcp(netId: string): Promise<void> {
    return settle(() => void this.host.dnsmasq.delete(checkId('network_id', netId)));
  }

  removeDhcp(netId: string): Promise<void> {
    return this.stopDhcp(netId);
  }
}

/** The firewall area over a FakeHost: the ruleset is built (and refused) as the Linux driver builds it, then kept whole. */
export class FakeFirewall implements FirewallDriver {
  constructor(readonly host: FakeHost) {}

  /** The tables last applied, as the Linux driver keeps them to tell a change of members only. */
  private applied: NftTable[] | null = null;
  /** Member-set updates done in place, as the scripts the Linux driver would have run. */
  readonly memberUpdates: string[] = [];

  applyFirewall(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<void> {
    // Built first: a ruleset that does not build leaves the previous one, as a refused `nft -f` transaction does.
    return settle(() => {
      const tables = firewallTables({ nets, nics, groups });
      this.host.ruleset = renderFirewall(tables);
      this.applied = tables;
    });
  }

  updateFirewallMembers(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<boolean> {
    return settle(() => {
      if (this.applied === null) return false;
      const tables = firewallTables({ nets, nics, groups });
      const script = memberSetUpdate(this.applied, tables);
      if (script === null) return false;
      if (script !== '') this.memberUpdates.push(script);
      // The sets refilled in place leave the host with the ruleset the whole tables render to.
      this.host.ruleset = renderFirewall(tables);
      this.applied = tables;
      return true;
    });
  }
}
