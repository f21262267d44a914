import { mergeFirstBoot, type InstanceStatus, type ObservedInstance } from '@floe/api';
import { forUpdate, fromJson, nowIso, toJson, transaction } from '../db/index.js';
import type { OperationsTable } from '../db/schema.js';
import type { ServiceContext } from './context.js';
import type { NewEvent } from './events.js';
import { normalizeStatus } from './first-boot.js';
import type { InstanceCache } from './instance-cache.js';
import type { NicService } from './nics.js';
import type { OperationService } from './operations.js';
import type { PostCommit } from './post-commit.js';
import { closeAll, runningFromReport, setQuantity } from './metering.js';

/** Progress shown for each observed state while an operation runs. */
const PROGRESS: Record<string, number> = {
  pending: 5,
  scheduled: 10,
  creating: 30,
  starting: 60,
  stopping: 60,
  deleting: 50,
};

/** Where an operation stands given one observation of its target (pure). */
function settle(op: OperationsTable, obs: ObservedInstance) {
  const reached = obs.observed_generation >= Number(op.target_generation ?? 0);
  if (reached && obs.state === op.target_state) {
    return { status: 'succeeded' as const, progress: 100, message: obs.state };
  }
  if (reached && obs.state === 'error') {
    return {
      status: 'failed' as const,
      progress: Number(op.progress),
      message: obs.reason ?? 'failed on the host',
      error: {
        code: 'host_operation_failed',
        message: obs.reason ?? 'the host reported an error',
        details: { state: obs.state },
      },
    };
  }
  const progress = Math.max(Number(op.progress), PROGRESS[obs.state] ?? Number(op.progress));
  return { status: 'running' as const, progress: Math.min(progress, 95), message: obs.state };
}

/**
 * Where an operation stands once its instance is deleted (pure): a delete got what it asked for,
 * whatever generation it targeted; anything else can no longer happen.
 */
function gone(op: OperationsTable) {
  return op.kind === 'instance.delete'
    ? { status: 'succeeded' as const, progress: 100, message: 'deleted' }
    : { status: 'cancelled' as const, progress: Number(op.progress), message: 'the instance was deleted' };
}

/** What agents report about instances: dispatch of desired state, observed status, the end of deletes. */
export class InstanceStatusIntake {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly operations: OperationService,
    private readonly nics: NicService,
    private readonly cache: InstanceCache,
    private readonly post: PostCommit,
  ) {}

  /** Pending operations for instances on a host become running once the agent has their desired state. */
  async dispatched(hostId: string, instanceIds: string[]): Promise<void> {
    if (instanceIds.length === 0) return;
    const events = await transaction(this.ctx.store, async (trx) => {
      const out: NewEvent[] = [];
      for (const id of instanceIds) {
        out.push(
          ...(await this.operations.advance(trx, id, (op) =>
            op.status === 'pending'
              ? { status: 'running', progress: Math.max(Number(op.progress), 10), message: `sent to host ${hostId}` }
              : null,
          )),
        );
      }
      return out;
    });
    await this.post.run({ events });
  }

  /**
   * Apply what an agent observed: status, the end of deletes, and the
   * operations waiting for it. Reports from a host the instance is not on are ignored.
   */
  async applyObserved(hostId: string, obs: ObservedInstance): Promise<void> {
    const changedNetworks: string[] = [];
    let wrote = false;
    const events = await transaction(this.ctx.store, async (trx) => {
      wrote = false;
      changedNetworks.length = 0;
      // Locked, as the API's writers lock it: a report and a request on one instance never interleave.
      const row = await forUpdate(trx.selectFrom('instances').selectAll().where('id', '=', obs.id)).executeTakeFirst();
      if (!row || row.host_id !== hostId) return [];
      const out: NewEvent[] = [];
      const before = normalizeStatus(fromJson<InstanceStatus>(row.status));
      if (obs.state === 'deleted') {
        if (row.deleting !== 1) return []; // a stale report; the instance is wanted
        const released = await this.nics.detachAll(trx, row.id, 'system');
        changedNetworks.push(...released.networks);
        out.push(...released.events);
        await this.cache.forget(trx, row.id);
        wrote = true;
        await trx.deleteFrom('instances').where('id', '=', row.id).execute();
        await closeAll(trx, [row.id], nowIso());
        await trx.deleteFrom('resource_labels').where('resource_id', '=', row.id).execute();
        out.push({
          type: 'instance.state',
          project: row.project,
          kind: 'instance',
          resource_id: row.id,
          data: { name: row.name, state: 'deleted', previous: before.state },
        });
        out.push({
          type: 'resource.deleted',
          project: row.project,
          kind: 'instance',
          resource_id: row.id,
          data: { name: row.name },
        });
        // No report comes for an instance that is gone: whatever still waits on it ends now.
        out.push(...(await this.operations.advance(trx, row.id, gone)));
        return out;
      } else {
        const status: InstanceStatus = {
          state: row.deleting === 1 && obs.state !== 'error' ? 'deleting' : obs.state,
          host: hostId,
          reason: obs.reason,
          accelerator: obs.accelerator,
          observed_revision: obs.observed_revision,
          started_at: obs.started_at,
          stopped_at: obs.stopped_at,
          first_boot: mergeFirstBoot(before.first_boot, obs.first_boot),
        };
        if (JSON.stringify(status) !== JSON.stringify(before)) {
          await this.cache.forget(trx, row.id);
          wrote = true;
          await trx
            .updateTable('instances')
            .set({ status: toJson(status), state: status.state })
            .where('id', '=', row.id)
            .execute();
        }
        const running = runningFromReport(obs, row.created_at, nowIso());
        if (running)
          await setQuantity(
            trx,
            { project: row.project, resource_kind: 'instance', resource_id: row.id, dimension: 'running' },
            running.quantity,
            running.at,
          );
        if (status.state !== before.state || status.reason !== before.reason) {
          out.push({
            type: 'instance.state',
            project: row.project,
            kind: 'instance',
            resource_id: row.id,
            data: { name: row.name, state: status.state, previous: before.state, reason: status.reason },
          });
        }
      }
      out.push(...(await this.operations.advance(trx, row.id, (op) => settle(op, obs))));
      return out;
    });
    await this.post.run({
      forget: wrote ? [obs.id] : [],
      events,
      // The host that ran it drops the network if this was its last member; the others lose a peer and a lease.
      networkHosts: changedNetworks.length > 0 ? [hostId] : [],
      networks: changedNetworks,
    });
  }
}
