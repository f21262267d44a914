import type { RunOptions, RunResult } from '../../host/exec.js';
import type { RateLimit } from '@floe/api';
import type { DhcpDriver, DhcpState, FirewallDriver, NatDriver, NetworkDriver, RateLimitDriver } from './areas.js';
import type { NatNic } from './nat-rules.js';
import type { Argv } from './link-commands.js';
import type { NetSpec, NicSpec, SecurityGroupSpec } from './types.js';

/**
 * The host areas (network links, DHCP/DNS, firewall, rate limits, NAT) composed as the
 * network reconciler calls them. It only orders them: a network's dnsmasq
 * goes before its links are removed, and its files after. The Linux host and
 * the fake host differ only in the areas they compose and in `exec`.
 */
export abstract class ComposedHostNetwork<
  N extends NetworkDriver = NetworkDriver,
  D extends DhcpDriver = DhcpDriver,
  F extends FirewallDriver = FirewallDriver,
>
  implements NetworkDriver, DhcpDriver, FirewallDriver, RateLimitDriver, NatDriver
{
  abstract readonly network: N;
  abstract readonly dhcp: D;
  abstract readonly firewall: F;
  abstract readonly rates: RateLimitDriver;
  abstract readonly nat: NatDriver;

  /** Run one built command on the host (the default route lookup, for one). */
  abstract exec(argv: Argv, options?: RunOptions): Promise<RunResult>;

  ensureNetwork(net: NetSpec, nics: readonly NicSpec[] = []): Promise<string> {
    return this.network.ensureNetwork(net, nics);
  }

  /** Remove the network from this host: its dnsmasq, then its links and state, then dnsmasq's files. */
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

  applyFirewall(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<void> {
    return this.firewall.applyFirewall(nets, nics, groups);
  }

  updateFirewallMembers(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<boolean> {
    return this.firewall.updateFirewallMembers(nets, nics, groups);
  }

  applyNat(nics: readonly NatNic[]): Promise<void> {
    return this.nat.applyNat(nics);
  }

  heldAddresses(): Promise<string[]> {
    return this.nat.heldAddresses();
  }

  applyRateLimit(nicId: string, limit: RateLimit | null): Promise<boolean> {
    return this.rates.applyRateLimit(nicId, limit);
  }

  observeRateLimit(nicId: string): Promise<RateLimit> {
    return this.rates.observeRateLimit(nicId);
  }

  clearRateLimit(nicId: string): Promise<void> {
    return this.rates.clearRateLimit(nicId);
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
