import type { Logger } from 'pino';
import type { DesiredInstance, DesiredSecurityGroup } from '@floe/api';
import type { HostNetworkDriver } from './drivers/net/driver.js';
import type { FirewallInput } from './drivers/net/ruleset.js';
import type { NicSpec } from './drivers/net/types.js';
import { toGroupSpec } from './net-specs.js';

/** The part of the host driver the firewall applier uses. */
export type FirewallHost = Pick<HostNetworkDriver, 'applyFirewall' | 'updateFirewallMembers'>;

/** How an application went: nothing to do, member sets refilled in place, or the whole ruleset. */
export type FirewallApplied = 'unchanged' | 'members' | 'ruleset';

/**
 * The firewall input of local NICs (without filters) as instances and groups say now: each NIC with
 * the security groups of its instance's NIC that the host was sent (a group not heard of yet, whose
 * message follows the instance's, leaves the NIC closed until it comes) and its filtering flag; NICs
 * whose instance is no longer here are left out. Control planes without security groups send none:
 * such a NIC is not filtered. Groups go in sorted by id.
 */
export function firewallInput(
  nets: FirewallInput['nets'],
  nics: readonly NicSpec[],
  instances: Iterable<DesiredInstance>,
  groups: ReadonlyMap<string, DesiredSecurityGroup>,
): FirewallInput {
  const wire = new Map<string, NonNullable<DesiredInstance['nics']>[number]>();
  for (const inst of instances) for (const n of inst.nics ?? []) wire.set(n.id, n);
  const out: NicSpec[] = [];
  for (const nic of nics) {
    const w = wire.get(nic.id);
    if (w === undefined) continue;
    out.push(
      w.security_groups === undefined
        ? nic
        : {
            ...nic,
            securityGroups: w.security_groups.filter((g) => groups.has(g)),
            filtering: w.filtering !== false,
          },
    );
  }
  const specs = [...groups.values()].sort((a, b) => a.id.localeCompare(b.id)).map(toGroupSpec);
  return { nets, nics: out, groups: specs };
}

/**
 * Applies the host's firewall for the network reconciler: at the end of every
 * full pass, and on its own when only security groups changed. One
 * application at a time, in the order asked; each reads its input when its
 * turn comes, so the last one applied is built from the newest state. The
 * same input again within a resync interval is skipped; a change of group
 * members only refills their sets in place (falling back to the whole
 * ruleset when that is refused); the whole ruleset goes again once per resync
 * interval, to repair drift.
 */
export class FirewallApplier {
  private turn: Promise<unknown> = Promise.resolve();
  /** The input last applied, and when the whole ruleset last went to the host. */
  private last: { key: string; wholeAt: number } | null = null;
  /** Whether this run applied a firewall yet (a host whose last network went still gets its empty one). */
  applied = false;

  constructor(
    private readonly host: FirewallHost,
    private readonly log: Logger,
    private readonly resyncIntervalMs: number,
  ) {}

  /** Apply the firewall `input()` describes once the applications asked before are done. */
  apply(input: () => FirewallInput): Promise<FirewallApplied> {
    const run = this.turn.then(() => this.applyNow(input()));
    this.turn = run.catch(() => undefined);
    return run;
  }

  private async applyNow(input: FirewallInput): Promise<FirewallApplied> {
    const key = JSON.stringify(input);
    const last = this.last;
    const recent = last !== null && Date.now() - last.wholeAt < this.resyncIntervalMs;
    if (recent && last.key === key) return 'unchanged';
    this.last = null;
    const { nets, nics, groups } = input;
    if (recent) {
      try {
        if (await this.host.updateFirewallMembers(nets, nics, groups)) {
          this.last = { key, wholeAt: last.wholeAt };
          return 'members';
        }
      } catch (err) {
        this.log.warn(
          { err: (err as Error).message },
          'cannot refill the member sets in place: applying the whole firewall',
        );
      }
    }
    await this.host.applyFirewall(nets, nics, groups);
    this.applied = true;
    this.last = { key, wholeAt: Date.now() };
    return 'ruleset';
  }
}
