import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FloeError } from '@floe/api';
import type { Logger } from 'pino';
import { writeJsonAtomic } from '../../host/files.js';
import { checkId, checkIfName, checkIp } from '../../host/validate.js';
import type { NetworkDriver } from './areas.js';
import { checkNet, checkNic, type CheckedNet } from './checked-spec.js';
import { observeHost, observeLink, runBatch, type HostExec, type ObservedHost } from './host-exec.js';
import { networkCommands, portCommands, toBatch } from './link-commands.js';
import { bridgeName, networkStateDir, tapName, vpnPortName, vxlanName } from './names.js';
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
import type { NetSpec, NicSpec, ObservedLink, ObservedNet } from './types.js';
import { applyVpnPort, removeVpnRules } from './vpn-port-apply.js';

/** What the Linux network driver needs of its host. */
export interface LinuxNetworkOptions {
  exec: HostExec;
  /** The agent's state directory (absolute); a takeover is recorded under `<stateDir>/net/<network id>/`. */
  stateDir: string;
  /** This host's underlay address: the VXLAN source, the address its peers list. */
  underlay: string;
  /** Commands run inside a network namespace (tests): forwarding is set with `sysctl` there, not in /proc. */
  inNamespace: boolean;
  /** Where repairs of drift are reported (a bridge rebuilt, a tap plugged back in). */
  logger?: Logger | undefined;
  /**
   * Called before a network's bridge is created (first time, or after it was
   * deleted by hand): a DHCP server of a vanished bridge holds sockets on an
   * interface that is gone and must go first.
   */
  beforeBridgeCreated?: ((netId: string) => Promise<void>) | undefined;
}

/** The record of a public network's takeover: which interface, and what it had. */
interface TakeoverRecord {
  physical: string;
  config: HostConfig;
}

/**
 * The network area on Linux (iproute2): bridges joined by VXLAN or bridged to
 * a physical interface of the host (public networks), taps for QEMU, the
 * host's addresses on bridges and forwarding. Every method observes first and
 * changes only what differs (a bridge deleted by hand is recreated by the
 * next ensureNetwork).
 */
export class LinuxNetworkDriver implements NetworkDriver {
  private readonly exec: HostExec;
  private forwarding = { 4: false, 6: false };
  private readonly withoutPort = new Set<string>();

  constructor(private readonly opts: LinuxNetworkOptions) {
    checkIp('underlay', opts.underlay);
    this.exec = opts.exec;
  }

  /** Read links with their addresses and the flood entries of the VXLAN devices in `floodsOf` (all when omitted). */
  observe(floodsOf?: readonly string[]): Promise<ObservedHost> {
    return observeHost(this.exec, floodsOf);
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
    if (observed.bridge === undefined) await this.opts.beforeBridgeCreated?.(net.id);
    await runBatch(this.exec, cmds);
    if (cmds.length > 0 && observed.bridge !== undefined) {
      this.opts.logger?.warn(
        { network: net.id, bridge: c.bridge, commands: cmds.map((a) => a.join(' ')) },
        'network repaired on this host',
      );
    }
    if (net.gatewayMode === 'host' && net.natInterface !== undefined)
      await this.ensureForwarding(c.v4 !== null, c.v6 !== null);
    await this.ensureVpnPort(c);
    return c.bridge;
  }

  /**
   * The network's VPN router port (vpn-port.ts), or its removal. A network seen without one in this
   * process is not looked at again until its spec asks for a port: most networks never have one.
   */
  private async ensureVpnPort(c: CheckedNet): Promise<void> {
    const id = c.net.id;
    if (c.net.vpnPort === undefined && this.withoutPort.has(id)) return;
    if (c.net.vpnPort !== undefined) await this.ensureForwarding(c.v4 !== null, c.v6 !== null);
    this.withoutPort.delete(id);
    const cmds = await applyVpnPort(this.exec, c);
    if (c.net.vpnPort === undefined) this.withoutPort.add(id);
    if (cmds.length > 0)
      this.opts.logger?.info({ network: id, commands: cmds.map((a) => a.join(' ')) }, 'VPN port changed');
  }

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
      if (!this.opts.inNamespace) {
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
    const o = await this.observeTakeover(c);
    const link = (await this.observe([])).links.get(c.bridge);
    if (link !== undefined && link.kind !== 'bridge')
      throw new Error(`interface ${c.bridge} exists and is not a bridge`);
    if (!o.bridgeExists) await this.opts.beforeBridgeCreated?.(c.net.id);
    const cfg = hostConfig(o);
    await this.saveTakeover(c.net.id, { physical: phys, config: cfg });
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
  async observeTakeover(c: CheckedNet): Promise<TakeoverObserved> {
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
    const saved = await this.loadTakeover(c.net.id);
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

  // The file keeps its first name: hosts that took an interface over before have their record there.
  private takeoverFile(netId: string): string {
    return join(networkStateDir(this.opts.stateDir, netId), 'uplink.json');
  }

  private async loadTakeover(netId: string): Promise<TakeoverRecord | null> {
    const text = await readFile(this.takeoverFile(netId), 'utf8').catch(() => null);
    if (text === null) return null;
    try {
      return JSON.parse(text) as TakeoverRecord;
    } catch {
      return null;
    }
  }

  private async saveTakeover(netId: string, rec: TakeoverRecord): Promise<void> {
    const file = this.takeoverFile(netId);
    await mkdir(join(file, '..'), { recursive: true, mode: 0o755 });
    // Written whole and renamed: a crash never leaves half a record of the host's addresses.
    await writeJsonAtomic(file, rec, 0o600);
  }

  /**
   * Remove the network from this host: its VXLAN device, bridge and state
   * directory; a public network first gives the host's addresses and routes
   * back to its physical interface. Missing pieces are fine.
   */
  async removeNetwork(netId: string): Promise<void> {
    checkId('network_id', netId);
    const rec = await this.loadTakeover(netId);
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
        const cfg = hostConfig(await this.observeTakeover(c));
        // A failure throws before the bridge is deleted: the host keeps its address there, and the next pass retries.
        await this.exec(['ip', '-batch', '-'], { input: toBatch(releaseCommands(c, cfg)) });
      }
    }
    await removeVpnRules(this.exec, netId);
    this.withoutPort.delete(netId);
    await this.exec(['ip', 'link', 'del', vpnPortName(netId)], { allowFail: true });
    await this.exec(['ip', 'link', 'del', vxlanName(netId)], { allowFail: true });
    await this.exec(['ip', 'link', 'del', bridgeName(netId)], { allowFail: true });
    await rm(networkStateDir(this.opts.stateDir, netId), { recursive: true, force: true });
  }

  /** Create the NIC's persistent tap (unless it exists) and plug it into its network's bridge, up. Returns the tap name for QEMU. */
  async ensureTap(nic: NicSpec, net: NetSpec): Promise<string> {
    checkNic(nic);
    const tap = tapName(nic.id);
    // This tap only: a host with many NICs makes them one after the other, and each look at the whole host is big.
    const link = await observeLink(this.exec, tap);
    if (link !== undefined && link.kind !== 'tun') throw new Error(`interface ${tap} exists and is not a tap`);
    const c = checkNet(net);
    if (link !== undefined && link.master === c.bridge && link.up && link.mtu === net.mtu) return tap;
    await runBatch(this.exec, [
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
}
