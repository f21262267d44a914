import { FloeError, type HistoryEntry, type PageOf, type PortForward, type PortForwardCreate } from '@floe/api';
import { isUniqueViolation, transaction, type Db } from '../db/index.js';
import type { PortForwardsTable } from '../db/schema.js';
import { visibleProjects } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import type { FloatingIpService } from './floating-ips.js';
import { historyPage, deleteWithHistory, recordHistory } from './history.js';
import { instanceRow } from './instance-rows.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { natTarget, portForwardFromRow } from './nat-rows.js';
import { listPage } from './pagination.js';
import { PostCommit } from './post-commit.js';
import type { ProjectService } from './projects.js';
import { reserve } from './quota.js';
import { checkMetadata, findRow, newBase } from './resource-rows.js';

/**
 * Port forwards: a TCP or UDP port of a floating IP (one not attached one to one), or of the host an
 * instance runs on, forwarded to a port of one of the instance's NICs. One listener per address,
 * protocol and port; the instance's host hears of each change at once.
 */
export class PortForwardService {
  private readonly post: PostCommit;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    private readonly fips: FloatingIpService,
  ) {
    this.post = new PostCommit(ctx);
  }

  /** Rows → API shapes, with the addresses of their floating IPs and NICs. */
  private async shapes(db: Db, rows: readonly PortForwardsTable[]): Promise<PortForward[]> {
    if (rows.length === 0) return [];
    const fipIds = [...new Set(rows.map((r) => r.listen).filter((l) => l !== 'host'))];
    const fips =
      fipIds.length === 0
        ? []
        : await db.selectFrom('floating_ips').select(['id', 'address']).where('id', 'in', fipIds).execute();
    const nics = await db
      .selectFrom('nics')
      .select(['id', 'ipv4'])
      .where('id', 'in', [...new Set(rows.map((r) => r.nic_id))])
      .execute();
    const addr = new Map(fips.map((f) => [f.id, f.address]));
    const target = new Map(nics.map((n) => [n.id, n.ipv4 ?? '']));
    return rows.map((r) => portForwardFromRow(r, addr.get(r.listen) ?? null, target.get(r.nic_id) ?? ''));
  }

  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[]; project?: string },
  ): Promise<PageOf<PortForward>> {
    const projects = visibleProjects(principal, q.project);
    const page = await listPage<PortForwardsTable, PortForwardsTable>(
      this.ctx.store.db,
      'port_forwards',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels: parseLabelSelectors(q.label),
        ...(projects === null ? {} : { projects: [...projects] }),
      },
      (r) => r,
    );
    return { items: await this.shapes(this.ctx.store.db, page.items), next_cursor: page.next_cursor };
  }

  private row(principal: Principal, ref: string, project: string, db: Db): Promise<PortForwardsTable> {
    return findRow<PortForwardsTable>(db, 'port_forwards', 'port_forward', ref, {
      project,
      principal,
      code: 'port_forward_not_found',
      label: 'port forward',
    });
  }

  async get(principal: Principal, ref: string, project: string): Promise<PortForward> {
    const db = this.ctx.store.db;
    return (await this.shapes(db, [await this.row(principal, ref, project, db)]))[0]!;
  }

  /** Forward `port` of a floating IP (or of the instance's host) to `target_port` (default the same) of the instance's NIC. */
  async create(principal: Principal, body: PortForwardCreate): Promise<PortForward> {
    const project = body.project ?? 'default';
    const metadata = checkMetadata(body.metadata);
    const base = newBase('port_forward', body.name, body.labels, metadata);
    const protocol = body.protocol ?? 'tcp';
    try {
      const { forward, touched } = await transaction(this.ctx.store, async (trx) => {
        await this.projects.require(principal, project, trx);
        let listen = 'host';
        if (body.floating_ip !== undefined) {
          const fip = await this.fips.row(principal, body.floating_ip, project, trx);
          if (fip.nic_id !== null)
            throw new FloeError(
              'in_use',
              `floating IP "${fip.name}" is attached one to one to an instance; detach it to forward single ports`,
              { field: 'floating_ip' },
            );
          listen = fip.id;
        }
        const taken = await trx
          .selectFrom('port_forwards')
          .select('id')
          .where('listen', '=', listen)
          .where('protocol', '=', protocol)
          .where('port', '=', body.port)
          .executeTakeFirst();
        if (taken !== undefined) throw portInUse(body, protocol);
        const instance = await instanceRow(principal, body.instance, project, trx);
        if (instance.deleting === 1)
          throw new FloeError('invalid_state', `instance "${instance.name}" is being deleted`, {
            state: instance.state,
          });
        const nic = await natTarget(trx, instance, body.nic);
        await reserve(trx, this.ctx.store.dialect, project, { port_forwards: 1 });
        const row: PortForwardsTable = {
          ...base,
          project,
          protocol,
          listen,
          port: body.port,
          instance_id: instance.id,
          nic_id: nic.id,
          target_port: body.target_port ?? body.port,
        };
        await trx.insertInto('port_forwards').values(row).execute();
        await writeLabels(trx, row.id, body.labels ?? {}, true);
        const forward = (await this.shapes(trx, [row]))[0]!;
        await recordHistory(trx, {
          kind: 'port_forward',
          resource_id: row.id,
          project,
          revision: 1,
          action: 'create',
          actor: principal.actor,
          before: null,
          after: forward,
        });
        return { forward, touched: [{ instanceId: instance.id, hostId: instance.host_id }] };
      });
      await this.post.run({
        events: [
          {
            type: 'resource.created',
            project,
            kind: 'port_forward',
            resource_id: forward.id,
            data: { name: forward.name, port: forward.port, protocol: forward.protocol },
          },
        ],
        desired: touched,
      });
      return forward;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      // Two creates racing for one listener: the unique index tells which lost.
      if (
        /listen|port_forwards\.port/.test(String((err as Error).message)) ||
        /listen/.test(String((err as { constraint?: string }).constraint))
      )
        throw portInUse(body, protocol);
      throw new FloeError('name_conflict', `port forward "${body.name}" already exists in project "${project}"`, {
        field: 'name',
        kind: 'port_forward',
        name: body.name,
      });
    }
  }

  async delete(principal: Principal, ref: string, project: string): Promise<void> {
    const { row, hostId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      const before = (await this.shapes(trx, [row]))[0]!;
      const inst = await trx
        .selectFrom('instances')
        .select('host_id')
        .where('id', '=', row.instance_id)
        .executeTakeFirst();
      await deleteWithHistory(trx, 'port_forwards', { kind: 'port_forward', row, actor: principal.actor, before });
      return { row, hostId: inst?.host_id ?? null };
    });
    await this.post.run({
      events: [
        {
          type: 'resource.deleted',
          project: row.project,
          kind: 'port_forward',
          resource_id: row.id,
          data: { name: row.name },
        },
      ],
      desired: [{ instanceId: row.instance_id, hostId }],
    });
  }

  async history(
    principal: Principal,
    ref: string,
    project: string,
    q: { limit?: number; cursor?: string },
  ): Promise<PageOf<HistoryEntry>> {
    const row = await this.row(principal, ref, project, this.ctx.store.db);
    return historyPage(this.ctx.store.db, row.id, q);
  }
}

function portInUse(body: PortForwardCreate, protocol: string): FloeError {
  return new FloeError(
    'port_in_use',
    `${body.floating_ip === undefined ? 'the host' : `floating IP ${body.floating_ip}`} already forwards ${protocol} port ${body.port}`,
    { field: 'port', port: body.port, protocol },
  );
}
