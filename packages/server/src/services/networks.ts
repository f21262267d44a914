import { randomInt } from 'node:crypto';
import {
  FloeError,
  type DesiredNetwork,
  type Network,
  type NetworkCreate,
  type NetworkPatch,
  type NetworkSpec,
  type PageOf,
} from '@floe/api';
import type { ExpressionBuilder } from 'kysely';
import { forUpdate, isUniqueViolation, nowIso, toJson, transaction, type Database, type Db } from '../db/index.js';
import type { NetworksTable } from '../db/schema.js';
import { requireAdmin, visibleProjects } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { deleteWithHistory, recordHistory, updateWithHistory } from './history.js';
import { reserve } from './quota.js';
import { addressPlan, firstHeld, releaseNetwork } from './ipam.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { desiredNetworksForHost } from './network-desired.js';
import { canonicalReserved, checkDhcpv6, MAX_VNI, networkSpecFrom, networkSpecOf } from './network-spec.js';
import { NicService, type GroupLookup, type NetworkLookup } from './nics.js';
import { listPage } from './pagination.js';
import { PostCommit } from './post-commit.js';
import type { ProjectService } from './projects.js';
import { baseFields, checkMetadata, checkRevision, findRow, newBase, patchedBase } from './resource-rows.js';
import { vpnNetworksConnecting } from './vpn-connected.js';

/** Row → API shape, with the status computed from the NICs. */
function networkFromRow(
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

/** Networks (project-scoped; public ones usable from every project), their NICs and the agents' view of them. */
export class NetworkService implements NetworkLookup {
  /** The NICs on networks (the instance service attaches and detaches them through it). */
  readonly nics: NicService;
  private readonly post: PostCommit;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    groups?: GroupLookup,
  ) {
    this.nics = new NicService(ctx, this, groups);
    this.post = new PostCommit(ctx, { hostsOf: (ids) => this.nics.hostsOf(ids) });
  }

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
                qb.where((eb: ExpressionBuilder<Database, 'networks'>) =>
                  eb.or([eb('kind', '=', 'public'), ...(projects.length > 0 ? [eb('project', 'in', projects)] : [])]),
                ),
      },
      (r) => r,
    );
    const members = await this.nics.members(
      this.ctx.store.db,
      page.items.map((r) => r.id),
    );
    return { items: page.items.map((r) => networkFromRow(r, members.get(r.id))), next_cursor: page.next_cursor };
  }

  /** One network by id, or by name inside `project` (then among public networks). */
  async get(principal: Principal, ref: string, project: string, db: Db = this.ctx.store.db): Promise<Network> {
    const row = await this.row(principal, ref, project, db);
    return networkFromRow(row, (await this.nics.members(db, [row.id])).get(row.id));
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
      // A viewer of the network's project who writes elsewhere still uses the public networks.
      if (!(err instanceof FloeError) || (err.code !== 'network_not_found' && err.code !== 'forbidden')) throw err;
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
          await reserve(trx, this.ctx.store.dialect, project, { networks: 1 });
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
        await this.post.run({
          events: [
            {
              type: 'resource.created',
              project,
              kind: 'network',
              resource_id: network.id,
              data: { name: network.name, vni: network.vni },
            },
          ],
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
      const before = networkFromRow(row, (await this.nics.members(trx, [row.id])).get(row.id));
      checkRevision(ifMatch, before.revision);
      const spec: NetworkSpec = { ...before.spec };
      if (patch.spec?.dns !== undefined) spec.dns = patch.spec.dns;
      if (patch.spec?.dhcpv6 !== undefined) {
        spec.dhcpv6 = patch.spec.dhcpv6;
        checkDhcpv6(spec);
      }
      if (patch.spec?.reserved !== undefined) {
        spec.reserved = canonicalReserved(patch.spec.reserved);
        const used = await firstHeld(trx, row.id, [...addressPlan(spec).reserved]);
        if (used !== undefined)
          throw new FloeError('address_in_use', `${used} is given to a NIC and cannot be reserved`, {
            field: 'spec.reserved',
            address: used,
          });
      }
      const after: Network = {
        ...before,
        ...patchedBase(before, patch),
        spec,
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await updateWithHistory(trx, 'networks', {
        kind: 'network',
        row,
        actor: principal.actor,
        before,
        after,
        set: { spec: toJson(spec) },
      });
      return { after, hosts: before.status.hosts };
    });
    await this.post.run({
      events: [
        {
          type: 'resource.updated',
          project: after.project,
          kind: 'network',
          resource_id: after.id,
          data: { revision: after.revision },
        },
      ],
      networkHosts: hosts,
    });
    return after;
  }

  /** Delete a network without NICs (`in_use` otherwise). */
  async delete(principal: Principal, ref: string, project: string, ifMatch?: number): Promise<void> {
    const row = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      if (row.kind === 'public') requireAdmin(principal, 'delete public networks');
      checkRevision(ifMatch, Number(row.revision));
      // Locked first: a VPN network connecting it meanwhile waits (its share lock), then finds it gone.
      await forUpdate(trx.selectFrom('networks').select('id').where('id', '=', row.id)).execute();
      const vpns = await vpnNetworksConnecting(trx, row.project, row.id);
      if (vpns.length > 0)
        throw new FloeError(
          'in_use',
          `network "${row.name}" is connected to VPN networks ${vpns.map((v) => `"${v}"`).join(', ')}; take it out of their networks or delete them first`,
          { kind: 'network', id: row.id, vpn_networks: vpns },
        );
      const nic = await this.nics.anyOn(trx, row.id);
      if (nic)
        throw new FloeError('in_use', `network "${row.name}" still has NICs; remove them or their instances first`, {
          kind: 'network',
          id: row.id,
          instance: nic.instance_id,
        });
      const fip = await trx
        .selectFrom('floating_ips')
        .select('name')
        .where('network_id', '=', row.id)
        .executeTakeFirst();
      if (fip)
        throw new FloeError('in_use', `network "${row.name}" still holds floating IP "${fip.name}"; delete it first`, {
          kind: 'network',
          id: row.id,
        });
      await releaseNetwork(trx, row.id);
      await deleteWithHistory(trx, 'networks', {
        kind: 'network',
        row,
        actor: principal.actor,
        before: networkFromRow(row),
      });
      return row;
    });
    await this.post.run({
      events: [
        {
          type: 'resource.deleted',
          project: row.project,
          kind: 'network',
          resource_id: row.id,
          data: { name: row.name },
        },
      ],
    });
  }

  /** Network rows by id. */
  async byIds(db: Db, ids: readonly string[]): Promise<Map<string, NetworksTable>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Map();
    const rows = await db.selectFrom('networks').selectAll().where('id', 'in', unique).execute();
    return new Map(rows.map((r) => [r.id, r]));
  }

  /** The agent-facing view: every network with members on `hostId`, with peers and leases. */
  desiredForHost(hostId: string, db: Db = this.ctx.store.db): Promise<DesiredNetwork[]> {
    return desiredNetworksForHost(db, this, this.nics, hostId);
  }

  /** Hosts that run members of these networks (whose agents must hear about a change). */
  hostsOf(networkIds: readonly string[], db: Db = this.ctx.store.db): Promise<string[]> {
    return this.nics.hostsOf(networkIds, db);
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
