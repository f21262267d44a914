import type { Logger } from 'pino';
import type { RunOptions, RunResult } from '../../host/exec.js';
import { checkNetns } from '../../host/validate.js';
import { ComposedHostNetwork } from './composed.js';
import type { CheckedNet } from './checked-spec.js';
import { DnsmasqDriver } from './dnsmasq-driver.js';
import { hostExec, observeHost, type HostExec, type ObservedHost } from './host-exec.js';
import type { Argv } from './link-commands.js';
import { LinuxNetworkDriver } from './network-driver.js';
import { NftFirewall } from './nft-firewall.js';
import { TcRateLimiter } from './rate-limiter.js';
import { NftNat } from './nat-driver.js';
import type { TakeoverObserved } from './takeover-commands.js';

export type { DhcpState } from './areas.js';

/** How a HostNetworkDriver reaches its host. */
export interface HostNetworkOptions {
  /** The agent's state directory (absolute); a network's files live under `<stateDir>/net/<network id>/`. */
  stateDir: string;
  /** This host's underlay address: the VXLAN source, the address its peers list. */
  underlay: string;
  /** Run every command inside this network namespace (`ip netns exec <ns> ...`): tests and multi-host simulations. */
  netns?: string;
  /** Where repairs of drift are reported (a bridge rebuilt, a tap plugged back in). */
  logger?: Logger;
}

/**
 * The host half of floe networking on Linux, as the network reconciler calls
 * it: the areas (network links, DHCP/DNS, firewall, rate limits, NAT) composed over one
 * way of running commands. A network's dnsmasq also goes before its bridge is
 * rebuilt.
 */
export class HostNetworkDriver extends ComposedHostNetwork<LinuxNetworkDriver, DnsmasqDriver, NftFirewall> {
  readonly network: LinuxNetworkDriver;
  readonly dhcp: DnsmasqDriver;
  readonly firewall: NftFirewall;
  readonly rates: TcRateLimiter;
  readonly nat: NftNat;

  constructor(opts: HostNetworkOptions) {
    super();
    const netns = opts.netns === undefined ? undefined : checkNetns('netns', opts.netns);
    const direct = hostExec(netns);
    this.direct = direct;
    // Through this.exec, so that a subclass (tests that inject failures) sees every command of every area.
    const exec: HostExec = (argv, options) => this.exec(argv, options);
    this.dhcp = new DnsmasqDriver(exec, opts.stateDir);
    this.network = new LinuxNetworkDriver({
      exec,
      stateDir: opts.stateDir,
      underlay: opts.underlay,
      inNamespace: netns !== undefined,
      logger: opts.logger,
      beforeBridgeCreated: (netId) => this.dhcp.stopDhcp(netId),
    });
    this.firewall = new NftFirewall(exec);
    this.rates = new TcRateLimiter(exec);
    this.nat = new NftNat(exec, opts.stateDir, opts.logger);
  }

  private readonly direct: HostExec;

  /** Run one built command, inside the namespace when there is one. */
  exec(argv: Argv, options: RunOptions = {}): Promise<RunResult> {
    return this.direct(argv, options);
  }

  /** Read links, addresses and the flood entries of the VXLAN devices in `floodsOf` (all when omitted). */
  observe(floodsOf?: readonly string[]): Promise<ObservedHost> {
    return observeHost((argv, options) => this.exec(argv, options), floodsOf);
  }

  /** What a public network's takeover starts from (see LinuxNetworkDriver.observeTakeover). */
  observeTakeover(c: CheckedNet): Promise<TakeoverObserved> {
    return this.network.observeTakeover(c);
  }
}
