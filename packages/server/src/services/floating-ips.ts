import {
  FloeError,
  type FloatingIp,
  type FloatingIpAttach,
  type FloatingIpChanged,
  type FloatingIpCreate,
  type HistoryEntry,
  type PageOf,
} from '@floe/api';
import { isUniqueViolation, nowIso, transaction, type Db } from '../db/index.js';
import type { FloatingIpsTable, InstancesTable } from '../db/schema.js';
import { visibleProjects } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { historyPage, deleteWithHistory, recordHistory } from './history.js';
import { instanceRow, lockedInstanceRow } from './instance-rows.js';
import type { InstanceService } from './instances.js';
import { addressPlan, allocateIpv4, release } from './ipam.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { closeAll, setQuantity } from './metering.js';
import { floatingIpFromRow, natTarget } from './nat-rows.js';
import { networkSpecOf } from './network-spec.js';
import type { NetworkService } from './networks.js';
import { listPage } from './pagination.js';
import { PostCommit } from './post-commit.js';
import type { ProjectService } from './projects.js';
import { reserve } from './quota.js';
import { checkMetadata, findRow, newBase } from './resource-rows.js';

/** An instance whose desired state a change touched, with its host. */
type Touched = { instanceId: string; hostId: string | null };

/**
 * Floating IPs: public IPv4 addresses of a public network's pool, held by a project (metered as public
 * IPv4 while held), attached one to one to an instance's NIC and moved between instances in one
 * request. The hosts of the instances involved hear of it at once and change their NAT; an attach
 * or detach is an operation on the instance the address goes to or leaves.
 */
