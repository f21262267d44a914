import { FloeError, type DesiredForward, type FloatingIp, type PortForward } from '@floe/api';
import { nowIso, type Db } from '../db/index.js';
import type { FloatingIpsTable, InstancesTable, NicsTable, PortForwardsTable } from '../db/schema.js';
import type { NewEvent } from './events.js';
import { deleteWithHistory, recordHistory } from './history.js';
import { networkSpecOf } from './network-spec.js';
import { baseFields } from './resource-rows.js';

/*
 * What floating IPs and port forwards share: their API shapes, the NIC they NAT to, and what the agents
 * get of them with each NIC.
 */

/** Row → API shape. */
export function floatingIpFromRow(row: FloatingIpsTable): FloatingIp {
  return {
    ...baseFields(row),
    project: row.project,
    network: row.network_id,
    address: row.address,
    instance: row.instance_id,
    nic: row.nic_id,
  };
}

/** Row → API shape, with the floating IP's address and the NIC's. */
export function portForwardFromRow(row: PortForwardsTable, address: string | null, target: string): PortForward {
  return {
    ...baseFields(row),
    project: row.project,
    protocol: row.protocol === 'udp' ? 'udp' : 'tcp',
    floating_ip: row.listen === 'host' ? null : row.listen,
    address,
    port: Number(row.port),
    instance: row.instance_id,
    nic: row.nic_id,
    target_address: target,
    target_port: Number(row.target_port),
  };
}

/**
 * The NIC of `instance` that NAT goes to: the one named, or its first NIC with IPv4. It must have an
 * IPv4 address on a private network whose gateway is the host, which routes between it and the outside.
 */
export async function natTarget(db: Db, instance: InstancesTable, nicId: string | undefined): Promise<NicsTable> {
  const nics = await db.selectFrom('nics').selectAll().where('instance_id', '=', instance.id).orderBy('idx').execute();
  const nic = nicId === undefined ? nics.find((n) => n.ipv4 !== null) : nics.find((n) => n.id === nicId);
  if (nic === undefined)
    throw nicId === undefined
      ? new FloeError('invalid_state', `instance "${instance.name}" has no NIC with an IPv4 address`, {
          field: 'instance',
        })
      : new FloeError('nic_not_found', `instance "${instance.name}" has no NIC "${nicId}"`, {
          kind: 'nic',
          id: nicId,
          field: 'nic',
        });
  const network = await db.selectFrom('networks').selectAll().where('id', '=', nic.network_id).executeTakeFirst();
  const spec = network === undefined ? undefined : networkSpecOf(network.spec);
  if (nic.ipv4 === null || network?.kind !== 'private' || spec?.gateway !== 'host')
    throw new FloeError(
      'invalid_state',
      `NIC ${nic.id} of "${instance.name}" needs an IPv4 address on a private network whose gateway is "host": the host routes and NATs its traffic`,
      { field: 'nic', nic: nic.id },
    );
  return nic;
}

/** NAT for the agents, by NIC: the floating IPv4 attached and the ports forwarded to it. */
export async function desiredNat(
  db: Db,
  nicIds: readonly string[],
): Promise<Map<string, { floating_ipv4: string | null; forwards: DesiredForward[] }>> {
  const out = new Map<string, { floating_ipv4: string | null; forwards: DesiredForward[] }>();
  if (nicIds.length === 0) return out;
  const at = (id: string) => {
    let v = out.get(id);
    if (v === undefined) out.set(id, (v = { floating_ipv4: null, forwards: [] }));
    return v;
  };
  const fips = await db
    .selectFrom('floating_ips')
    .select(['nic_id', 'address'])
    .where('nic_id', 'in', [...nicIds])
    .execute();
  for (const f of fips) if (f.nic_id !== null) at(f.nic_id).floating_ipv4 = f.address;
  const forwards = await db
    .selectFrom('port_forwards')
    .leftJoin('floating_ips', 'floating_ips.id', 'port_forwards.listen')
    .select([
      'port_forwards.nic_id as nic_id',
      'port_forwards.protocol as protocol',
      'port_forwards.port as port',
      'port_forwards.target_port as target_port',
      'floating_ips.address as address',
    ])
    .where('port_forwards.nic_id', 'in', [...nicIds])
    .orderBy('port_forwards.protocol')
    .orderBy('port_forwards.port')
    .execute();
  for (const f of forwards)
    at(f.nic_id).forwards.push({
      protocol: f.protocol === 'udp' ? 'udp' : 'tcp',
      address: f.address ?? null,
      port: Number(f.port),
      target_port: Number(f.target_port),
    });
  return out;
}

/**
 * A NIC going away: its floating IP is detached and the ports forwarded to it removed, each with its
 * history entry (by `actor`), inside the caller's transaction. Returns their events, for after the commit.
 */
export async function releaseNat(db: Db, nicIds: readonly string[], actor: string): Promise<NewEvent[]> {
  if (nicIds.length === 0) return [];
  const events: NewEvent[] = [];
  const now = nowIso();
  const fips = await db
    .selectFrom('floating_ips')
    .selectAll()
    .where('nic_id', 'in', [...nicIds])
    .execute();
  for (const row of fips) {
    const next = { nic_id: null, instance_id: null, revision: Number(row.revision) + 1, updated_at: now };
    await db.updateTable('floating_ips').set(next).where('id', '=', row.id).execute();
    await recordHistory(db, {
      kind: 'floating_ip',
      resource_id: row.id,
      project: row.project,
      revision: next.revision,
      action: 'detach',
      actor,
      before: floatingIpFromRow(row),
      after: floatingIpFromRow({ ...row, ...next }),
    });
    events.push({
      type: 'resource.updated',
      project: row.project,
      kind: 'floating_ip',
      resource_id: row.id,
      data: { revision: next.revision, instance: null, nic: null },
    });
  }
  const forwards = await db
    .selectFrom('port_forwards')
    .innerJoin('nics', 'nics.id', 'port_forwards.nic_id')
    .leftJoin('floating_ips', 'floating_ips.id', 'port_forwards.listen')
    .selectAll('port_forwards')
    .select(['floating_ips.address as listen_address', 'nics.ipv4 as target_address'])
    .where('port_forwards.nic_id', 'in', [...nicIds])
    .execute();
  for (const { listen_address, target_address, ...row } of forwards) {
    await deleteWithHistory(db, 'port_forwards', {
      kind: 'port_forward',
      row,
      actor,
      before: portForwardFromRow(row, listen_address ?? null, target_address ?? ''),
    });
    events.push({
      type: 'resource.deleted',
      project: row.project,
      kind: 'port_forward',
      resource_id: row.id,
      data: { name: row.name },
    });
  }
  return events;
}
