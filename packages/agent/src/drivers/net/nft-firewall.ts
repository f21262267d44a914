import type { FirewallDriver } from './areas.js';
import type { HostExec } from './host-exec.js';
import { nftRuleset } from './ruleset.js';
import type { NetSpec, NicSpec, SecurityGroupSpec } from './types.js';

/**
 * The firewall area on Linux: the whole ruleset of ruleset.ts in one `nft -f`
 * transaction, so nftables applies all of it or none (a ruleset it refuses
 * leaves the previous one in place).
 */
export class NftFirewall implements FirewallDriver {
  constructor(private readonly exec: HostExec) {}

  /** Whether br_netfilter's sysctls were turned on (once per driver). */
  private bridgeTracking = false;

  /** Replace floe's whole nftables ruleset (all networks and NICs of this host) in one transaction. */
  async applyFirewall(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<void> {
    const ruleset = nftRuleset(nets, nics, groups);
    // Security groups are stateful through the inet hooks' connection tracking, which sees bridged packets
    // only with br_netfilter and its sysctls on (per network namespace). Best effort: a kernel without it
    // still gets the ruleset (and only stateless filtering works there).
    if (nics.some((n) => n.securityGroups !== undefined && n.filtering !== false) && !this.bridgeTracking) {
      await this.exec(['modprobe', 'br_netfilter'], { allowFail: true }).catch(() => undefined);
      const set = await this.exec(
        ['sysctl', '-q', '-w', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1'],
        { allowFail: true },
      ).catch(() => null);
      this.bridgeTracking = set?.code === 0;
    }
    await this.exec(['nft', '-f', '-'], { input: ruleset });
  }
}
