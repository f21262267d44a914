import type { ResourceRef } from '@floe/api';
import { nowIso, type Db } from '../db/index.js';
import type { InstancesTable } from '../db/schema.js';
import { recordHistory } from './history.js';
import type { InstanceCache } from './instance-cache.js';
import { instanceFromRow } from './instance-rows.js';
import type { OperationService } from './operations.js';
import type { Principal } from './principal.js';

/** A change of an instance's desired state that its host applies while it runs (a NIC, a floating IP). */
export interface TrackedChange {
  /** The instance's history action, e.g. `nic-update`. */
  action: string;
  /** The operation's kind, e.g. `instance.nic-update`. */
  kind: string;
  message: string;
  /** What the operation is about, besides the instance. */
  resources: ResourceRef[];
}

/**
 * Make a change an operation like start/stop, inside the caller's transaction (the instance row
 * locked): a new generation and revision with its history entry, and an operation that is done once
 * the agent observed that generation in the power state the instance wants.
 */
export async function bumpForChange(
  trx: Db,
  deps: { cache: InstanceCache; operations: OperationService },
  principal: Principal,
  row: InstancesTable,
  change: TrackedChange,
) {
  const before = instanceFromRow(row);
  const generation = Number(row.generation) + 1;
  const revision = Number(row.revision) + 1;
  const updated_at = nowIso();
  await deps.cache.forget(trx, row.id);
  await trx.updateTable('instances').set({ generation, revision, updated_at }).where('id', '=', row.id).execute();
  await recordHistory(trx, {
    kind: 'instance',
    resource_id: row.id,
    project: row.project,
    revision,
    action: change.action,
    actor: principal.actor,
    before,
    after: { ...before, revision, updated_at },
  });
  return deps.operations.create(trx, {
    project: row.project,
    kind: change.kind,
    resources: [{ kind: 'instance', id: row.id, name: row.name }, ...change.resources],
    created_by: principal.actor,
    message: change.message,
    target_id: row.id,
    target_generation: generation,
    target_state: before.spec.power_state,
  });
}
