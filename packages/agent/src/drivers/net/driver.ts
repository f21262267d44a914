import { mkdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FloeError } from '@floe/api';
import { run, type RunOptions, type RunResult } from '../../host/exec.js';
import type { Logger } from 'pino';
import { checkId, checkIfName, checkIp, checkNetns } from '../../host/validate.js';
import { checkNet, checkNic, type CheckedNet } from './checked-spec.js';
import { networkCommands, portCommands, toBatch, type Argv } from './link-commands.js';
import { dnsmasqFiles, dnsmasqPaths } from './dnsmasq.js';
import { inSubnet } from './ip.js';
import { nftRuleset } from './ruleset.js';
import { bridgeName, tapName, vxlanName } from './names.js';
import type { NetSpec, NicSpec, ObservedLink, ObservedNet } from './types.js';

export type { ObservedLink } from './types.js';
import {
  hostConfig,
  parseIfAddrs,
  parseRoutes,
  releaseCommands,
  takeoverCommands,
  type HostConfig,
  type HostRoute,
  type TakeoverObserved,
} from './takeover-commands.js';

/** How a HostNetworkDriver reaches its host. */
export interface HostNetworkOptions {
  /** The agent's state directory (absolute); dnsmasq files live under `<stateDir>/net/<network id>/`. */
  stateDir: string;
  /** This host's underlay address: the VXLAN source, the address its peers list. */
  underlay: string;
  /** Run every command inside this network namespace (`ip netns exec <ns> ...`): tests and multi-host simulations. */
  netns?: string;
  /** Where repairs of drift are reported (a bridge rebuilt, a tap plugged back in). */
  logger?: Logger;
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
  /** True when a running dnsmasq was told to re-read its leases and names (SIGHUP). */
  reloaded?: boolean;
  /** Why no dnsmasq runs (a public network without a host address in its subnet); guests rely on static network-config. */
  skipped?: string;
}

/** Write `text` to `file` (whole, by rename) unless it already holds it; true when it changed. */
async function writeIfChanged(file: string, text: string): Promise<boolean> {
  if ((await readFile(file, 'utf8').catch(() => null)) === text) return false;
  await writeFile(`${file}.tmp`, text, { mode: 0o644 });
  await rename(`${file}.tmp`, file);
  return true;
}

/** The record of a public network's takeover: which interface, and what it had. */
interface UplinkRecord {
  physical: string;
  config: HostConfig;
}

interface IpLink {
  ifname: string;
  master?: string;
  mtu: number;
  flags?: string[];
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string } };
  addr_info?: { local: string; prefixlen: number }[];
}

const ZERO_MAC = '00:00:00:00:00:00';

