import {
  FloeError,
  MAX_NICS,
  type DesiredForward,
  type DesiredNic,
  type Nic,
  type NicPatch,
  type NicRequest,
  type RateLimit,
} from '@floe/api';
import { fromJson, nowIso, toJson, type Db } from '../db/index.js';
import type { NetworksTable, NicsTable } from '../db/schema.js';
import { newId } from '../ids.js';
import type { Principal, ServiceContext } from './context.js';
import { addressPlan, allocate, macFor, release, type AddressPlan } from './ipam.js';
import { networkSpecOf } from './network-spec.js';
import { closeAll, setQuantity } from './metering.js';
import type { NewEvent } from './events.js';
import { desiredNat, releaseNat } from './nat-rows.js';
import { gatewayHosts, loadVpnLinks } from './vpn-gateways.js';

/** The group ids a NIC row names ([]: the project's default group). */
const groupIds = (row: Pick<NicsTable, 'security_groups'>): string[] => fromJson<string[]>(row.security_groups) ?? [];

/** Row → API shape; `groups` names the security groups by id (the NIC's, or its project's default). */
function nicFromRow(row: NicsTable, networkName: string, groups: ReadonlyMap<string, string> = new Map()): Nic {
  const ids = groupIds(row);
  return {
    id: row.id,
    instance: row.instance_id,
    network: row.network_id,
    network_name: networkName,
    index: Number(row.idx),
    mac: row.mac,
    ipv4: row.ipv4,
    ipv6: row.ipv6,
    security_groups: ids.length > 0 ? ids.map((id) => groups.get(id) ?? id) : ['default'],
    filtering: row.filtering !== 0,
    rate_limit: rateLimitOf(row),
    created_at: row.created_at,
  };
}

/** The NIC's limits (null: none). */
function rateLimitOf(row: NicsTable): RateLimit | null {
  return fromJson<RateLimit>(row.rate_limit);
}

/** Limits as stored: null when no field is set, so `{}` and null mean the same. */
function rateLimitColumn(limit: RateLimit | null | undefined): string | null {
  return limit == null || Object.keys(limit).length === 0 ? null : toJson(limit);
}

/** What the agent needs for one NIC (pure); `defaultGroup` applies when it names none, `nat` is its floating IP and forwarded ports. */
function desiredNic(
  nic: NicsTable,
  network: NetworksTable,
  defaultGroup: string | undefined,
  nat?: { floating_ipv4: string | null; forwards: DesiredForward[] },
): DesiredNic {
  const ids = groupIds(nic);
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
    security_groups: ids.length > 0 ? ids : defaultGroup === undefined ? [] : [defaultGroup],
    filtering: nic.filtering !== 0,
    // Sent only when there are limits: absent means none.
    ...(nic.rate_limit === null ? {} : { rate_limit: rateLimitOf(nic) }),
    ...(nat?.floating_ipv4 == null ? {} : { floating_ipv4: nat.floating_ipv4 }),
    ...(nat === undefined || nat.forwards.length === 0 ? {} : { forwards: nat.forwards }),
  };
}

/** A NIC request in its object form. */
function nicRequest(r: NicRequest): {
  network: string;
  ipv4?: string;
  ipv6?: string;
  security_groups?: string[];
  filtering?: boolean;
  rate_limit?: RateLimit;
} {
  return typeof r === 'string' ? { network: r } : r;
}

/** What the NIC service asks of the networks service. */
export interface NetworkLookup {
  /** The row of a network the principal may use (`network_not_found` otherwise). */
  row(principal: Principal, ref: string, project: string, db: Db): Promise<NetworksTable>;
  /** Network rows by id. */
  byIds(db: Db, ids: readonly string[]): Promise<Map<string, NetworksTable>>;
}

/** What the NIC service asks of the security groups service. */
export interface GroupLookup {
  /** Ids of the groups `refs` name in `project` (none: the default group), inside the caller's transaction. */
  resolve(trx: Db, principal: Principal, project: string, refs: readonly string[], field: string): Promise<string[]>;
  /** Group names by id. */
  namesOf(db: Db, ids: readonly string[]): Promise<Map<string, string>>;
}

/** A NIC with where its instance runs, for the agents' view of a network. */
interface PlacedNic {
  nic_id: string;
  instance_id: string;
  network_id: string;
  mac: string;
  ipv4: string | null;
  ipv6: string | null;
  idx: number;
  /** The instance's name. */
  name: string;
  host_id: string | null;
}

/**
 * NICs: the `nics` table (and, through IPAM, their addresses). Other services ask this one; none
 * queries the table itself. Where a NIC runs is its instance's host, read with it in one query.
 */
