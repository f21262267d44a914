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

  /** Replace floe's whole nftables ruleset (all networks and NICs of this host) in one transaction. */
  async applyFirewall(
    nets: readonly NetSpec[],
    nics: readonly NicSpec[],
    groups: readonly SecurityGroupSpec[] = [],
  ): Promise<void> {
    await this.exec(['nft', '-f', '-'], { input: nftRuleset(nets, nics, groups) });
  }
}
