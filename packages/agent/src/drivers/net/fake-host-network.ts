import type { RunOptions, RunResult } from '../../host/exec.js';
import { ComposedHostNetwork } from './composed.js';
import { FakeDhcpDriver, FakeFirewall, FakeHost, FakeNetworkDriver } from './fake.js';
import { FakeNat } from './fake-nat.js';
import { FakeRateLimiter } from './fake-rate-limit.js';
import type { Argv } from './link-commands.js';

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
export class FakeHostNetwork extends ComposedHostNetwork<FakeNetworkDriver, FakeDhcpDriver, FakeFirewall> {
  readonly host: FakeHost;
  readonly network: FakeNetworkDriver;
  readonly dhcp: FakeDhcpDriver;
  readonly firewall: FakeFirewall;
  readonly rates: FakeRateLimiter;
  readonly nat = new FakeNat();
  private readonly defaultRoute: string | undefined;

  constructor(opts: FakeHostNetworkOptions) {
    super();
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
    this.rates = new FakeRateLimiter(this.host);
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
}