export class FloatingIpService {
  private readonly post: PostCommit;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    private readonly networks: NetworkService,
    private readonly instances: InstanceService,
  ) {
    this.post = new PostCommit(ctx);
  }

  /** Floating IPs of the visible projects. */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[]; project?: string },
  ): Promise<PageOf<FloatingIp>> {
    const projects = visibleProjects(principal, q.project);
    return listPage<FloatingIpsTable, FloatingIp>(
      this.ctx.store.db,
      'floating_ips',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels: parseLabelSelectors(q.label),
        ...(projects === null ? {} : { projects: [...projects] }),
      },
      floatingIpFromRow,
    );
  }

  /** The row of a floating IP by id, name or address, in `project`. */
  async row(principal: Principal, ref: string, project: string, db: Db): Promise<FloatingIpsTable> {
    if (/^[0-9.]+$/.test(ref)) {
      const byAddress = await db
        .selectFrom('floating_ips')
        .select('id')
        .where('address', '=', ref)
        .where('project', '=', project)
        .executeTakeFirst();
      if (byAddress !== undefined) ref = byAddress.id;
    }
    return findRow<FloatingIpsTable>(db, 'floating_ips', 'floating_ip', ref, {
      project,
      principal,
      code: 'floating_ip_not_found',
      label: 'floating IP',
    });
  }

  async get(principal: Principal, ref: string, project: string): Promise<FloatingIp> {
    return floatingIpFromRow(await this.row(principal, ref, project, this.ctx.store.db));
  }

  /** Take an address of a public network's pool for the project, attached at once when an instance is named. */
  async create(principal: Principal, body: FloatingIpCreate): Promise<FloatingIp> {
    const project = body.project ?? 'default';
    const metadata = checkMetadata(body.metadata);
    const base = newBase('floating_ip', body.name, body.labels, metadata);
    let touched: Touched[] = [];
    try {
      const fip = await transaction(this.ctx.store, async (trx) => {
        await this.projects.require(principal, project, trx);
        const network = await this.publicNetwork(principal, body.network, project, trx);
        await reserve(trx, this.ctx.store.dialect, project, { floating_ips: 1 });
        const address = await allocateIpv4(
          trx,
          network,
          addressPlan(networkSpecOf(network.spec)),
          base.id,
          body.address,
          'address',
        );
        let row: FloatingIpsTable = {
          ...base,
          project,
          network_id: network.id,
          address,
          instance_id: null,
          nic_id: null,
        };
        if (body.instance !== undefined) {
          const target = await this.target(principal, row, body.instance, body.nic, project, trx);
          row = { ...row, instance_id: target.instance.id, nic_id: target.nicId };
          touched = [{ instanceId: target.instance.id, hostId: target.instance.host_id }];
        }
        await trx.insertInto('floating_ips').values(row).execute();
        await writeLabels(trx, row.id, body.labels ?? {}, true);
        // Billed as a public IPv4 address while the project holds it, attached or not.
        await setQuantity(
          trx,
          { project, resource_kind: 'floating_ip', resource_id: row.id, dimension: 'public_ipv4' },
          1,
          row.created_at,
        );
        const fip = floatingIpFromRow(row);
        await recordHistory(trx, {
          kind: 'floating_ip',
          resource_id: row.id,
          project,
          revision: 1,
          action: 'create',
          actor: principal.actor,
          before: null,
          after: fip,
        });
        return fip;
      });
      await this.post.run({
        events: [
          {
            type: 'resource.created',
            project,
            kind: 'floating_ip',
            resource_id: fip.id,
            data: { name: fip.name, address: fip.address },
          },
        ],
        desired: touched,
      });
      return fip;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      throw new FloeError('name_conflict', `floating IP "${body.name}" already exists in project "${project}"`, {
        field: 'name',
        kind: 'floating_ip',
        name: body.name,
      });
    }
  }

  /** Attach to an instance's NIC, moving it from where it was in the same transaction. */
  attach(principal: Principal, ref: string, project: string, body: FloatingIpAttach): Promise<FloatingIpChanged> {
    return this.change(principal, ref, project, 'attach', async (row, trx) => {
      // Locked before anything is checked: the generation the operation waits for is this one's.
      const locked = await lockedInstanceRow(principal, body.instance, project, trx);
      const target = await this.target(principal, row, locked.id, body.nic, project, trx);
      return { instance: locked, nicId: target.nicId };
    });
  }

  /** Detach from its NIC; the project keeps the address. */
  detach(principal: Principal, ref: string, project: string): Promise<FloatingIpChanged> {
    return this.change(principal, ref, project, 'detach', () => Promise.resolve(null));
  }

  /** Give the address back to the pool (detached first; refused while port forwards use it). */
  async delete(principal: Principal, ref: string, project: string): Promise<void> {
    const { row, touched } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      const forward = await trx
        .selectFrom('port_forwards')
        .select('name')
        .where('listen', '=', row.id)
        .executeTakeFirst();
      if (forward !== undefined)
        throw new FloeError(
          'in_use',
          `floating IP "${row.name}" carries port forward "${forward.name}"; delete it first`,
          {
            kind: 'floating_ip',
            id: row.id,
          },
        );
      const touched = await this.touched(trx, [row.instance_id]);
      await release(trx, [row.id]);
      await closeAll(trx, [row.id], nowIso());
      await deleteWithHistory(trx, 'floating_ips', {
        kind: 'floating_ip',
        row,
        actor: principal.actor,
        before: floatingIpFromRow(row),
      });
      return { row, touched };
    });
    await this.post.run({
      events: [
        {
          type: 'resource.deleted',
          project: row.project,
          kind: 'floating_ip',
          resource_id: row.id,
          data: { name: row.name, address: row.address },
        },
      ],
      desired: touched,
    });
  }

  /** Change history of one floating IP, oldest first. */
  async history(
    principal: Principal,
    ref: string,
    project: string,
    q: { limit?: number; cursor?: string },
  ): Promise<PageOf<HistoryEntry>> {
    const row = await this.row(principal, ref, project, this.ctx.store.db);
    return historyPage(this.ctx.store.db, row.id, q);
  }

  /**
   * Attach (`to` gives the instance, its row locked) or detach, as one operation on the instance the
   * address goes to, or leaves when detached: done once that instance's host has the change. Both hosts
   * are told at once.
   */
  private async change(
    principal: Principal,
    ref: string,
    project: string,
    action: 'attach' | 'detach',
    to: (row: FloatingIpsTable, trx: Db) => Promise<{ instance: InstancesTable; nicId: string } | null>,
  ): Promise<FloatingIpChanged> {
    const { after, touched, operation, events } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      const before = floatingIpFromRow(row);
      const target = await to(row, trx);
      const tracked =
        target?.instance ??
        (row.instance_id === null
          ? null
          : await trx
              .selectFrom('instances')
              .selectAll()
              .where('id', '=', row.instance_id)
              .forUpdate()
              .executeTakeFirst());
      if (tracked == null)
        throw new FloeError('invalid_state', `floating IP "${row.name}" is not attached`, {
          kind: 'floating_ip',
          id: row.id,
        });
      const next = {
        instance_id: target?.instance.id ?? null,
        nic_id: target?.nicId ?? null,
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await trx.updateTable('floating_ips').set(next).where('id', '=', row.id).execute();
      const after = floatingIpFromRow({ ...row, ...next });
      await recordHistory(trx, {
        kind: 'floating_ip',
        resource_id: row.id,
        project: row.project,
        revision: after.revision,
        action,
        actor: principal.actor,
        before,
        after,
      });
      const { operation, events } = await this.instances.trackChange(trx, principal, tracked, {
        action: `floating-ip-${action}`,
        kind: `instance.floating-ip-${action}`,
        message: `${action} of floating IP ${row.name} (${row.address}) requested`,
        resources: [{ kind: 'floating_ip', id: row.id, name: row.name }],
      });
      // The instance it leaves and the one it goes to: both hosts change their NAT.
      return {
        after,
        operation,
        events,
        touched: await this.touched(trx, [row.instance_id, next.instance_id]),
      };
    });
    await this.instances.afterCommit({
      forget: [operation.resources[0]!.id],
      events: [
        ...events,
        {
          type: 'resource.updated',
          project: after.project,
          kind: 'floating_ip',
          resource_id: after.id,
          data: { revision: after.revision, instance: after.instance, nic: after.nic },
        },
      ],
      desired: touched,
    });
    return { floating_ip: after, operation };
  }

  /** The public network a floating IP comes from: the one named, or the only public network there is. */
  private async publicNetwork(principal: Principal, ref: string | undefined, project: string, trx: Db) {
    if (ref !== undefined) {
      const network = await this.networks.row(principal, ref, project, trx);
      if (network.kind !== 'public')
        throw new FloeError(
          'validation_failed',
          `network "${network.name}" is not public: floating IPs come from a public network's pool`,
          {
            field: 'network',
          },
        );
      return network;
    }
    const rows = await trx.selectFrom('networks').selectAll().where('kind', '=', 'public').limit(2).execute();
    if (rows.length !== 1)
      throw new FloeError(
        'validation_failed',
        rows.length === 0
          ? 'there is no public network to take a floating IP from'
          : 'name the public network to take the floating IP from',
        { field: 'network' },
      );
    return rows[0]!;
  }

  /** The NIC a floating IP goes to: free of other floating IPs, and the floating IP free of port forwards. */
  private async target(
    principal: Principal,
    row: FloatingIpsTable,
    instanceRef: string,
    nicId: string | undefined,
    project: string,
    trx: Db,
  ): Promise<{ instance: InstancesTable; nicId: string }> {
    const instance = await instanceRow(principal, instanceRef, project, trx);
    if (instance.deleting === 1)
      throw new FloeError('invalid_state', `instance "${instance.name}" is being deleted`, { state: instance.state });
    const nic = await natTarget(trx, instance, nicId);
    const other = await trx
      .selectFrom('floating_ips')
      .select('name')
      .where('nic_id', '=', nic.id)
      .where('id', '!=', row.id)
      .executeTakeFirst();
    if (other !== undefined)
      throw new FloeError('in_use', `NIC ${nic.id} of "${instance.name}" has floating IP "${other.name}" already`, {
        field: 'nic',
        nic: nic.id,
      });
    const forward = await trx
      .selectFrom('port_forwards')
      .select('name')
      .where('listen', '=', row.id)
      .executeTakeFirst();
    if (forward !== undefined)
      throw new FloeError(
        'in_use',
        `floating IP "${row.name}" carries port forward "${forward.name}": one to one NAT would take every port`,
        { field: 'instance' },
      );
    return { instance, nicId: nic.id };
  }

  /** The instances of these ids with their hosts. */
  private async touched(trx: Db, ids: ReadonlyArray<string | null>): Promise<Touched[]> {
    const wanted = [...new Set(ids.filter((i): i is string => i !== null))];
    if (wanted.length === 0) return [];
    const rows = await trx.selectFrom('instances').select(['id', 'host_id']).where('id', 'in', wanted).execute();
    return rows.map((r) => ({ instanceId: r.id, hostId: r.host_id }));
  }
}
