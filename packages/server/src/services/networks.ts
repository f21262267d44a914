import { randomInt } from 'node:crypto';
import {
  FloeError,
  MAX_NICS,
  type DesiredNetwork,
  type DesiredNic,
  type HostFacts,
  type Network,
  type NetworkCreate,
  type NetworkPatch,
  type NetworkSpec,
  type Nic,
  type NicRequest,
  type PageOf,
} from '@floe/api';
import { fromJson, isUniqueViolation, nowIso, toJson, transaction } from '../db/index.js';
import type { NetworksTable, NicsTable } from '../db/schema.js';
import { newId } from '../ids.js';
import {
  baseFields,
  checkMetadata,
  checkRevision,
  findRow,
  listPage,
  mergePatch,
  newBase,
  parseLabelSelectors,
  recordHistory,
  requireAdmin,
  visibleProjects,
  writeLabels,
  type Db,
} from './common.js';
import type { Principal, ServiceContext } from './context.js';
import {
  addressPlan,
  allocate,
  formatCidr6,
  formatIpv4,
  macFor,
  parseCidr4,
  parseCidr6,
  parseIpv4,
  parseIpv6,
  formatIpv6,
  release,
  ula64,
  type AddressPlan,
} from './ipam.js';
import type { ProjectService } from './projects.js';

/** Largest VXLAN network identifier (24 bits). */
export const MAX_VNI = 16_777_215;

/** Default MTU of private networks: 1500 less the 50 bytes of VXLAN over IPv4. */
export const PRIVATE_MTU = 1450;

/** A stored network spec, with the fields added since it was written filled in. */
export function networkSpecOf(json: string): NetworkSpec {
  const spec = fromJson<Omit<NetworkSpec, 'dhcpv6'> & { dhcpv6?: boolean }>(json);
  return { ...spec, dhcpv6: spec.dhcpv6 ?? false };
}

/** Row → API shape, with the status computed from the NICs. */
export function networkFromRow(
  row: NetworksTable,
  members: { hosts: string[]; nics: number } = { hosts: [], nics: 0 },
): Network {
  const spec = networkSpecOf(row.spec);
  const plan = addressPlan(spec);
  return {
    ...baseFields(row),
    project: row.project,
    spec,
    vni: Number(row.vni),
    status: {
      hosts: members.hosts,
      nics: members.nics,
      gateway4: plan.gateway4,
      gateway6: plan.gateway6,
      host_ipv4: plan.host4,
      host_ipv6: plan.host6,
    },
  };
}

/** Row → API shape. */
export function nicFromRow(row: NicsTable, networkName: string): Nic {
  return {
    id: row.id,
    instance: row.instance_id,
    network: row.network_id,
    network_name: networkName,
    index: Number(row.idx),
    mac: row.mac,
    ipv4: row.ipv4,
    ipv6: row.ipv6,
    created_at: row.created_at,
  };
}

/** What the agent needs for one NIC (pure). */
export function desiredNic(nic: NicsTable, network: NetworksTable): DesiredNic {
  const spec = networkSpecOf(network.spec);
  const plan = addressPlan(spec);
  return {
    id: nic.id,
    network_id: network.id,
    vni: Number(network.vni),
    index: Number(nic.idx),
    mac: nic.mac,
    ipv4: nic.ipv4,
    ipv4_prefix: nic.ipv4 === null ? null : plan.v4!.prefix,
    ipv6: nic.ipv6,
    ipv6_prefix: nic.ipv6 === null ? null : plan.v6!.prefix,
    // A router VM does not route through itself.
    gateway4: plan.gateway4 === nic.ipv4 ? null : plan.gateway4,
    gateway6: plan.gateway6,
    mtu: spec.mtu,
    dns_servers: plan.dnsServers,
  };
}

