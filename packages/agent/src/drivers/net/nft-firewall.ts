import type { FirewallDriver } from './areas.js';
import type { HostExec } from './host-exec.js';
import type { NftTable } from './nft-tables.js';
import { firewallTables, memberSetUpdate, renderFirewall } from './ruleset.js';
import type { NetSpec, NicSpec, SecurityGroupSpec } from './types.js';

/**
 * The firewall area on Linux: the whole ruleset of ruleset.ts in one `nft -f`
 * transaction, so nftables applies all of it or none (a ruleset it refuses
 * leaves the previous one in place); or, when only members of security groups
 * changed since, their named sets refilled in place, also in one transaction.
 */
export class NftFirewall implements FirewallDriver {
  constructor(private readonly exec: HostExec) {}

  /** Whether br_netfilter's sysctls were turned on (once per driver). */
  private bridgeTracking = false;
  /** The tables the host was last given (whole or in place); null before the first and after a failure. */
  private applied: NftTable[] | null = null;
  /** The tables last built and what from: a change that is not one of members only is built once, not twice. */
  private built: { key: string; tables: NftTable[] } | null = null;

  private tables(nets: readonly NetSpec[], nics: readonly NicSpec[], groups: readonly SecurityGroupSpec[]): NftTable[] {
    const key = JSON.stringify([nets, nics, groups]);
    if (this.built?.key === key) return this.built.tables;
    const tables = firewallTables({ nets, nics, groups });
    this.built = { key, tables };
    return tables;
  }

  /** Replace floe's whole nftables ruleset (all networks and NICs of this host) in one transaction. */
  async applyFirewall(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<void> {
    const tables = this.tables(nets, nics, groups);
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
    this.applied = null;
    await this.exec(['nft', '-f', '-'], { input: renderFirewall(tables) });
    this.applied = tables;
  }

  /**
   * Refill the member sets of security groups in place when they are all that differs from the
   * ruleset last applied; false (nothing done) when the whole ruleset is needed. A refused update
   * throws and leaves the sets as they were.
   */
  async updateFirewallMembers(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<boolean> {
    if (this.applied === null) return false;
    const tables = this.tables(nets, nics, groups);
    const script = memberSetUpdate(this.applied, tables);
    if (script === null) return false;
    if (script !== '') {
      this.applied = null;
      await this.exec(['nft', '-f', '-'], { input: script });
    }
    this.applied = tables;
    return true;
  }
}
