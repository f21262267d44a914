import { FloeError, type Instance, type InstanceSpec, type InstanceStatus } from '@floe/api';
import { fromJson, type Db } from '../db/index.js';
import type { InstancesTable } from '../db/schema.js';
import { normalizeSpec, normalizeStatus } from './first-boot.js';
import type { Principal } from './principal.js';
import { baseFields, findRow } from './resource-rows.js';

/** Row → API shape. */
export function instanceFromRow(row: InstancesTable): Instance {
  return {
    ...baseFields(row),
    project: row.project,
    spec: normalizeSpec(fromJson<InstanceSpec>(row.spec)),
    status: normalizeStatus(fromJson<InstanceStatus>(row.status)),
  };
}

/** The row of an instance the principal may use, by id or by name inside `project`. */
export function instanceRow(principal: Principal, ref: string, project: string, db: Db): Promise<InstancesTable> {
  return findRow<InstancesTable>(db, 'instances', 'instance', ref, {
    project,
    principal,
    code: 'instance_not_found',
    label: 'instance',
  });
}

/**
 * The instance row, locked until the transaction ends: concurrent writers must not pick the same slot,
 * generation or revision. A row deleted while this waited for its lock is not found, as it would be later.
 */
export async function lockedInstanceRow(
  principal: Principal,
  ref: string,
  project: string,
  trx: Db,
): Promise<InstancesTable> {
  const found = await instanceRow(principal, ref, project, trx);
  const row = await trx.selectFrom('instances').selectAll().where('id', '=', found.id).forUpdate().executeTakeFirst();
  if (row === undefined)
    throw new FloeError('instance_not_found', `instance "${ref}" not found`, { kind: 'instance', id: ref });
  return row;
}