/** Normalize a create body into a spec (pure; `id` seeds `ipv6: auto`). */
export function networkSpecFrom(body: NetworkCreate, id: string): NetworkSpec {
  const kind = body.kind ?? 'private';
  const ipv4 = body.ipv4 === undefined ? null : body.ipv4;
  const ipv6Raw = body.ipv6 === undefined ? null : body.ipv6;
  const ipv6 = ipv6Raw === 'auto' ? ula64(id) : ipv6Raw === null ? null : formatCidr6(parseCidr6(ipv6Raw, 'ipv6'));
  const spec: NetworkSpec = {
    kind,
    ipv4: ipv4 === null ? null : `${formatIpv4(parseCidr4(ipv4, 'ipv4').network)}/${parseCidr4(ipv4).prefix}`,
    ipv6,
    gateway: body.gateway ?? (kind === 'public' ? 'none' : 'host'),
    mtu: body.mtu ?? (kind === 'public' ? 1500 : PRIVATE_MTU),
    dns: body.dns ?? kind === 'private',
    dhcpv6: body.dhcpv6 ?? false,
    reserved: (body.reserved ?? []).map((r, i) =>
      r.includes(':') ? formatIpv6(parseIpv6(r, `reserved[${i}]`)) : formatIpv4(parseIpv4(r, `reserved[${i}]`)),
    ),
    pool: body.pool ?? null,
    uplink: body.uplink ?? null,
  };
  if (spec.gateway !== 'host' && spec.gateway !== 'none') spec.gateway = formatIpv4(parseIpv4(spec.gateway, 'gateway'));
  if (kind === 'private' && (spec.pool !== null || spec.uplink !== null)) {
    throw new FloeError('validation_failed', 'pool and uplink are for public networks', {
      field: spec.pool !== null ? 'pool' : 'uplink',
    });
  }
  checkDhcpv6(spec);
  if (spec.ipv4 === null && spec.ipv6 === null && spec.gateway !== 'none') {
    throw new FloeError('validation_failed', 'a network without addresses cannot have a gateway; use --gateway none', {
      field: 'gateway',
    });
  }
  addressPlan(spec); // validates
  return spec;
}

/** DHCPv6 hands out IPv6 addresses: a network needs them, and public networks leave IPv6 to their LAN. */
function checkDhcpv6(spec: NetworkSpec): void {
  if (!spec.dhcpv6) return;
  if (spec.ipv6 === null)
    throw new FloeError('validation_failed', 'DHCPv6 needs an IPv6 range (--ipv6)', { field: 'dhcpv6' });
  if (spec.kind === 'public')
    throw new FloeError('validation_failed', "public networks leave IPv6 to their LAN's routers: no DHCPv6", {
      field: 'dhcpv6',
    });
}

/** A NIC request in its object form. */
function nicRequest(r: NicRequest): { network: string; ipv4?: string; ipv6?: string } {
  return typeof r === 'string' ? { network: r } : r;
}

