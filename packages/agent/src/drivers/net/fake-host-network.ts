import type { RunOptions, RunResult } from '../../host/exec.js';
import type { DhcpDriver, DhcpState, FirewallDriver, NetworkDriver } from './areas.js';
import { FakeDhcpDriver, FakeFirewall, FakeHost, FakeNetworkDriver } from './fake.js';
import type { Argv } from './link-commands.js';
import type { NetSpec, NicSpec } from './types.js';

/** How a FakeHostNetwork is set up. */
export interface FakeHostNetworkOptions {
  /** Shapes the paths in dnsmasq's configuration (absolute; nothing is written). */
  stateDir: string;
  underlay: string;
  /** The interface of the host's default route (the NAT interface of host gateways); none when absent. */
  defaultRoute?: string;
  /** The host to share (a test that inspects it); a new one when absent. */
  host?: FakeHost;
}

/**
 * HostNetworkDriver's surface over the fakes: what the network reconciler
 * calls, for tests and simulations that need no root. `exec` answers only
 * the default route lookup (through the bridge of a public network that took
 * the route's interface over, as on Linux).
 */
export class FakeHostNetwork implements NetworkDriver, DhcpDriver, FirewallDriver {
  readonly host: FakeHost;
  readonly network: FakeNetworkDriver;
  readonly dhcp: FakeDhcpDriver;
  readonly firewall: FakeFirewall;
  private readonly defaultRoute: string | undefined;

  constructor(opts: FakeHostNetworkOptions) {
    this.host = opts.host ?? new FakeHost();
    this.defaultRoute = opts.defaultRoute;
    if (opts.defaultRoute !== undefined && !this.host.links.has(opts.defaultRoute))
      this.host.addInterface(opts.defaultRoute, { mac: '52:54:00:ff:ff:01' });
    this.dhcp = new FakeDhcpDriver(this.host, opts.stateDir);
    this.network = new FakeNetworkDriver(this.host, {
      underlay: opts.underlay,
      beforeBridgeCreated: (netId) => this.dhcp.stopDhcp(netId),
    });
    this.firewall = new FakeFirewall(this.host);
  }

  /** `ip -j route show default` only; any other command is refused. */
  exec(argv: Argv, options: RunOptions = {}): Promise<RunResult> {
    if (argv.join(' ') !== 'ip -j route show default') {
      const err = new Error(`the fake host runs no ${argv.join(' ')}`);
      return options.allowFail === true
        ? Promise.resolve({ code: 1, stdout: '', stderr: err.message })
        : Promise.reject(err);
    }
    const dev =
      this.defaultRoute === undefined
        ? undefined
        : (this.host.links.get(this.defaultRoute)?.master ?? this.defaultRoute);
    return Promise.resolve({
      code: 0,
      stdout: JSON.stringify(dev === undefined ? [] : [{ dst: 'default', dev }]),
      stderr: '',
    });
  }

  ensureNetwork(net: NetSpec, nics: readonly NicSpec[] = []): Promise<string> {
    return this.network.ensureNetwork(net, nics);
  }

  async removeNetwork(netId: string): Promise<void> {
    await this.dhcp.stopDhcp(netId);
    await this.network.removeNetwork(netId);
    await this.dhcp.removeDhcp(netId);
  }

  ensureTap(nic: NicSpec, net: NetSpec): Promise<string> {
    return this.network.ensureTap(nic, net);
  }

  attachPort(ifname: string, net: NetSpec): Promise<void> {
    return this.network.attachPort(ifname, net);
  }

  removeTap(nicId: string): Promise<void> {
    return this.network.removeTap(nicId);
  }

  applyFirewall(nets: readonly NetSpec[], nics: readonly NicSpec[]): Promise<void> {
    return this.firewall.applyFirewall(nets, nics);
  }

  ensureDhcp(net: NetSpec, nics: readonly NicSpec[], remoteNics: readonly NicSpec[] = []): Promise<DhcpState> {
    return this.dhcp.ensureDhcp(net, nics, remoteNics);
  }

  dhcpPid(netId: string): Promise<number | null> {
    return this.dhcp.dhcpPid(netId);
  }

  stopDhcp(netId: string): Promise<void> {
    return this.dhcp.stopDhcp(netId);
  }

  removeDhcp(netId: string): Promise<void> {
    return this.dhcp.removeDhcp(netId);
  }
}
