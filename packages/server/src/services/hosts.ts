import {
  FloeError,
  type Host,
  type HostFacts,
  type HostPatch,
  type HostState,
  type JoinTokenCreated,
  type PageOf,
} from '@floe/api';
import { fromJson, isUniqueViolation, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { HostsTable } from '../db/schema.js';
import { newId } from '../ids.js';
import { baseFields, checkRevision, findRow, newBase, patchedBase } from './resource-rows.js';
import { listPage } from './pagination.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { recordHistory } from './history.js';
import { requireAdmin } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { hashSecret, newSecret } from './tokens.js';

/** vCPUs, memory and instance count placed on one host. */
export interface Allocation {
  instances: number;
  vcpus: number;
  memory_mib: number;
}

const EMPTY: Allocation = { instances: 0, vcpus: 0, memory_mib: 0 };

/**
 * What is placed on each host (deleting instances still hold their resources): one row per host
 * in `host_allocations`, which triggers keep equal to the sums over `instances`.
 */
export async function allocations(db: Db, hostIds?: string[]): Promise<Map<string, Allocation>> {
  let q = db.selectFrom('host_allocations').select(['host_id', 'instances', 'vcpus', 'memory_mib']);
  if (hostIds) q = q.where('host_id', 'in', hostIds.length > 0 ? hostIds : ['']);
  const rows = await q.execute();
  return new Map(
    rows.map((r) => [
      r.host_id,
      { instances: Number(r.instances), vcpus: Number(r.vcpus), memory_mib: Number(r.memory_mib) },
    ]),
  );
}

/** What a host may hold, after overcommit. */
export function capacityOf(
  facts: HostFacts | null,
  cpuOvercommit: number,
  memoryOvercommit: number,
): { vcpus: number; memory_mib: number } {
  if (!facts) return { vcpus: 0, memory_mib: 0 };
  return { vcpus: Math.floor(facts.cpus * cpuOvercommit), memory_mib: Math.floor(facts.memory_mib * memoryOvercommit) };
}

/** Join tokens are recognizable, like API tokens, but cannot be used as one. */
const JOIN_PREFIX = 'floejoin_';

/** Hosts: registration (join), the agent link's view of them, drain and removal. */
export class HostService {
  constructor(private readonly ctx: ServiceContext) {}

  /** Row → API shape, with allocation and capacity. */
  toHost(row: HostsTable, alloc: Allocation = EMPTY): Host {
    const facts = fromJson<HostFacts>(row.facts);
    return {
      ...baseFields(row),
      spec: fromJson(row.spec),
      status: {
        state: row.state as HostState,
        facts,
        connected_at: row.connected_at,
        last_heartbeat_at: row.last_heartbeat_at,
        allocated: alloc,
        capacity: capacityOf(facts, this.ctx.config.cpuOvercommit, this.ctx.config.memoryOvercommit),
      },
    };
  }

  /** Hosts (admin). */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[] },
  ): Promise<PageOf<Host>> {
    requireAdmin(principal, 'list hosts');
    const page = await listPage<HostsTable, HostsTable>(
      this.ctx.store.db,
      'hosts',
      { limit: q.limit, cursor: q.cursor, labels: parseLabelSelectors(q.label) },
      (r) => r,
    );
    const alloc = await allocations(
      this.ctx.store.db,
      page.items.map((h) => h.id),
    );
    return { items: page.items.map((r) => this.toHost(r, alloc.get(r.id))), next_cursor: page.next_cursor };
  }

  /** One host by id or name (admin). */
  async get(principal: Principal, ref: string, db: Db = this.ctx.store.db): Promise<Host> {
    requireAdmin(principal, 'see hosts');
    const row = await findRow<HostsTable>(db, 'hosts', 'host', ref, { code: 'host_not_found', label: 'host' });
    return this.toHost(row, (await allocations(db, [row.id])).get(row.id));
  }

  /** Drain/undrain, labels, metadata. */
  async update(principal: Principal, ref: string, patch: HostPatch, ifMatch?: number): Promise<Host> {
    const host = await transaction(this.ctx.store, async (trx) => {
      const before = await this.get(principal, ref, trx);
      checkRevision(ifMatch, before.revision);
      const after: Host = {
        ...before,
        ...patchedBase(before, patch),
        spec: {
          ...before.spec,
          ...(patch.spec?.schedulable !== undefined ? { schedulable: patch.spec.schedulable } : {}),
        },
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await trx
        .updateTable('hosts')
        .set({
          labels: toJson(after.labels),
          metadata: toJson(after.metadata),
          spec: toJson(after.spec),
          revision: after.revision,
          updated_at: after.updated_at,
        })
        .where('id', '=', before.id)
        .execute();
      await writeLabels(trx, before.id, after.labels);
      await recordHistory(trx, {
        kind: 'host',
        resource_id: before.id,
        project: null,
        revision: after.revision,
        action: 'update',
        actor: principal.actor,
        before: { spec: before.spec, labels: before.labels },
        after: { spec: after.spec, labels: after.labels },
      });
      return after;
    });
    await this.ctx.bus.publish({
      type: 'resource.updated',
      project: null,
      kind: 'host',
      resource_id: host.id,
      data: { revision: host.revision, schedulable: host.spec.schedulable },
    });
    return host;
  }

  /** Remove a host that runs nothing; its certificate is no longer accepted. */
  async delete(principal: Principal, ref: string): Promise<Host> {
    const host = await transaction(this.ctx.store, async (trx) => {
      const h = await this.get(principal, ref, trx);
      if (h.status.allocated.instances > 0) {
        throw new FloeError(
          'in_use',
          `host "${h.name}" still has ${h.status.allocated.instances} instance(s); move or delete them first`,
          { kind: 'host', id: h.id },
        );
      }
      await trx.deleteFrom('hosts').where('id', '=', h.id).execute();
      await trx.deleteFrom('resource_labels').where('resource_id', '=', h.id).execute();
      await recordHistory(trx, {
        kind: 'host',
        resource_id: h.id,
        project: null,
        revision: h.revision + 1,
        action: 'delete',
        actor: principal.actor,
        before: { name: h.name },
        after: null,
      });
      return h;
    });
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: null,
      kind: 'host',
      resource_id: host.id,
      data: { name: host.name },
    });
    return host;
  }

  /** A one-time join token for a new host (admin). */
  async createJoinToken(principal: Principal, minutes = 60): Promise<JoinTokenCreated> {
    requireAdmin(principal, 'create host join tokens');
    const token = newSecret(JOIN_PREFIX);
    const id = newId('join_token');
    const expires_at = new Date(Date.now() + minutes * 60_000).toISOString();
    await this.ctx.store.db
      .insertInto('join_tokens')
      .values({
        id,
        secret_hash: hashSecret(token),
        created_by: principal.actor,
        created_at: nowIso(),
        expires_at,
        used_at: null,
        host_id: null,
      })
      .execute();
    return { id, token, expires_at };
  }

  /**
   * Spend a join token and register a host named `name`. `issue` signs the
   * agent's CSR for the new host id; if it throws, nothing is kept.
   */
  async join(
    token: string,
    name: string,
    issue: (hostId: string) => Promise<{ certPem: string; serial: string }>,
  ): Promise<{ host: Host; certPem: string }> {
    const hash = hashSecret(token);
    try {
      const result = await transaction(this.ctx.store, async (trx) => {
        const jt = await trx.selectFrom('join_tokens').selectAll().where('secret_hash', '=', hash).executeTakeFirst();
        if (!jt || jt.used_at !== null || jt.expires_at <= nowIso())
          throw new FloeError(
            'join_token_invalid',
            'the join token is unknown, already used or expired; create a new one with `floe host join-token`',
          );
        const row = this.newHostRow(name);
        const cert = await issue(row.id);
        row.cert_serial = cert.serial;
        const used = await trx
          .updateTable('join_tokens')
          .set({ used_at: nowIso(), host_id: row.id })
          .where('id', '=', jt.id)
          .where('used_at', 'is', null)
          .executeTakeFirst();
        if (Number(used.numUpdatedRows) !== 1)
          throw new FloeError('join_token_invalid', 'the join token was used concurrently');
        await trx.insertInto('hosts').values(row).execute();
        await recordHistory(trx, {
          kind: 'host',
          resource_id: row.id,
          project: null,
          revision: 1,
          action: 'join',
          actor: `join:${jt.id}`,
          before: null,
          after: { name },
        });
        return { host: this.toHost(row), certPem: cert.certPem };
      });
      await this.ctx.bus.publish({
        type: 'resource.created',
        project: null,
        kind: 'host',
        resource_id: result.host.id,
        data: { name },
      });
      return result;
    } catch (err) {
      if (isUniqueViolation(err))
        throw new FloeError('name_conflict', `a host named "${name}" already exists`, {
          field: 'name',
          kind: 'host',
          name,
        });
      throw err;
    }
  }

  /** Register a host directly (the local host of `floe up`), or return the existing one of that name. */
  async ensureLocal(
    name: string,
    issue: (hostId: string) => Promise<{ serial: string }>,
  ): Promise<{ id: string; created: boolean }> {
    const existing = await this.ctx.store.db
      .selectFrom('hosts')
      .select('id')
      .where('name', '=', name)
      .executeTakeFirst();
    if (existing) return { id: existing.id, created: false };
    const row = this.newHostRow(name);
    row.cert_serial = (await issue(row.id)).serial;
    await this.ctx.store.db.insertInto('hosts').values(row).execute();
    await this.ctx.bus.publish({
      type: 'resource.created',
      project: null,
      kind: 'host',
      resource_id: row.id,
      data: { name },
    });
    return { id: row.id, created: true };
  }

  private newHostRow(name: string): HostsTable {
    return {
      ...newBase('host', name, {}, {}),
      spec: toJson({ schedulable: true }),
      state: 'pending',
      facts: null,
      connected_at: null,
      last_heartbeat_at: null,
      cert_serial: null,
      connected_to: null,
    };
  }

  /** Record a newly issued agent certificate; older ones stop being accepted. */
  async setCertSerial(hostId: string, serial: string): Promise<void> {
    await this.ctx.store.db
      .updateTable('hosts')
      .set({ cert_serial: serial, updated_at: nowIso() })
      .where('id', '=', hostId)
      .execute();
  }

  /** The row for an agent's certificate, or null when the host is gone. */
  async forAgent(hostId: string): Promise<HostsTable | null> {
    return (
      (await this.ctx.store.db.selectFrom('hosts').selectAll().where('id', '=', hostId).executeTakeFirst()) ?? null
    );
  }

  /** The agent said hello: record its facts and mark the host online. */
  async markOnline(hostId: string, facts: HostFacts, connection: string): Promise<void> {
    const now = nowIso();
    await this.ctx.store.db
      .updateTable('hosts')
      .set({
        state: 'online',
        facts: toJson(facts),
        connected_at: now,
        last_heartbeat_at: now,
        connected_to: connection,
        updated_at: now,
      })
      .where('id', '=', hostId)
      .execute();
    await this.ctx.bus.publish({
      type: 'host.online',
      project: null,
      kind: 'host',
      resource_id: hostId,
      data: { hostname: facts.hostname, accelerator: facts.accelerator, vm_driver: facts.vm_driver },
    });
  }

  /** A heartbeat arrived. */
  async heartbeat(hostId: string): Promise<void> {
    await this.ctx.store.db
      .updateTable('hosts')
      .set({ last_heartbeat_at: nowIso() })
      .where('id', '=', hostId)
      .execute();
  }

  /** Mark a host offline (link closed or heartbeats missed); only this connection's own state is touched. */
  async markOffline(hostId: string, reason: string, connection?: string): Promise<boolean> {
    let q = this.ctx.store.db
      .updateTable('hosts')
      .set({ state: 'offline', connected_to: null, updated_at: nowIso() })
      .where('id', '=', hostId)
      .where('state', '=', 'online');
    if (connection !== undefined) q = q.where('connected_to', '=', connection);
    const res = await q.executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) return false;
    await this.ctx.bus.publish({
      type: 'host.offline',
      project: null,
      kind: 'host',
      resource_id: hostId,
      data: { reason },
    });
    return true;
  }

  /** Online hosts whose last heartbeat is older than `before`. */
  async stale(before: string): Promise<string[]> {
    const rows = await this.ctx.store.db
      .selectFrom('hosts')
      .select('id')
      .where('state', '=', 'online')
      .where('last_heartbeat_at', '<', before)
      .execute();
    return rows.map((r) => r.id);
  }
}

/** The underlay IPv4 address each of these hosts reported (null when it has none). */
export async function underlayAddresses(db: Db, hostIds: readonly string[]): Promise<Map<string, string | null>> {
  if (hostIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('hosts')
    .select(['id', 'facts'])
    .where('id', 'in', [...hostIds])
    .execute();
  return new Map(rows.map((h) => [h.id, fromJson<HostFacts>(h.facts)?.underlay_ipv4 ?? null]));
}