/**
 * The host half of floe networking: bridges joined by VXLAN or bridged to a
 * physical interface of the host (public networks), taps for QEMU,
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
    return this.netns === undefined
      ? run(cmd, args, options)
      : run('ip', ['netns', 'exec', this.netns, cmd, ...args], options);
  }

  /**
   * Read links with their addresses (`ip -j -d addr`, one process) and the
   * flood entries of the VXLAN devices in `floodsOf` (`bridge -j fdb show dev`;
   * all of them when omitted).
   */
  async observe(floodsOf?: readonly string[]): Promise<ObservedHost> {
    const out: ObservedHost = { links: new Map(), addrs: new Map(), floods: new Map() };
    const addrs = await this.exec(['ip', '-j', '-d', 'addr', 'show']);
    for (const l of JSON.parse(addrs.stdout || '[]') as IpLink[]) {
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
      out.addrs.set(
        l.ifname,
        (l.addr_info ?? []).map((i) => `${i.local}/${i.prefixlen}`),
      );
    }
    const devices = floodsOf === undefined ? [undefined] : floodsOf.filter((d) => out.links.get(d)?.kind === 'vxlan');
    for (const dev of devices) {
      const fdb = await this.exec(
        ['bridge', '-j', 'fdb', 'show', ...(dev === undefined ? [] : ['dev', checkIfName('dev', dev)])],
        { allowFail: dev !== undefined },
      );
      if (fdb.code !== 0) continue;
      for (const e of JSON.parse(fdb.stdout || '[]') as {
        mac: string;
        ifname?: string;
        dev?: string;
        dst?: string;
      }[]) {
        const name = e.ifname ?? e.dev ?? dev;
        if (e.mac !== ZERO_MAC || name === undefined || e.dst === undefined) continue;
        out.floods.set(name, [...(out.floods.get(name) ?? []), e.dst]);
      }
    }
    return out;
  }

  /** Run `ip` (or `bridge`) commands as one `-batch` process: one process start instead of one per command. */
  private async batch(cmds: readonly Argv[]): Promise<void> {
    for (const tool of ['ip', 'bridge'] as const) {
      const mine = cmds.filter((c) => c[0] === tool);
      if (mine.length === 1) await this.exec(mine[0]!);
      else if (mine.length > 1) await this.exec([tool, '-batch', '-'], { input: toBatch(mine, tool) });
    }
  }

  /**
   * Make the network's bridge, VXLAN device, flood entries and gateway
   * addresses match `net`, and put the taps of `nics` that exist back into the
   * bridge if they left it (a bridge deleted by hand takes its ports along);
   * a missing tap is left to the instance reconciler. Only what differs from
   * the host is changed, in one `ip -batch` (and one `bridge -batch` for flood
   * entries). A public network: its bridge over the physical interface,
   * holding the host's addresses and routes. Returns the bridge name.
   */
  async ensureNetwork(net: NetSpec, nics: readonly NicSpec[] = []): Promise<string> {
    const c = checkNet(net);
    if (c.physical !== null) return this.ensurePublic(c);
    nics.forEach((n, i) => checkNic(n, `nics[${i}]`));
    const o = await this.observe([c.vxlan]);
    const observed: ObservedNet = {
      bridge: o.links.get(c.bridge),
      vxlan: o.links.get(c.vxlan),
      bridgeAddrs: o.addrs.get(c.bridge) ?? [],
      floods: o.floods.get(c.vxlan) ?? [],
      ports: nics.map((n) => o.links.get(tapName(n.id))).filter((l): l is ObservedLink => l !== undefined),
    };
    const cmds = networkCommands(net, observed, this.opts.underlay);
    // A dnsmasq of a vanished bridge holds sockets on an interface that is gone; ensureDhcp starts a fresh one.
    if (observed.bridge === undefined) await this.stopDhcp(net.id);
    await this.batch(cmds);
    if (cmds.length > 0 && observed.bridge !== undefined) {
      this.opts.logger?.warn(
        { network: net.id, bridge: c.bridge, commands: cmds.map((a) => a.join(' ')) },
        'network repaired on this host',
      );
    }
    if (net.gatewayMode === 'host' && net.natInterface !== undefined)
      await this.ensureForwarding(c.v4 !== null, c.v6 !== null);
    return c.bridge;
  }

  private forwarding = { 4: false, 6: false };

  /**
   * IP forwarding on, for a host gateway. On the host itself it is read and
   * written in /proc (no process); inside a namespace (tests) `sysctl` sets it
   * once per driver, since nobody else changes a namespace the test made.
   */
  private async ensureForwarding(v4: boolean, v6: boolean): Promise<void> {
    const want = [
      ...(v4 ? [[4, '/proc/sys/net/ipv4/ip_forward', 'net.ipv4.ip_forward'] as const] : []),
      ...(v6 ? [[6, '/proc/sys/net/ipv6/conf/all/forwarding', 'net.ipv6.conf.all.forwarding'] as const] : []),
    ];
    for (const [family, file, key] of want) {
      if (this.netns === undefined) {
        if ((await readFile(file, 'utf8').catch(() => '')).trim() !== '1') await writeFile(file, '1\n');
      } else if (!this.forwarding[family]) {
        await this.exec(['sysctl', '-q', '-w', `${key}=1`]);
        this.forwarding[family] = true;
      }
    }
  }

  /**
   * A public network: the bridge takes over its physical interface (see
   * takeoverCommands). What the interface had is recorded first, so that a
   * bridge deleted by hand (which takes the moved addresses with it) is rebuilt
   * with them; the steps run as one `ip -batch`, and a batch that fails
   * halfway is undone (addresses and routes back on the interface) before the
   * error is thrown, for the next pass to retry.
   */
  private async ensurePublic(c: CheckedNet): Promise<string> {
    const phys = c.physical!;
    const o = await this.observeUplink(c);
    const link = (await this.observe([])).links.get(c.bridge);
    if (link !== undefined && link.kind !== 'bridge')
      throw new Error(`interface ${c.bridge} exists and is not a bridge`);
    // A dnsmasq of a vanished bridge holds sockets on an interface that is gone; ensureDhcp starts a fresh one.
    if (!o.bridgeExists) await this.stopDhcp(c.net.id);
    const cfg = hostConfig(o);
    await this.saveUplink(c.net.id, { physical: phys, config: cfg });
    const cmds = takeoverCommands(c, o);
    try {
      await this.exec(['ip', '-batch', '-'], { input: toBatch(cmds) });
    } catch (err) {
      await this.exec(['ip', '-force', '-batch', '-'], {
        input: toBatch(releaseCommands(c, cfg)),
        allowFail: true,
      }).catch(() => undefined);
      throw err;
    }
    return c.bridge;
  }

  /** Read the physical interface and the bridge of a public network (addresses, routes) and the record of the last takeover. */
  async observeUplink(c: CheckedNet): Promise<TakeoverObserved> {
    const phys = c.physical!;
    const show = async (dev: string) => {
      const a = await this.exec(['ip', '-j', 'addr', 'show', 'dev', dev], { allowFail: true });
      if (a.code !== 0) return null;
      const parsed = parseIfAddrs(a.stdout);
      if (parsed === null) return null;
      const routes: HostRoute[] = [];
      for (const family of [4, 6] as const) {
        const r = await this.exec(['ip', '-j', `-${family}`, 'route', 'show', 'dev', dev]);
        routes.push(...parseRoutes(r.stdout, family));
      }
      return { ...parsed, routes };
    };
    const p = await show(phys);
    if (p === null)
      throw new FloeError('validation_failed', `network ${c.net.id}: the host has no interface ${phys}`, {
        field: 'physical',
      });
    const b = await show(c.bridge);
    const saved = await this.loadUplink(c.net.id);
    return {
      physical: { mac: p.mac, master: p.master },
      bridgeExists: b !== null,
      physAddrs: p.addrs,
      physRoutes: p.routes,
      bridgeAddrs: b?.addrs ?? [],
      bridgeRoutes: b?.routes ?? [],
      saved: saved !== null && saved.physical === phys ? saved.config : null,
    };
  }

  private uplinkFile(netId: string): string {
    return join(dnsmasqPaths(this.opts.stateDir, netId).dir, 'uplink.json');
  }

  private async loadUplink(netId: string): Promise<UplinkRecord | null> {
    const text = await readFile(this.uplinkFile(netId), 'utf8').catch(() => null);
    if (text === null) return null;
    try {
      return JSON.parse(text) as UplinkRecord;
    } catch {
      return null;
    }
  }

  private async saveUplink(netId: string, rec: UplinkRecord): Promise<void> {
    const file = this.uplinkFile(netId);
    await mkdir(join(file, '..'), { recursive: true, mode: 0o755 });
    // Written whole and renamed: a crash never leaves half a record of the host's addresses.
    await writeFile(`${file}.tmp`, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  /**
   * Remove the network from this host: its dnsmasq, VXLAN device, bridge and
   * state files; a public network first gives the host's addresses and routes
   * back to its physical interface. Missing pieces are fine.
   */
  async removeNetwork(netId: string): Promise<void> {
    checkId('network_id', netId);
    await this.stopDhcp(netId);
    const rec = await this.loadUplink(netId);
    if (rec !== null) {
      // Only the id is known here: a minimal public spec names the bridge and the interface.
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
      const physGone = (await this.exec(['ip', 'link', 'show', 'dev', rec.physical], { allowFail: true })).code !== 0;
      if (!physGone) {
        // What is on the bridge and the interface now wins over the record (an address the admin changed since).
        const cfg = hostConfig(await this.observeUplink(c));
        // A failure throws before the bridge is deleted: the host keeps its address there, and the next pass retries.
        await this.exec(['ip', '-batch', '-'], { input: toBatch(releaseCommands(c, cfg)) });
      }
    }
    await this.exec(['ip', 'link', 'del', vxlanName(netId)], { allowFail: true });
    await this.exec(['ip', 'link', 'del', bridgeName(netId)], { allowFail: true });
    const paths = dnsmasqPaths(this.opts.stateDir, netId);
    await rm(paths.dir, { recursive: true, force: true });
    await rm(paths.runDir, { recursive: true, force: true });
    // The agent's directory under /run goes with its last network.
    await rmdir(dirname(paths.runDir)).catch(() => undefined);
  }

  /** Create the NIC's persistent tap (unless it exists) and plug it into its network's bridge, up. Returns the tap name for QEMU. */
  async ensureTap(nic: NicSpec, net: NetSpec): Promise<string> {
    checkNic(nic);
    const tap = tapName(nic.id);
    const o = await this.observe([]);
    const link = o.links.get(tap);
    if (link !== undefined && link.kind !== 'tun') throw new Error(`interface ${tap} exists and is not a tap`);
    const c = checkNet(net);
    if (link !== undefined && link.master === c.bridge && link.up && link.mtu === net.mtu) return tap;
    await this.batch([
      ...(link === undefined ? [['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap']] : []),
      ...portCommands(tap, c),
    ]);
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
   * the same config is adopted, not duplicated (an agent restart keeps it); new
   * leases or names only make it re-read its files (SIGHUP); a changed config
   * restarts it. dnsmasq daemonizes, so it outlives the agent.
   */
  async ensureDhcp(net: NetSpec, nics: readonly NicSpec[], remoteNics: readonly NicSpec[] = []): Promise<DhcpState> {
    const paths = dnsmasqPaths(this.opts.stateDir, net.id);
    const files = dnsmasqFiles(net, nics, paths, remoteNics);
    if (net.kind === 'public') {
      const c = checkNet(net);
      const have = (await this.observe([])).addrs.get(c.bridge) ?? [];
      if (!have.some((a) => c.v4 !== null && inSubnet(a.split('/')[0]!, c.v4.address, c.v4.prefix))) {
        await this.stopDhcp(net.id);
        return {
          pid: null,
          started: false,
          skipped: `the host has no address of ${c.v4?.cidr} on ${c.bridge}: no DHCP, guests need static network-config`,
        };
      }
    }
    await mkdir(paths.dir, { recursive: true, mode: 0o755 });
    await mkdir(paths.runDir, { recursive: true, mode: 0o755 });
    // Leases and names first, whole files renamed into place: dnsmasq never reads half of one.
    const changed = (
      await Promise.all([writeIfChanged(paths.hostsFile, files.hosts), writeIfChanged(paths.namesFile, files.names)])
    ).some(Boolean);
    const running = await this.dhcpPid(net.id);
    const old = await readFile(paths.conf, 'utf8').catch(() => null);
    if (running !== null && old === files.conf) {
      if (!changed) return { pid: running, started: false };
      process.kill(running, 'SIGHUP');
      return { pid: running, started: false, reloaded: true };
    }
    if (running !== null) await this.stopDhcp(net.id);
    await writeFile(paths.conf, files.conf, { mode: 0o644 });
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
