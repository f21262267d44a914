import type { InstanceSpec } from '@floe/api';
import { fromJson, nowIso, toJson, type Db } from '../db/index.js';
import type { OperationsTable } from '../db/schema.js';
import type { NewEvent } from './events.js';
import { recordHistory } from './history.js';
import type { InstanceCache } from './instance-cache.js';
import { instanceFromRow } from './instance-rows.js';
import type { NicService } from './nics.js';
import { closeAll } from './metering.js';

/** What cancelling an instance operation restores. */
export interface InstanceUndo {
  action: 'create' | 'start' | 'stop' | 'restart' | 'delete';
  power_state?: 'running' | 'stopped';
  force_stop?: number;
  restart_generation?: number;
}

/**
 * Undo a cancelled pending operation (it never reached a host), inside the cancel's transaction.
 * The cancel commits in OperationService; the instance event returned here, published after that
 * commit, does the read cache's after-commit invalidation (the cache hears instance events).
 */
export async function undoInstanceOperation(
  trx: Db,
  op: OperationsTable,
  undo: InstanceUndo | null,
  deps: { cache: InstanceCache; nics: NicService },
): Promise<NewEvent[]> {
  const row = await trx.selectFrom('instances').selectAll().where('id', '=', op.target_id!).executeTakeFirst();
  // NIC changes have nothing to undo here: they are recorded at once, like a delete of the NIC.
  if (!row || !undo || !['create', 'start', 'stop', 'restart', 'delete'].includes(undo.action)) return [];
  await deps.cache.forget(trx, row.id);
  if (undo.action === 'create') {
    const gone = await deps.nics.detachAll(trx, row.id, 'system');
    await trx.deleteFrom('instances').where('id', '=', row.id).execute();
    await closeAll(trx, [row.id], nowIso());
    await trx.deleteFrom('resource_labels').where('resource_id', '=', row.id).execute();
    await recordHistory(trx, {
      kind: 'instance',
      resource_id: row.id,
      project: row.project,
      revision: Number(row.revision) + 1,
      action: 'delete',
      actor: 'system',
      before: instanceFromRow(row),
      after: null,
    });
    return [
      ...gone.events,
      {
        type: 'resource.deleted',
        project: row.project,
        kind: 'instance',
        resource_id: row.id,
        data: { name: row.name, reason: 'create cancelled' },
      },
    ];
  }
  const revision = Number(row.revision) + 1;
  if (undo.action === 'delete') {
    await trx
      .updateTable('instances')
      .set({ deleting: 0, revision, updated_at: nowIso() })
      .where('id', '=', row.id)
      .execute();
  } else {
    const spec = { ...fromJson<InstanceSpec>(row.spec), power_state: undo.power_state! };
    await trx
      .updateTable('instances')
      .set({
        spec: toJson(spec),
        force_stop: undo.force_stop ?? 0,
        restart_generation: undo.restart_generation ?? row.restart_generation,
        revision,
        updated_at: nowIso(),
      })
      .where('id', '=', row.id)
      .execute();
  }
  await recordHistory(trx, {
    kind: 'instance',
    resource_id: row.id,
    project: row.project,
    revision,
    action: `cancel-${undo.action}`,
    actor: 'system',
    before: null,
    after: null,
  });
  return [
    {
      type: 'resource.updated',
      project: row.project,
      kind: 'instance',
      resource_id: row.id,
      data: { revision, reason: `${undo.action} cancelled` },
    },
  ];
}