/** Networks (project-scoped; public ones usable from every project), their NICs and the agents' view of them. */
export class NetworkService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
  ) {}

  /** Networks of the visible projects, and the public networks. */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[]; project?: string },
  ): Promise<PageOf<Network>> {
    const projects = visibleProjects(principal, q.project);
    const page = await listPage<NetworksTable, NetworksTable>(
      this.ctx.store.db,
      'networks',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels: parseLabelSelectors(q.label),
        where:
          projects === null
            ? undefined
            : (qb) =>
                qb.where((eb: any) =>
                  eb.or([eb('kind', '=', 'public'), ...(projects.length > 0 ? [eb('project', 'in', projects)] : [])]),
                ),
      },
      (r) => r,
    );
    const members = await this.members(
      this.ctx.store.db,
      page.items.map((r) => r.id),
    );
    return { items: page.items.map((r) => networkFromRow(r, members.get(r.id))), next_cursor: page.next_cursor };
  }

  /** One network by id, or by name inside `project` (then among public networks). */
  async get(principal: Principal, ref: string, project: string, db: Db = this.ctx.store.db): Promise<Network> {
    const row = await this.row(principal, ref, project, db);
    return networkFromRow(row, (await this.members(db, [row.id])).get(row.id));
  }

  /** The row of a network the principal may use. */
  async row(principal: Principal, ref: string, project: string, db: Db): Promise<NetworksTable> {
    try {
      return await findRow<NetworksTable>(db, 'networks', 'network', ref, {
        project,
        principal,
        code: 'network_not_found',
        label: 'network',
      });
    } catch (err) {
      if (!(err instanceof FloeError) || err.code !== 'network_not_found') throw err;
      const q = db.selectFrom('networks').selectAll().where('kind', '=', 'public');
      const pub = await (ref.startsWith('net_') ? q.where('id', '=', ref) : q.where('name', '=', ref))
        .orderBy('id')
        .executeTakeFirst();
      if (pub === undefined) throw err;
      return pub;
    }
  }

  /** Create a network with a fresh, unique VNI. Public networks are for admins. */
  async create(principal: Principal, body: NetworkCreate): Promise<Network> {
    const project = body.project ?? 'default';
    if (body.kind === 'public') requireAdmin(principal, 'create public networks');
    const metadata = checkMetadata(body.metadata);
    for (let attempt = 0; ; attempt++) {
      const base = newBase('network', body.name, body.labels, metadata);
      const spec = networkSpecFrom(body, base.id);
      const row: NetworksTable = {
        ...base,
        project,
        kind: spec.kind,
        spec: toJson(spec),
        vni: randomInt(1, MAX_VNI + 1),
      };
      try {
        const network = await transaction(this.ctx.store, async (trx) => {
          await this.projects.require(principal, project, trx);
          await trx.insertInto('networks').values(row).execute();
          await writeLabels(trx, row.id, body.labels ?? {}, true);
          const network = networkFromRow(row);
          await recordHistory(trx, {
            kind: 'network',
            resource_id: row.id,
            project,
            revision: 1,
            action: 'create',
            actor: principal.actor,
            before: null,
            after: network,
          });
          return network;
        });
        await this.ctx.bus.publish({
          type: 'resource.created',
          project,
          kind: 'network',
          resource_id: network.id,
          data: { name: network.name, vni: network.vni },
        });
        return network;
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        // Only the name and the VNI are unique; a VNI clash (random in 16M) is retried with another.
        if (/vni/.test(uniqueTarget(err)) && attempt < 8) continue;
        throw new FloeError('name_conflict', `network "${body.name}" already exists in project "${project}"`, {
          field: 'name',
          kind: 'network',
          name: body.name,
        });
      }
    }
  }

  /** Merge-patch labels, metadata, DNS, DHCPv6 and the reserved addresses. */
  async update(
    principal: Principal,
    ref: string,
    project: string,
    patch: NetworkPatch,
    ifMatch?: number,
  ): Promise<Network> {
    const { after, hosts } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      if (row.kind === 'public') requireAdmin(principal, 'change public networks');
      const before = networkFromRow(row, (await this.members(trx, [row.id])).get(row.id));
      checkRevision(ifMatch, before.revision);
      const spec: NetworkSpec = { ...before.spec };
      if (patch.spec?.dns !== undefined) spec.dns = patch.spec.dns;
      if (patch.spec?.dhcpv6 !== undefined) {
        spec.dhcpv6 = patch.spec.dhcpv6;
        checkDhcpv6(spec);
      }
      if (patch.spec?.reserved !== undefined) {
        spec.reserved = patch.spec.reserved.map((r, i) =>
          r.includes(':') ? formatIpv6(parseIpv6(r, `reserved[${i}]`)) : formatIpv4(parseIpv4(r, `reserved[${i}]`)),
        );
        const reserved = [...addressPlan(spec).reserved];
        const used =
          reserved.length === 0
            ? undefined
            : await trx
                .selectFrom('ip_addresses')
                .select('address')
                .where('network_id', '=', row.id)
                .where('address', 'in', reserved)
                .executeTakeFirst();
        if (used)
          throw new FloeError('address_in_use', `${used.address} is given to a NIC and cannot be reserved`, {
            field: 'spec.reserved',
            address: used.address,
          });
      }
      const after: Network = {
        ...before,
        labels:
          patch.labels === undefined
            ? before.labels
            : (mergePatch(before.labels, patch.labels) as Record<string, string>),
        metadata:
          patch.metadata === undefined
            ? before.metadata
            : checkMetadata(mergePatch(before.metadata, patch.metadata) as Record<string, unknown>),
        spec,
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await trx
        .updateTable('networks')
        .set({
          labels: toJson(after.labels),
          metadata: toJson(after.metadata),
          spec: toJson(spec),
          revision: after.revision,
          updated_at: after.updated_at,
        })
        .where('id', '=', row.id)
        .execute();
      await writeLabels(trx, row.id, after.labels);
      await recordHistory(trx, {
        kind: 'network',
        resource_id: row.id,
        project: row.project,
        revision: after.revision,
        action: 'update',
        actor: principal.actor,
        before,
        after,
      });
      return { after, hosts: before.status.hosts };
    });
    await this.ctx.bus.publish({
      type: 'resource.updated',
      project: after.project,
      kind: 'network',
      resource_id: after.id,
      data: { revision: after.revision },
    });
    this.announce(hosts);
    return after;
  }

  /** Delete a network without NICs (`in_use` otherwise). */
  async delete(principal: Principal, ref: string, project: string, ifMatch?: number): Promise<void> {
    const row = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      if (row.kind === 'public') requireAdmin(principal, 'delete public networks');
      checkRevision(ifMatch, Number(row.revision));
      const nic = await trx
        .selectFrom('nics')
        .select(['id', 'instance_id'])
        .where('network_id', '=', row.id)
        .limit(1)
        .executeTakeFirst();
      if (nic)
        throw new FloeError('in_use', `network "${row.name}" still has NICs; remove them or their instances first`, {
          kind: 'network',
          id: row.id,
          instance: nic.instance_id,
        });
      await trx.deleteFrom('ip_addresses').where('network_id', '=', row.id).execute();
      await trx.deleteFrom('networks').where('id', '=', row.id).execute();
      await trx.deleteFrom('resource_labels').where('resource_id', '=', row.id).execute();
      await recordHistory(trx, {
        kind: 'network',
        resource_id: row.id,
        project: row.project,
        revision: Number(row.revision) + 1,
        action: 'delete',
        actor: principal.actor,
        before: networkFromRow(row),
        after: null,
      });
      return row;
    });
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: row.project,
      kind: 'network',
      resource_id: row.id,
      data: { name: row.name },
    });
  }

  /** Hosts with members and NIC counts, per network. */
  private async members(db: Db, networkIds: string[]): Promise<Map<string, { hosts: string[]; nics: number }>> {
    const out = new Map<string, { hosts: string[]; nics: number }>();
    if (networkIds.length === 0) return out;
    const rows = await db
      .selectFrom('nics')
      .leftJoin('instances', 'instances.id', 'nics.instance_id')
      .select(['nics.network_id as network_id', 'instances.host_id as host_id'])
      .where('nics.network_id', 'in', networkIds)
      .execute();
    for (const r of rows) {
      const m = out.get(r.network_id) ?? { hosts: [], nics: 0 };
      m.nics++;
      if (r.host_id !== null && !m.hosts.includes(r.host_id)) m.hosts.push(r.host_id);
      out.set(r.network_id, m);
    }
    for (const m of out.values()) m.hosts.sort();
    return out;
  }

  /**
   * Create NICs for an instance inside the caller's transaction: one per
   * request, in slot order from `firstIndex`, each with a stable MAC unique on
   * its network and its addresses from IPAM.
   */
  async attach(
    trx: Db,
    principal: Principal,
    instance: { id: string; project: string },
    requests: readonly NicRequest[],
    firstIndex = 0,
  ): Promise<NicsTable[]> {
    if (firstIndex + requests.length > MAX_NICS)
      throw new FloeError('too_many_nics', `an instance has at most ${MAX_NICS} NICs`, {
        field: 'networks',
        limit: MAX_NICS,
      });
    const out: NicsTable[] = [];
    for (const [i, raw] of requests.entries()) {
      const req = nicRequest(raw);
      const field = `networks[${i}]`;
      let network: NetworksTable;
      try {
        network = await this.row(principal, req.network, instance.project, trx);
      } catch (err) {
        if (err instanceof FloeError && err.code === 'network_not_found')
          throw new FloeError('network_not_found', err.message, { ...err.details, field });
        throw err;
      }
      if (network.project !== instance.project && network.kind !== 'public') {
        throw new FloeError(
          'network_not_found',
          `network "${req.network}" not found in project "${instance.project}"`,
          { field, kind: 'network', id: req.network },
        );
      }
      const plan: AddressPlan = addressPlan(networkSpecOf(network.spec));
      const id = newId('nic');
      let mac = macFor(id);
      for (
        let attempt = 1;
        await trx
          .selectFrom('nics')
          .select('id')
          .where('network_id', '=', network.id)
          .where('mac', '=', mac)
          .executeTakeFirst();
        attempt++
      ) {
        mac = macFor(id, attempt);
      }
      const addresses = await allocate(trx, network, plan, id, mac, req, field);
      const row: NicsTable = {
        id,
        project: instance.project,
        instance_id: instance.id,
        network_id: network.id,
        idx: firstIndex + i,
        mac,
        ipv4: addresses.ipv4,
        ipv6: addresses.ipv6,
        created_at: nowIso(),
      };
      await trx.insertInto('nics').values(row).execute();
      out.push(row);
    }
    return out;
  }

  /** Remove NICs and give back their addresses, inside the caller's transaction. */
  async detach(trx: Db, nicIds: readonly string[]): Promise<void> {
    if (nicIds.length === 0) return;
    await release(trx, nicIds);
    await trx
      .deleteFrom('nics')
      .where('id', 'in', [...nicIds])
      .execute();
  }

  /** The NICs of an instance, in slot order. */
  async nicsOf(db: Db, instanceId: string): Promise<Nic[]> {
    const rows = await db
      .selectFrom('nics')
      .innerJoin('networks', 'networks.id', 'nics.network_id')
      .selectAll('nics')
      .select('networks.name as network_name')
      .where('nics.instance_id', '=', instanceId)
      .orderBy('nics.idx')
      .execute();
    return rows.map((r) => nicFromRow(r, r.network_name));
  }

  /** Agent-facing NICs of these instances, in slot order. */
  async desiredNics(instanceIds: readonly string[], db: Db = this.ctx.store.db): Promise<Map<string, DesiredNic[]>> {
    const out = new Map<string, DesiredNic[]>();
    if (instanceIds.length === 0) return out;
    const nics = await db
      .selectFrom('nics')
      .selectAll()
      .where('instance_id', 'in', [...instanceIds])
      .orderBy('instance_id')
      .orderBy('idx')
      .execute();
    const networks = await this.networksById(
      db,
      nics.map((n) => n.network_id),
    );
    for (const nic of nics) {
      const list = out.get(nic.instance_id) ?? [];
      list.push(desiredNic(nic, networks.get(nic.network_id)!));
      out.set(nic.instance_id, list);
    }
    return out;
  }

  private async networksById(db: Db, ids: string[]): Promise<Map<string, NetworksTable>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Map();
    const rows = await db.selectFrom('networks').selectAll().where('id', 'in', unique).execute();
    return new Map(rows.map((r) => [r.id, r]));
  }

  /**
   * Every network with members on `hostId`, with the VXLAN peers (underlay
   * addresses of the other hosts with members) and the DHCP leases of all its NICs.
   */
  async desiredForHost(hostId: string, db: Db = this.ctx.store.db): Promise<DesiredNetwork[]> {
    const local = await db
      .selectFrom('nics')
      .innerJoin('instances', 'instances.id', 'nics.instance_id')
      .select('nics.network_id as network_id')
      .where('instances.host_id', '=', hostId)
      .distinct()
      .execute();
    const networkIds = local.map((r) => r.network_id);
    if (networkIds.length === 0) return [];
    const networks = await this.networksById(db, networkIds);
    const nics = await db
      .selectFrom('nics')
      .innerJoin('instances', 'instances.id', 'nics.instance_id')
      .select([
        'nics.id as nic_id',
        'nics.instance_id as instance_id',
        'nics.network_id as network_id',
        'nics.mac as mac',
        'nics.ipv4 as ipv4',
        'nics.ipv6 as ipv6',
        'nics.idx as idx',
        'instances.name as name',
        'instances.host_id as host_id',
      ])
      .where('nics.network_id', 'in', networkIds)
      .orderBy('nics.network_id')
      .orderBy('instances.name')
      .orderBy('nics.idx')
      .execute();
    const hostIds = [...new Set(nics.map((n) => n.host_id).filter((h): h is string => h !== null && h !== hostId))];
    const hosts =
      hostIds.length === 0
        ? []
        : await db.selectFrom('hosts').select(['id', 'facts']).where('id', 'in', hostIds).execute();
    const underlay = new Map(hosts.map((h) => [h.id, fromJson<HostFacts>(h.facts)?.underlay_ipv4 ?? null]));
    return [...networks.values()]
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map((net) => {
        const spec = networkSpecOf(net.spec);
        const plan = addressPlan(spec);
        const members = nics.filter((n) => n.network_id === net.id);
        const peers = [
          ...new Set(
            members
              .map((m) => (m.host_id === null || m.host_id === hostId ? null : (underlay.get(m.host_id) ?? null)))
              .filter((a): a is string => a !== null),
          ),
        ].sort();
        return {
          id: net.id,
          name: net.name,
          project: net.project,
          kind: spec.kind,
          vni: Number(net.vni),
          mtu: spec.mtu,
          ipv4: spec.ipv4,
          ipv6: spec.ipv6,
          gateway: spec.gateway,
          gateway4: plan.gateway4,
          gateway6: plan.gateway6,
          host_ipv4: plan.host4,
          host_ipv6: plan.host6,
          dns: spec.dns,
          dhcpv6: spec.dhcpv6,
          uplink: spec.uplink,
          peers,
          // The first NIC of an instance on a network answers to its name; more get name-<slot>.
          leases: members.map((m, i) => ({
            nic_id: m.nic_id,
            instance_id: m.instance_id,
            mac: m.mac,
            ipv4: m.ipv4,
            ipv6: m.ipv6,
            hostname: members.findIndex((o) => o.name === m.name) === i ? m.name : `${m.name}-${Number(m.idx)}`,
          })),
        };
      });
  }

  /** Hosts that run members of these networks (whose agents must hear about a change). */
  async hostsOf(networkIds: readonly string[], db: Db = this.ctx.store.db): Promise<string[]> {
    if (networkIds.length === 0) return [];
    const rows = await db
      .selectFrom('nics')
      .innerJoin('instances', 'instances.id', 'nics.instance_id')
      .select('instances.host_id as host_id')
      .where('nics.network_id', 'in', [...networkIds])
      .distinct()
      .execute();
    return rows.map((r) => r.host_id).filter((h): h is string => h !== null);
  }

  /** Tell the agents of these hosts that their networks changed. */
  announce(hostIds: Iterable<string>): void {
    for (const hostId of new Set(hostIds)) this.ctx.signals.send('desired', 'network', hostId);
  }
}

/** The constraint (PostgreSQL) or columns (SQLite message) a unique violation names. */
function uniqueTarget(err: unknown): string {
  const e = err as { constraint?: unknown; message?: unknown };
  return `${typeof e.constraint === 'string' ? e.constraint : ''} ${typeof e.message === 'string' ? e.message : ''}`;
}
