import { FloeError, type InstanceResize, type Operation } from '@floe/api';
import { nowIso, toJson, transaction } from '../db/index.js';
import type { MachineTypeService } from './catalog.js';
import type { ServiceContext } from './context.js';
import { recordHistory } from './history.js';
import type { InstanceCache } from './instance-cache.js';
import { instanceFromRow, lockedInstanceRow } from './instance-rows.js';
import { resizedSpec, sizeDeltas } from './instance-spec.js';
import { unreachableMessage } from './instance-reachability.js';
import { setQuantities } from './metering.js';
import type { OperationService } from './operations.js';
import type { PostCommit } from './post-commit.js';
import type { Principal } from './principal.js';
import { reserve } from './quota.js';
import { checkHostRoom } from './scheduler.js';

/**
 * Resize of a stopped instance: vCPUs and memory up or down, the disk only up. The new size, the quota
 * check, the metering ranges and the history entry commit together; the agent then records the size for
 * the VM's next start and grows its disk image (the guest's growpart takes the new space at boot).
 * Requiring the instance stopped keeps one meaning for "the size": what the next boot gets, with nothing
 * pending on a running VM.
 */
export class InstanceResizes {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly types: MachineTypeService,
    private readonly operations: OperationService,
    private readonly cache: InstanceCache,
    private readonly post: PostCommit,
  ) {}

  /** Resize; answers the operation that completes once the host recorded the new size. */
  async resize(principal: Principal, ref: string, project: string, body: InstanceResize): Promise<Operation> {
    const { operation, events, hostId, instanceId, projectName, revision } = await transaction(
      this.ctx.store,
      async (trx) => {
        const row = await lockedInstanceRow(principal, ref, project, trx);
        if (row.deleting === 1)
          throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
        const before = instanceFromRow(row);
        const type = body.machine_type === undefined ? null : await this.types.get(body.machine_type, trx);
        const spec = resizedSpec(row.name, before.spec, body, type);
        const deltas = sizeDeltas(before.spec, spec);
        // Growth is checked against every limit up to the root; shrinking gives back at once.
        await reserve(trx, this.ctx.store.dialect, row.project, deltas);
        // The host keeps room for what its instances hold, stopped ones included.
        await checkHostRoom(trx, this.ctx.store.dialect, this.ctx.config, row.host_id, deltas);
        const generation = Number(row.generation) + 1;
        const revision = Number(row.revision) + 1;
        const updated_at = nowIso();
        await this.cache.forget(trx, row.id);
        await trx
          .updateTable('instances')
          .set({
            spec: toJson(spec),
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            disk_gib: spec.disk_gib,
            generation,
            revision,
            updated_at,
          })
          .where('id', '=', row.id)
          .execute();
        await setQuantities(
          trx,
          { project: row.project, resource_kind: 'instance', resource_id: row.id },
          { vcpus: spec.vcpus, memory_mib: spec.memory_mib, disk_gib: spec.disk_gib },
          updated_at,
        );
        await recordHistory(trx, {
          kind: 'instance',
          resource_id: row.id,
          project: row.project,
          revision,
          action: 'resize',
          actor: principal.actor,
          before,
          after: { ...before, spec, revision, updated_at },
        });
        const created = await this.operations.create(trx, {
          project: row.project,
          kind: 'instance.resize',
          resources: [{ kind: 'instance', id: row.id, name: row.name }],
          created_by: principal.actor,
          message:
            (await unreachableMessage(trx, before.status)) ??
            `resize to ${spec.vcpus} vCPUs, ${spec.memory_mib} MiB, ${spec.disk_gib} GiB requested`,
          target_id: row.id,
          target_generation: generation,
          target_state: 'stopped',
        });
        return { ...created, hostId: row.host_id, instanceId: row.id, projectName: row.project, revision };
      },
    );
    await this.post.run({
      forget: [instanceId],
      events: [
        {
          type: 'resource.updated',
          project: projectName,
          kind: 'instance',
          resource_id: instanceId,
          data: { revision, reason: 'resize' },
        },
        ...events,
      ],
      desired: [{ instanceId, hostId }],
    });
    return operation;
  }
}
