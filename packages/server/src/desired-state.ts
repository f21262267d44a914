import type { DesiredItem, DesiredKind } from '@floe/api';
import type { InstanceService } from './services/instances.js';
import type { NetworkService } from './services/networks.js';
import type { SignalBus } from './services/context.js';
import type { SecurityGroupService } from './services/security-groups.js';
import type { VpnService } from './services/vpn.js';

/**
 * Assembles one kind of desired state for the agents. The agent hub asks every
 * registered provider and knows no kinds: a `desired` signal names the kind,
 * and the provider of that kind says what to send.
 */
export interface DesiredStateProvider<K extends DesiredKind = DesiredKind> {
  readonly kind: K;
  /** The kind's whole set on a host: for the snapshot on connect, and for a change that names no item. */
  forHost(hostId: string): Promise<DesiredItem<K>[]>;
  /**
   * One item, for a change that names it (sent as an upsert); null when there
   * is nothing to send. A provider without it sends its whole set on every change.
   */
  one?(id: string): Promise<DesiredItem<K> | null>;
  /** The host was sent `items`: in its snapshot on connect (`snapshot`), or as a change. */
  sent?(hostId: string, items: readonly DesiredItem<K>[], snapshot: boolean): Promise<void>;
}

/** Instances: one per change, and the agent's receipt of them is recorded (`dispatched`). */
export function instanceDesiredState(instances: InstanceService): DesiredStateProvider<'instance'> {
  return {
    kind: 'instance',
    forHost: (hostId) => instances.desiredForHost(hostId),
    one: (id) => instances.desiredOne(id),
    sent: (hostId, items) =>
      instances.dispatched(
        hostId,
        items.map((i) => i.id),
      ),
  };
}

/** Networks: the host's whole list on every change (members, VXLAN peers, leases). */
export function networkDesiredState(networks: NetworkService): DesiredStateProvider<'network'> {
  return {
    kind: 'network',
    forHost: (hostId) => networks.desiredForHost(hostId),
    async sent(hostId, items, snapshot) {
      if (!snapshot || items.length === 0) return;
      // A host that connects may have a new underlay address: the other members' hosts refresh their VXLAN peers.
      networks.announce((await networks.hostsOf(items.map((n) => n.id))).filter((h) => h !== hostId));
    },
  };
}

/**
 * Security groups: the host's whole list on every change. Their members are NICs anywhere in the
 * project, so a change of a host's networks (an instance placed, a NIC added or removed, a NIC's
 * groups changed) is also one for every host running instances of the projects on that host.
 */
export function securityGroupDesiredState(
  groups: SecurityGroupService,
  signals: SignalBus,
): DesiredStateProvider<'security_group'> {
  signals.listen('desired', (kind, hostId) => {
    if (kind !== 'network') return;
    void groups
      .projectsOnHost(hostId)
      .then((projects) => Promise.all(projects.map((p) => groups.announceProject(p))))
      .catch(() => undefined);
  });
  return { kind: 'security_group', forHost: (hostId) => groups.desiredForHost(hostId) };
}

/** VPN networks: a gateway's whole list on every change (interfaces, peers, reach). */
export function vpnDesiredState(vpn: VpnService): DesiredStateProvider<'vpn'> {
  return { kind: 'vpn', forHost: (hostId) => vpn.desiredForHost(hostId) };
}
