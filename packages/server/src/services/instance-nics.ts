import { FloeError, MAX_NICS, type Nic, type NicPatch, type NicRequest, type Operation } from '@floe/api';
import { transaction, type Db } from '../db/index.js';
import type { InstancesTable } from '../db/schema.js';
import type { CommitHook } from './commit-hook.js';
import type { ServiceContext } from './context.js';
import { bumpForChange } from './instance-bump.js';
import { nicDeltas, reserve } from './quota.js';
import type { InstanceCache } from './instance-cache.js';
import { instanceRow, lockedInstanceRow } from './instance-rows.js';
import type { NicService } from './nics.js';
import type { OperationService } from './operations.js';
import type { PostCommit } from './post-commit.js';
import type { Principal } from './principal.js';

/** NICs of an instance as the API changes them: hot-add and hot-remove, each an operation on the instance. */
export class InstanceNicChanges {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly operations: OperationService,
    private readonly nics: NicService,
    private readonly cache: InstanceCache,
    private readonly post: PostCommit,
  ) {}

  /** The NICs of an instance, in slot order. */
  async list(principal: Principal, ref: string, project: string): Promise<Nic[]> {
    const row = await instanceRow(principal, ref, project, this.ctx.store.db);
    return this.nics.list(this.ctx.store.db, row.id);
  }

  /**
   * Hot-add a NIC: record it with its MAC and addresses and bump the
   * generation, so the agent plugs it into the VM (or into its next start). `onCommit` records the
   * answer in the same transaction.
   */
  async add(
    principal: Principal,
    ref: string,
    project: string,
    req: NicRequest,
    onCommit?: CommitHook<{ nic: Nic; operation: Operation }>,
  ): Promise<{ nic: Nic; operation: Operation }> {
    const { operation, events, hostId, instanceId, nic } = await transaction(this.ctx.store, async (trx) => {
      const row = await lockedInstanceRow(principal, ref, project, trx);
      if (row.deleting === 1)
        throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
      const slots = await this.nics.slots(trx, row.id);
      if (slots.length >= MAX_NICS)
        throw new FloeError('too_many_nics', `an instance has at most ${MAX_NICS} NICs`, {
          field: 'network',
          limit: MAX_NICS,
        });
      // The lowest free slot, so a removed NIC's slot is reused.
      const used = new Set(slots);
      let index = 0;
      while (used.has(index)) index++;
      const nic = await this.nics.attachOne(trx, principal, row, req, index);
      const taken = await trx.selectFrom('nics').select(['network_id', 'ipv4']).where('id', '=', nic.id).execute();
      await reserve(trx, this.ctx.store.dialect, row.project, await nicDeltas(trx, taken), { written: true });
      const ops = await this.bump(
        trx,
        principal,
        row,
        'nic-add',
        `NIC ${nic.id} on ${nic.network_name} requested`,
        nic.id,
      );
      await onCommit?.(trx, { nic, operation: ops.operation });
      return { ...ops, hostId: row.host_id, instanceId: row.id, nic };
    });
    await this.post.run({
      forget: [instanceId],
      events,
      desired: [{ instanceId, hostId }],
      networks: [nic.network],
    });
    return { nic, operation };
  }

  /** Hot-remove a NIC: its addresses are given back at once and the agent unplugs it. */
  async remove(principal: Principal, ref: string, project: string, nicId: string): Promise<Operation> {
    const { operation, events, hostId, instanceId, networkId } = await transaction(this.ctx.store, async (trx) => {
      const row = await lockedInstanceRow(principal, ref, project, trx);
      if (row.deleting === 1)
        throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
      const nic = await this.nics.find(trx, row.id, nicId);
      if (!nic)
        throw new FloeError('nic_not_found', `instance "${row.name}" has no NIC "${nicId}"`, {
          kind: 'nic',
          id: nicId,
        });
      const released = await this.nics.detach(trx, [nic.id], principal.actor);
      const ops = await this.bump(trx, principal, row, 'nic-remove', `removal of NIC ${nic.id} requested`, nic.id);
      return {
        ...ops,
        events: [...ops.events, ...released],
        hostId: row.host_id,
        instanceId: row.id,
        networkId: nic.network_id,
      };
    });
    await this.post.run({
      forget: [instanceId],
      events,
      desired: [{ instanceId, hostId }],
      networkHosts: [hostId],
      networks: [networkId],
    });
    return operation;
  }

  /**
   * Change a NIC's security groups, filtering or rate limits, while the instance runs too: recorded at
   * once; the agent applies the limits to the NIC's tap, and the hosts rebuild their firewall (this one
   * for the NIC, the others for the groups' members) as soon as they hear of it. Done once the agent
   * observed it.
   */
  async update(
    principal: Principal,
    ref: string,
    project: string,
    nicId: string,
    patch: NicPatch,
  ): Promise<{ nic: Nic; operation: Operation }> {
    const { operation, events, hostId, instanceId, nic } = await transaction(this.ctx.store, async (trx) => {
      const row = await lockedInstanceRow(principal, ref, project, trx);
      if (row.deleting === 1)
        throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
      const found = await this.nics.find(trx, row.id, nicId);
      if (!found)
        throw new FloeError('nic_not_found', `instance "${row.name}" has no NIC "${nicId}"`, {
          kind: 'nic',
          id: nicId,
        });
      if (patch.security_groups !== undefined || patch.filtering !== undefined)
        await this.nics.setGroups(trx, principal, found, patch);
      if (patch.rate_limit !== undefined) await this.nics.setRateLimit(trx, found, patch.rate_limit);
      const nic = (await this.nics.list(trx, row.id)).find((n) => n.id === found.id)!;
      const ops = await this.bump(trx, principal, row, 'nic-update', `change of NIC ${nic.id} requested`, nic.id);
      return { ...ops, hostId: row.host_id, instanceId: row.id, nic };
    });
    const groupsChanged = patch.security_groups !== undefined || patch.filtering !== undefined;
    await this.post.run({
      forget: [instanceId],
      events: groupsChanged
        ? [
            ...events,
            {
              type: 'resource.updated',
              project,
              kind: 'nic',
              resource_id: nic.id,
              data: { instance: instanceId, security_groups: nic.security_groups, filtering: nic.filtering },
            },
          ]
        : events,
      desired: [{ instanceId, hostId }],
      ...(groupsChanged ? { networkHosts: [hostId] } : {}),
    });
    return { nic, operation };
  }

  // A NIC change is an operation like start/stop: a new generation, done once the agent observed it in the wanted power state.
  private bump(
    trx: Db,
    principal: Principal,
    row: InstancesTable,
    action: 'nic-add' | 'nic-remove' | 'nic-update',
    message: string,
    nicId: string,
  ) {
    return bumpForChange(trx, { cache: this.cache, operations: this.operations }, principal, row, {
      action,
      kind: `instance.${action}`,
      message,
      resources: [{ kind: 'nic', id: nicId }],
    });
  }
}
