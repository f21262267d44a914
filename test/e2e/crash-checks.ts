import { sql } from 'kysely';
import type { Store } from '../../packages/server/src/db/index.js';

/** What the clients were told (2xx) and what they sent without an answer, for the checks after a restart. */
export interface Acknowledged {
  /** Instances whose create was answered 2xx: id → name. */
  created: Map<string, string>;
  /** Instances whose delete was answered 2xx. */
  deleted: Set<string>;
  /** NICs whose add was answered 2xx: nic id → instance id. */
  nicsAdded: Map<string, string>;
  /** NICs whose removal was answered 2xx. */
  nicsRemoved: Set<string>;
  /** Instances a NIC removal was sent for (answered or not): they may have no NIC left. */
  nicRemovalTried: Set<string>;
}

/** One failed check. */
export type Finding = string;

/**
 * Consistency of the store after a crash, by SQL: every acknowledged write is there (deletes gone or
 * going), nothing half made (an instance without its NICs or its create operation, a NIC without its
 * instance or its addresses, an address held by no NIC), and the per-host totals match the instances.
 * Returns what it checked and what failed.
 */
export async function checkStore(store: Store, ack: Acknowledged): Promise<{ checked: number; findings: Finding[] }> {
  const findings: Finding[] = [];
  let checked = 0;
  const instances = await store.db.selectFrom('instances').select(['id', 'name', 'deleting', 'host_id']).execute();
  const byId = new Map(instances.map((i) => [i.id, i]));
  const nics = await store.db.selectFrom('nics').select(['id', 'instance_id', 'network_id', 'ipv4', 'ipv6']).execute();
  const nicById = new Map(nics.map((n) => [n.id, n]));
  const addresses = await store.db.selectFrom('ip_addresses').select(['network_id', 'address', 'nic_id']).execute();
  const ops = await store.db.selectFrom('operations').select(['id', 'kind', 'target_id', 'status']).execute();

  for (const [id, name] of ack.created) {
    checked++;
    if (!byId.has(id) && !ack.deleted.has(id)) findings.push(`acknowledged create of ${name} (${id}) is missing`);
  }
  for (const id of ack.deleted) {
    checked++;
    const row = byId.get(id);
    if (row && Number(row.deleting) !== 1) findings.push(`acknowledged delete of ${id}: the instance is not deleting`);
  }
  for (const [nicId, instanceId] of ack.nicsAdded) {
    checked++;
    if (!nicById.has(nicId) && !ack.nicsRemoved.has(nicId) && byId.has(instanceId))
      findings.push(`acknowledged NIC ${nicId} of ${instanceId} is missing`);
  }
  for (const nicId of ack.nicsRemoved) {
    checked++;
    if (nicById.has(nicId)) findings.push(`acknowledged removal of NIC ${nicId}: it is still there`);
  }
  for (const i of instances) {
    checked++;
    const mine = nics.filter((n) => n.instance_id === i.id);
    if (mine.length === 0 && !ack.nicRemovalTried.has(i.id)) findings.push(`instance ${i.name} has no NIC rows`);
    if (!ops.some((o) => o.target_id === i.id && o.kind === 'instance.create'))
      findings.push(`instance ${i.name} has no create operation`);
  }
  for (const n of nics) {
    checked++;
    if (!byId.has(n.instance_id)) findings.push(`NIC ${n.id} belongs to no instance (${n.instance_id})`);
    for (const a of [n.ipv4, n.ipv6]) {
      if (a === null) continue;
      const held = addresses.find((x) => x.network_id === n.network_id && x.address === a);
      if (held?.nic_id !== n.id) findings.push(`NIC ${n.id}: its address ${a} is not allocated to it`);
    }
  }
  for (const a of addresses) {
    checked++;
    if (a.nic_id !== null && !nicById.has(a.nic_id))
      findings.push(`address ${a.address} is allocated to a NIC that does not exist (${a.nic_id})`);
  }
  const totals = await sql<{ host_id: string; n: number; held: number | null }>`
    select i.host_id, count(*) as n, (select instances from host_allocations a where a.host_id = i.host_id) as held
    from instances i where i.host_id is not null group by i.host_id`.execute(store.db);
  for (const t of totals.rows) {
    checked++;
    if (Number(t.n) !== Number(t.held ?? 0))
      findings.push(`host ${t.host_id}: host_allocations says ${t.held} instances, the table has ${t.n}`);
  }
  const reserved = await store.db.selectFrom('idempotency_keys').select('key').where('status_code', '=', 0).execute();
  checked++;
  if (reserved.length > 0)
    findings.push(`${reserved.length} Idempotency-Key reservations still in progress after every retry was answered`);
  return { checked, findings };
}

/** Operations not yet in a terminal state. */
export async function unfinishedOperations(store: Store): Promise<Array<{ id: string; kind: string; status: string }>> {
  return store.db
    .selectFrom('operations')
    .select(['id', 'kind', 'status'])
    .where('status', 'not in', ['succeeded', 'failed', 'cancelled'])
    .execute();
}