export class NicService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly networks: NetworkLookup,
    private readonly groups?: GroupLookup,
  ) {}

  /** Set a NIC's security groups and filtering, inside the caller's transaction; the NIC after. */
  async setGroups(trx: Db, principal: Principal, nic: NicsTable, patch: NicPatch): Promise<Nic> {
    const set: Partial<NicsTable> = {};
    if (patch.security_groups !== undefined && this.groups)
      set.security_groups = toJson(
        await this.groups.resolve(trx, principal, nic.project, patch.security_groups, 'security_groups'),
      );
    if (patch.filtering !== undefined) set.filtering = patch.filtering ? 1 : 0;
    if (Object.keys(set).length > 0) await trx.updateTable('nics').set(set).where('id', '=', nic.id).execute();
    const row = { ...nic, ...set };
    const network = (await this.networks.byIds(trx, [nic.network_id])).get(nic.network_id)!;
    return nicFromRow(row, network.name, await this.names(trx, [row]));
  }

  private async names(db: Db, rows: readonly NicsTable[]): Promise<Map<string, string>> {
    return this.groups ? this.groups.namesOf(db, rows.flatMap(groupIds)) : new Map();
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
    return (await this.create(trx, principal, instance, requests, firstIndex)).map((c) => c.row);
  }

  /** One NIC in slot `index`, as `attach` makes it, in its API shape. */
  async attachOne(
    trx: Db,
    principal: Principal,
    instance: { id: string; project: string },
    request: NicRequest,
    index: number,
  ): Promise<Nic> {
    const [created] = await this.create(trx, principal, instance, [request], index);
    return nicFromRow(created!.row, created!.networkName, await this.names(trx, [created!.row]));
  }

  private async create(
    trx: Db,
    principal: Principal,
    instance: { id: string; project: string },
    requests: readonly NicRequest[],
    firstIndex: number,
  ): Promise<Array<{ row: NicsTable; networkName: string }>> {
    if (firstIndex + requests.length > MAX_NICS)
      throw new FloeError('too_many_nics', `an instance has at most ${MAX_NICS} NICs`, {
        field: 'networks',
        limit: MAX_NICS,
      });
    const out: Array<{ row: NicsTable; networkName: string }> = [];
    for (const [i, raw] of requests.entries()) {
      const req = nicRequest(raw);
      const field = `networks[${i}]`;
      let network: NetworksTable;
      try {
        network = await this.networks.row(principal, req.network, instance.project, trx);
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
      // Stored as ids, so a group renamed or named by its id means the same; none named: the project's default.
      const groups = this.groups
        ? await this.groups.resolve(
            trx,
            principal,
            instance.project,
            req.security_groups ?? [],
            `${field}.security_groups`,
          )
        : [];
      const row: NicsTable = {
        id,
        project: instance.project,
        instance_id: instance.id,
        network_id: network.id,
        idx: firstIndex + i,
        mac,
        ipv4: addresses.ipv4,
        ipv6: addresses.ipv6,
        rate_limit: rateLimitColumn(req.rate_limit),
        created_at: nowIso(),
        security_groups: toJson(groups),
        filtering: req.filtering === false ? 0 : 1,
      };
      await trx.insertInto('nics').values(row).execute();
      // An address on a public network is billed while the NIC holds it.
      if (network.kind === 'public' && row.ipv4 !== null)
        await setQuantity(
          trx,
          { project: row.project, resource_kind: 'nic', resource_id: id, dimension: 'public_ipv4' },
          1,
          row.created_at,
        );
      out.push({ row, networkName: network.name });
    }
    return out;
  }

  /**
   * Remove NICs and give back their addresses, inside the caller's transaction; their floating IPs are
   * detached and their port forwards removed, in those resources' history by `actor`; their events,
   * for after the commit.
   */
  async detach(trx: Db, nicIds: readonly string[], actor: string): Promise<NewEvent[]> {
    if (nicIds.length === 0) return [];
    const events = await releaseNat(trx, nicIds, actor);
    await release(trx, nicIds);
    await closeAll(trx, nicIds, nowIso());
    await trx
      .deleteFrom('nics')
      .where('id', 'in', [...nicIds])
      .execute();
    return events;
  }

  /** Remove every NIC of an instance (inside the caller's transaction, as detach): the networks they were on, and the events. */
  async detachAll(trx: Db, instanceId: string, actor: string): Promise<{ networks: string[]; events: NewEvent[] }> {
    const nics = await trx
      .selectFrom('nics')
      .select(['id', 'network_id'])
      .where('instance_id', '=', instanceId)
      .execute();
    const events = await this.detach(
      trx,
      nics.map((n) => n.id),
      actor,
    );
    return { networks: nics.map((n) => n.network_id), events };
  }

  /** One NIC of an instance, or undefined. */
  find(db: Db, instanceId: string, nicId: string): Promise<NicsTable | undefined> {
    return db
      .selectFrom('nics')
      .selectAll()
      .where('instance_id', '=', instanceId)
      .where('id', '=', nicId)
      .executeTakeFirst();
  }

  /** Change a NIC's limits inside the caller's transaction; the NIC in its API shape. */
  async setRateLimit(trx: Db, row: NicsTable, limit: RateLimit | null): Promise<Nic> {
    const rate_limit = rateLimitColumn(limit);
    await trx.updateTable('nics').set({ rate_limit }).where('id', '=', row.id).execute();
    const networks = await this.networks.byIds(trx, [row.network_id]);
    return nicFromRow({ ...row, rate_limit }, networks.get(row.network_id)!.name, await this.names(trx, [row]));
  }

  /** The slots the NICs of an instance use. */
  async slots(db: Db, instanceId: string): Promise<number[]> {
    const rows = await db.selectFrom('nics').select('idx').where('instance_id', '=', instanceId).execute();
    return rows.map((r) => Number(r.idx));
  }

  /** The NICs of an instance, in slot order. */
  async list(db: Db, instanceId: string): Promise<Nic[]> {
    const rows = await db.selectFrom('nics').selectAll().where('instance_id', '=', instanceId).orderBy('idx').execute();
    const networks = await this.networks.byIds(
      db,
      rows.map((r) => r.network_id),
    );
    const names = await this.names(db, rows);
    return rows.map((r) => nicFromRow(r, networks.get(r.network_id)!.name, names));
  }

  /** Agent-facing NICs of these instances, in slot order. */
  async desired(instanceIds: readonly string[], db: Db = this.ctx.store.db): Promise<Map<string, DesiredNic[]>> {
    const out = new Map<string, DesiredNic[]>();
    if (instanceIds.length === 0) return out;
    const nics = await db
      .selectFrom('nics')
      .selectAll()
      .where('instance_id', 'in', [...instanceIds])
      .orderBy('instance_id')
      .orderBy('idx')
      .execute();
    const networks = await this.networks.byIds(
      db,
      nics.map((n) => n.network_id),
    );
    // NICs older than security groups name none: their project's default group applies.
    const projects = [...new Set(nics.filter((n) => groupIds(n).length === 0).map((n) => n.project))];
    const defaults = new Map(
      projects.length === 0
        ? []
        : (
            await db
              .selectFrom('security_groups')
              .select(['project', 'id'])
              .where('name', '=', 'default')
              .where('project', 'in', projects)
              .execute()
          ).map((r) => [r.project, r.id]),
    );
    const nat = await desiredNat(
      db,
      nics.map((n) => n.id),
    );
    for (const nic of nics) {
      const list = out.get(nic.instance_id) ?? [];
      list.push(desiredNic(nic, networks.get(nic.network_id)!, defaults.get(nic.project), nat.get(nic.id)));
      out.set(nic.instance_id, list);
    }
    return out;
  }

  /** Hosts with members and NIC counts, per network. */
  async members(db: Db, networkIds: readonly string[]): Promise<Map<string, { hosts: string[]; nics: number }>> {
    const out = new Map<string, { hosts: string[]; nics: number }>();
    if (networkIds.length === 0) return out;
    const rows = await db
      .selectFrom('nics')
      .leftJoin('instances', 'instances.id', 'nics.instance_id')
      .select(['nics.network_id as network_id', 'instances.host_id as host_id'])
      .where('nics.network_id', 'in', [...networkIds])
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

  /** Some NIC on a network, or undefined when it has none. */
  anyOn(db: Db, networkId: string): Promise<{ id: string; instance_id: string } | undefined> {
    return db
      .selectFrom('nics')
      .select(['id', 'instance_id'])
      .where('network_id', '=', networkId)
      .limit(1)
      .executeTakeFirst();
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
    // VPN gateway hosts are on the networks their VPN networks connect, with or without VMs there.
    const gateways = gatewayHosts(await loadVpnLinks(db, networkIds));
    const vpn = networkIds.flatMap((id) => gateways.get(id) ?? []);
    return [...new Set([...rows.map((r) => r.host_id).filter((h): h is string => h !== null), ...vpn])];
  }

  /** Networks with a NIC of an instance placed on `hostId`. */
  async networksOnHost(db: Db, hostId: string): Promise<string[]> {
    const rows = await db
      .selectFrom('nics')
      .innerJoin('instances', 'instances.id', 'nics.instance_id')
      .select('nics.network_id as network_id')
      .where('instances.host_id', '=', hostId)
      .distinct()
      .execute();
    return rows.map((r) => r.network_id);
  }

  /** The NICs of these networks with their instance's name and host, by network, instance name and slot. */
  placed(db: Db, networkIds: readonly string[]): Promise<PlacedNic[]> {
    return db
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
      .where('nics.network_id', 'in', [...networkIds])
      .orderBy('nics.network_id')
      .orderBy('instances.name')
      .orderBy('nics.idx')
      .execute();
  }
}
