import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, type RunOptions, type RunResult } from '../../host/exec.js';
import {
  addressCommands, bridgeCreateCommands, checkNet, checkNic, fdbCommand, portCommands, vxlanCreateCommands, type Argv,
} from './builders.js';
import { dnsmasqConfig, dnsmasqPaths } from './dnsmasq.js';
import { nftRuleset } from './nft.js';
import { bridgeName, checkId, checkIfName, checkIp, checkNetns, tapName, vxlanName } from './names.js';
import type { NetSpec, NicSpec } from './types.js';

/** How a HostNetworkDriver reaches its host. */
export interface HostNetworkOptions {
  /** The agent's state directory (absolute); dnsmasq files live under `<stateDir>/net/<network id>/`. */
  stateDir: string;
  /** This host's underlay address: the VXLAN source, the address its peers list. */
  underlay: string;
  /** Run every command inside this network namespace (`ip netns exec <ns> ...`): tests and multi-host simulations. */
  netns?: string;
}

/** One interface as `ip -j -d link` reports it, reduced to what floe compares. */
export interface ObservedLink {
  name: string;
  kind: string | null;
  master: string | null;
  mtu: number;
  up: boolean;
  address: string;
  /** VXLAN only: the VNI and the local address. */
  vni: number | null;
  local: string | null;
}

/** What the host has, read back with the JSON modes of `ip` and `bridge`. */
export interface ObservedHost {
  links: Map<string, ObservedLink>;
  /** Interface → `address/prefix` list. */
  addrs: Map<string, string[]>;
  /** VXLAN device → destinations of its all-zero (flood) FDB entries. */
  floods: Map<string, string[]>;
}

/** What ensureDhcp did. */
export interface DhcpState {
  pid: number | null;
  /** True when dnsmasq was started (first time, config change, or it had died). */
  started: boolean;
}

interface IpLink {
  ifname: string;
  master?: string;
  mtu: number;
  flags?: string[];
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string } };
}

const ZERO_MAC = '00:00:00:00:00:00';

/**
 * The host half of floe networking: bridges joined by VXLAN, taps for QEMU,
 * one dnsmasq per network, and the nftables ruleset. Every method compares
 * with what it observes first and is safe to call again (drift repair: a
 * bridge deleted by hand is recreated by the next ensureNetwork).
 */
export class HostNetworkDriver {
  private readonly netns: string | undefined;

  constructor(private readonly opts: HostNetworkOptions) {
    checkIp('underlay', opts.underlay);
    this.netns = opts.netns === undefined ? undefined : checkNetns('netns', opts.netns);
    dnsmasqPaths(opts.stateDir, 'net_x');
  }

  /** Run one built command, inside the namespace when there is one. */
  async exec(argv: Argv, options: RunOptions = {}): Promise<RunResult> {
    const [cmd, ...args] = argv;
    if (cmd === undefined) throw new Error('empty command');
    return this.netns === undefined ? run(cmd, args, options) : run('ip', ['netns', 'exec', this.netns, cmd, ...args], options);
  }

  /** Read links, addresses and flood entries (`ip -j -d link`, `ip -j addr`, `bridge -j fdb`). */
  async observe(): Promise<ObservedHost> {
    const [links, addrs, fdb] = await Promise.all([
      this.exec(['ip', '-j', '-d', 'link', 'show']),
      this.exec(['ip', '-j', 'addr', 'show']),
      this.exec(['bridge', '-j', 'fdb', 'show']),
    ]);
    const out: ObservedHost = { links: new Map(), addrs: new Map(), floods: new Map() };
    for (const l of JSON.parse(links.stdout || '[]') as IpLink[]) {
      out.links.set(l.ifname, {
        name: l.ifname,
        kind: l.linkinfo?.info_kind ?? null,
        master: l.master ?? null,
        mtu: l.mtu,
        up: (l.flags ?? []).includes('UP'),
        address: l.address ?? '',
        vni: l.linkinfo?.info_data?.id ?? null,
        local: l.linkinfo?.info_data?.local ?? null,
      });
    }
    for (const a of JSON.parse(addrs.stdout || '[]') as { ifname: string; addr_info?: { local: string; prefixlen: number }[] }[]) {
      out.addrs.set(a.ifname, (a.addr_info ?? []).map((i) => `${i.local}/${i.prefixlen}`));
    }
    for (const e of JSON.parse(fdb.stdout || '[]') as { mac: string; ifname?: string; dev?: string; dst?: string }[]) {
      const dev = e.ifname ?? e.dev;
      if (e.mac !== ZERO_MAC || dev === undefined || e.dst === undefined) continue;
      out.floods.set(dev, [...(out.floods.get(dev) ?? []), e.dst]);
    }
    return out;
  }

  /** Make the network's bridge, VXLAN device, flood entries and gateway addresses match `net`. Returns the bridge name. */
  async ensureNetwork(net: NetSpec): Promise<string> {
    const c = checkNet(net);
    const o = await this.observe();
    const br = o.links.get(c.bridge);
    if (br === undefined) {
      // A dnsmasq of a vanished bridge holds sockets on an interface that is gone; ensureDhcp starts a fresh one.
      await this.stopDhcp(net.id);
      for (const cmd of bridgeCreateCommands(c)) await this.exec(cmd);
    } else if (br.kind !== 'bridge') {
      throw new Error(`interface ${c.bridge} exists and is not a bridge`);
    } else {
      await this.exec(['ip', 'link', 'set', c.bridge, 'address', c.gatewayMac, 'mtu', String(net.mtu)]);
    }
    const vx = o.links.get(c.vxlan);
    if (vx !== undefined && (vx.kind !== 'vxlan' || vx.vni !== net.vni || vx.local !== this.opts.underlay)) {
      await this.exec(['ip', 'link', 'del', c.vxlan]);
    }
    if (vx === undefined || vx.vni !== net.vni || vx.local !== this.opts.underlay || vx.kind !== 'vxlan') {
      for (const cmd of vxlanCreateCommands(c, this.opts.underlay)) await this.exec(cmd);
    } else {
      await this.exec(['ip', 'link', 'set', c.vxlan, 'mtu', String(net.mtu), 'master', c.bridge, 'up']);
    }
    // A recreated VXLAN device has no entries; a kept one may have stale ones.
    const have = vx !== undefined && vx.vni === net.vni && vx.local === this.opts.underlay ? (o.floods.get(c.vxlan) ?? []) : [];
    for (const p of net.peers) if (!have.includes(p)) await this.exec(fdbCommand(c, p, 'append'));
    for (const p of have) if (!net.peers.includes(p)) await this.exec(fdbCommand(c, p, 'del'));
    for (const cmd of addressCommands(c)) await this.exec(cmd);
    await this.exec(['ip', 'link', 'set', c.bridge, 'up']);
    if (net.gatewayMode === 'host' && net.uplink !== undefined) {
      if (c.v4) await this.exec(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
      if (c.v6) await this.exec(['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
    }
    return c.bridge;
  }

  /** Remove the network from this host: its dnsmasq, VXLAN device, bridge and state files. Missing pieces are fine. */
  async removeNetwork(netId: string): Promise<void> {
    checkId('network_id', netId);
    await this.stopDhcp(netId);
    await this.exec(['ip', 'link', 'del', vxlanName(netId)], { allowFail: true });
    await this.exec(['ip', 'link', 'del', bridgeName(netId)], { allowFail: true });
    await rm(dnsmasqPaths(this.opts.stateDir, netId).dir, { recursive: true, force: true });
  }

  /** Create the NIC's persistent tap (unless it exists) and plug it into its network's bridge, up. Returns the tap name for QEMU. */
  async ensureTap(nic: NicSpec, net: NetSpec): Promise<string> {
    checkNic(nic);
    const tap = tapName(nic.id);
    const o = await this.observe();
    const link = o.links.get(tap);
    if (link !== undefined && link.kind !== 'tun') throw new Error(`interface ${tap} exists and is not a tap`);
    if (link === undefined) await this.exec(['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await this.attachPort(tap, net);
    return tap;
  }

  /** Plug an existing interface into the network's bridge (a tap, or a veth standing in for one in tests). */
  async attachPort(ifname: string, net: NetSpec): Promise<void> {
    for (const cmd of portCommands(checkIfName('ifname', ifname), checkNet(net))) await this.exec(cmd);
  }

  /** Delete a NIC's tap; a missing tap is fine. */
  async removeTap(nicId: string): Promise<void> {
    await this.exec(['ip', 'link', 'del', tapName(nicId)], { allowFail: true });
  }

  /** Replace floe's whole nftables ruleset (all networks and NICs of this host) in one transaction. */
  async applyFirewall(nets: readonly NetSpec[], nics: readonly NicSpec[]): Promise<void> {
    await this.exec(['nft', '-f', '-'], { input: nftRuleset(nets, nics) });
  }

  /**
   * Run the network's dnsmasq with the config for `nics` (this host's) and
   * `remoteNics` (names only). A dnsmasq already running from the pidfile with
   * the same config is adopted, not duplicated (an agent restart keeps it); a
   * changed config restarts it. dnsmasq daemonizes, so it outlives the agent.
   */
  async ensureDhcp(net: NetSpec, nics: readonly NicSpec[], remoteNics: readonly NicSpec[] = []): Promise<DhcpState> {
    const paths = dnsmasqPaths(this.opts.stateDir, net.id);
    const conf = dnsmasqConfig(net, nics, paths, remoteNics);
    const running = await this.dhcpPid(net.id);
    const old = await readFile(paths.conf, 'utf8').catch(() => null);
    if (running !== null && old === conf) return { pid: running, started: false };
    if (running !== null) await this.stopDhcp(net.id);
    await mkdir(paths.dir, { recursive: true, mode: 0o755 });
    await writeFile(paths.conf, conf, { mode: 0o644 });
    await this.exec(['dnsmasq', `--conf-file=${paths.conf}`]);
    return { pid: await this.dhcpPid(net.id), started: true };
  }

  /** The pid of the network's running dnsmasq, found by its pidfile and checked against its command line; null if none. */
  async dhcpPid(netId: string): Promise<number | null> {
    const paths = dnsmasqPaths(this.opts.stateDir, netId);
    const text = await readFile(paths.pidFile, 'utf8').catch(() => '');
    const pid = Number.parseInt(text.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 1) return null;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    // A recycled pid belongs to some other process: never adopt or signal it.
    return cmdline.split('\0').includes(`--conf-file=${paths.conf}`) ? pid : null;
  }

  /** Stop the network's dnsmasq (SIGTERM, then SIGKILL after 2 s) and forget its pidfile. */
  async stopDhcp(netId: string): Promise<void> {
    const pid = await this.dhcpPid(netId);
    if (pid !== null) {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 40 && (await this.dhcpPid(netId)) !== null; i++) await sleep(50);
      if ((await this.dhcpPid(netId)) !== null) process.kill(pid, 'SIGKILL');
    }
    await rm(dnsmasqPaths(this.opts.stateDir, netId).pidFile, { force: true });
  }
}
