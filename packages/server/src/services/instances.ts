import {
  FloeError, USER_DATA_MAX_BYTES, type DesiredInstance, type HistoryEntry, type Instance, type InstanceCreate, type InstancePatch, type InstanceSpec,
  type InstanceStatus, type ObservedInstance, type Operation, type PageOf, type DesiredImage,
} from '@floe/api';
import { fromJson, isUniqueViolation, nowIso, toJson, transaction } from '../db/index.js';
import type { InstancesTable, OperationsTable } from '../db/schema.js';
import {
  baseFields, checkMetadata, checkRevision, decodeCursor, encodeCursor, findRow, listPage, mergePatch, newBase, parseLabelSelectors, recordHistory,
  visibleProjects, writeLabels, type Db,
} from './common.js';
import type { Principal, ServiceContext } from './context.js';
import type { NewEvent } from './events.js';
import type { ImageService, MachineTypeService } from './catalog.js';
import type { OperationService } from './operations.js';
import type { ProjectService } from './projects.js';
import { placeInstance } from './scheduler.js';

/** Row → API shape. */
export function instanceFromRow(row: InstancesTable): Instance {
  return { ...baseFields(row), project: row.project, spec: fromJson<InstanceSpec>(row.spec), status: fromJson<InstanceStatus>(row.status) };
}

/** Row (and its image) → what the agent must make true. */
export function desiredFromRow(row: InstancesTable, image: DesiredImage | null = null): DesiredInstance {
  return {
    id: row.id,
    name: row.name,
    project: row.project,
    revision: Number(row.revision),
    spec: fromJson<InstanceSpec>(row.spec),
    image,
    deleting: row.deleting === 1,
    generation: Number(row.generation),
    restart_generation: Number(row.restart_generation),
    force_stop: row.force_stop === 1,
  };
}

/** Progress shown for each observed state while an operation runs. */
const PROGRESS: Record<string, number> = { pending: 5, scheduled: 10, creating: 30, starting: 60, stopping: 60, deleting: 50 };

/** The answer of create: the instance and the operation that brings it up. */
export interface CreatedInstance {
  instance: Instance;
  operation: Operation;
}

/** Instances: the VM resource, its lifecycle operations and the agent's reports. */
export class InstanceService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    private readonly images: ImageService,
    private readonly types: MachineTypeService,
    private readonly operations: OperationService,
  ) {
    operations.onCancel('instance.', (trx, op, undo) => this.undo(trx, op, undo as Undo | null));
  }

  /** Instances of the visible projects. */
  async list(principal: Principal, q: { limit?: number; cursor?: string; label?: string | string[]; project?: string }): Promise<PageOf<Instance>> {
    return listPage<InstancesTable, Instance>(this.ctx.store.db, 'instances', {
      limit: q.limit, cursor: q.cursor, labels: parseLabelSelectors(q.label), projects: visibleProjects(principal, q.project),
    }, instanceFromRow);
  }

  /** One instance by id, or by name inside `project`. */
  async get(principal: Principal, ref: string, project: string, db: Db = this.ctx.store.db): Promise<Instance> {
    return instanceFromRow(await this.row(principal, ref, project, db));
  }

  private row(principal: Principal, ref: string, project: string, db: Db): Promise<InstancesTable> {
    return findRow<InstancesTable>(db, 'instances', 'instance', ref, { project, principal, code: 'instance_not_found', label: 'instance' });
  }

  /**
   * Validate, size, place and record a new instance, with the operation that
   * tracks it to running. All or nothing: a failure leaves no trace.
   */
  async create(principal: Principal, body: InstanceCreate): Promise<CreatedInstance> {
    const project = body.project ?? 'default';
    if (body.user_data !== undefined && Buffer.byteLength(body.user_data, 'utf8') > USER_DATA_MAX_BYTES) {
      throw new FloeError('validation_failed', `user_data is larger than ${USER_DATA_MAX_BYTES} bytes`, { field: 'user_data', limit: USER_DATA_MAX_BYTES });
    }
    if (body.machine_type === undefined && (body.vcpus === undefined || body.memory_mib === undefined)) {
      throw new FloeError('validation_failed', 'give machine_type, or both vcpus and memory_mib', { field: 'machine_type' });
    }
    const metadata = checkMetadata(body.metadata);
    const result = await (async () => {
      try {
        return await transaction(this.ctx.store, async (trx) => {
          await this.projects.require(principal, project, trx);
          const image = await this.images.get(principal, body.image, project, trx);
          const type = body.machine_type === undefined ? null : await this.types.get(body.machine_type, trx);
          const spec: InstanceSpec = {
            image: image.id,
            machine_type: type?.name ?? null,
            vcpus: body.vcpus ?? type!.spec.vcpus,
            memory_mib: body.memory_mib ?? type!.spec.memory_mib,
            disk_gib: Math.max(body.disk_gib ?? type?.spec.disk_gib ?? image.spec.min_disk_gib, image.spec.min_disk_gib),
            user_data: body.user_data ?? null,
            ssh_keys: body.ssh_keys ?? [],
            power_state: body.start === false ? 'stopped' : 'running',
            restart_policy: body.restart_policy ?? 'never',
          };
          if (body.disk_gib !== undefined && body.disk_gib < image.spec.min_disk_gib) {
            throw new FloeError('validation_failed', `image "${image.name}" needs a disk of at least ${image.spec.min_disk_gib} GiB`, { field: 'disk_gib', minimum: image.spec.min_disk_gib });
          }
          const hostId = await placeInstance(trx, this.ctx.store.dialect, this.ctx.config, { vcpus: spec.vcpus, memory_mib: spec.memory_mib });
          const status: InstanceStatus = { state: 'scheduled', host: hostId, reason: null, accelerator: null, observed_revision: 0, started_at: null, stopped_at: null };
          const row: InstancesTable = {
            ...newBase('instance', body.name, body.labels, metadata),
            project,
            spec: toJson(spec),
            status: toJson(status),
            host_id: hostId,
            image_id: image.id,
            state: 'scheduled',
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            deleting: 0,
            generation: 1,
            restart_generation: 0,
            force_stop: 0,
          };
          await trx.insertInto('instances').values(row).execute();
          await writeLabels(trx, row.id, body.labels ?? {}, true);
          const instance = instanceFromRow(row);
          await recordHistory(trx, { kind: 'instance', resource_id: row.id, project, revision: 1, action: 'create', actor: principal.actor, before: null, after: instance });
          const { operation, events } = await this.operations.create(trx, {
            project, kind: 'instance.create', resources: [{ kind: 'instance', id: row.id, name: row.name }], created_by: principal.actor,
            message: 'scheduled', target_id: row.id, target_generation: 1, target_state: spec.power_state, undo: { action: 'create' }, new_target: true,
          });
          return { instance, operation, events };
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new FloeError('name_conflict', `instance "${body.name}" already exists in project "${project}"`, { field: 'name', kind: 'instance', name: body.name });
        throw err;
      }
    })();
    await this.ctx.bus.publish(
      { type: 'resource.created', project, kind: 'instance', resource_id: result.instance.id, data: { name: result.instance.name, host: result.instance.status.host } },
      ...result.events,
    );
    this.ctx.signals.send('desired', result.instance.id, result.instance.status.host!);
    return { instance: result.instance, operation: result.operation };
  }

  /** Merge-patch labels, metadata and the restart policy. */
  async update(principal: Principal, ref: string, project: string, patch: InstancePatch, ifMatch?: number): Promise<Instance> {
    const { after, hostId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      const before = instanceFromRow(row);
      checkRevision(ifMatch, before.revision);
      const after: Instance = {
        ...before,
        labels: patch.labels === undefined ? before.labels : (mergePatch(before.labels, patch.labels) as Record<string, string>),
        metadata: patch.metadata === undefined ? before.metadata : checkMetadata(mergePatch(before.metadata, patch.metadata) as Record<string, unknown>),
        spec: { ...before.spec, ...(patch.spec?.restart_policy !== undefined ? { restart_policy: patch.spec.restart_policy } : {}) },
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await trx.updateTable('instances').set({ labels: toJson(after.labels), metadata: toJson(after.metadata), spec: toJson(after.spec), revision: after.revision, updated_at: after.updated_at }).where('id', '=', row.id).execute();
      await writeLabels(trx, row.id, after.labels);
      await recordHistory(trx, { kind: 'instance', resource_id: row.id, project: row.project, revision: after.revision, action: 'update', actor: principal.actor, before, after });
      return { after, hostId: row.host_id };
    });
    await this.ctx.bus.publish({ type: 'resource.updated', project: after.project, kind: 'instance', resource_id: after.id, data: { revision: after.revision } });
    if (hostId) this.ctx.signals.send('desired', after.id, hostId);
    return after;
  }

  /** Ask for a power change: start, stop or restart. */
  async power(principal: Principal, ref: string, project: string, action: 'start' | 'stop' | 'restart', force = false): Promise<Operation> {
    const { operation, events, hostId, instanceId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      if (row.deleting === 1) throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
      const before = instanceFromRow(row);
      const power_state = action === 'stop' ? 'stopped' : 'running';
      const spec: InstanceSpec = { ...before.spec, power_state };
      const generation = Number(row.generation) + 1;
      const revision = Number(row.revision) + 1;
      const updated_at = nowIso();
      await trx.updateTable('instances').set({
        spec: toJson(spec), generation, revision, updated_at,
        restart_generation: action === 'restart' ? Number(row.restart_generation) + 1 : row.restart_generation,
        force_stop: action === 'stop' && force ? 1 : 0,
      }).where('id', '=', row.id).execute();
      await recordHistory(trx, { kind: 'instance', resource_id: row.id, project: row.project, revision, action, actor: principal.actor, before, after: { ...before, spec, revision, updated_at } });
      const created = await this.operations.create(trx, {
        project: row.project, kind: `instance.${action}`, resources: [{ kind: 'instance', id: row.id, name: row.name }], created_by: principal.actor,
        message: `${action} requested`, target_id: row.id, target_generation: generation, target_state: power_state,
        undo: { action, power_state: before.spec.power_state, force_stop: row.force_stop, restart_generation: row.restart_generation },
      });
      return { ...created, hostId: row.host_id, instanceId: row.id };
    });
    await this.ctx.bus.publish(...events);
    if (hostId) this.ctx.signals.send('desired', instanceId, hostId);
    return operation;
  }

  /** Delete: the agent tears the VM down, then the record goes. */
  async delete(principal: Principal, ref: string, project: string, ifMatch?: number): Promise<Operation> {
    const { operation, events, hostId, instanceId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      checkRevision(ifMatch, Number(row.revision));
      const generation = Number(row.generation) + 1;
      await trx.updateTable('instances').set({ deleting: 1, generation, revision: Number(row.revision) + 1, updated_at: nowIso() }).where('id', '=', row.id).execute();
      const created = await this.operations.create(trx, {
        project: row.project, kind: 'instance.delete', resources: [{ kind: 'instance', id: row.id, name: row.name }], created_by: principal.actor,
        message: 'delete requested', target_id: row.id, target_generation: generation, target_state: 'deleted', undo: { action: 'delete' },
      });
      await recordHistory(trx, { kind: 'instance', resource_id: row.id, project: row.project, revision: Number(row.revision) + 1, action: 'delete', actor: principal.actor, before: instanceFromRow(row), after: null });
      return { ...created, hostId: row.host_id, instanceId: row.id };
    });
    await this.ctx.bus.publish(...events);
    if (hostId) this.ctx.signals.send('desired', instanceId, hostId);
    return operation;
  }

  /** Undo a cancelled pending operation (it never reached a host). */
  private async undo(trx: Db, op: OperationsTable, undo: Undo | null): Promise<NewEvent[]> {
    const row = await trx.selectFrom('instances').selectAll().where('id', '=', op.target_id!).executeTakeFirst();
    if (!row || !undo) return [];
    if (undo.action === 'create') {
      await trx.deleteFrom('instances').where('id', '=', row.id).execute();
      await trx.deleteFrom('resource_labels').where('resource_id', '=', row.id).execute();
      await recordHistory(trx, { kind: 'instance', resource_id: row.id, project: row.project, revision: Number(row.revision) + 1, action: 'delete', actor: 'system', before: instanceFromRow(row), after: null });
      return [{ type: 'resource.deleted', project: row.project, kind: 'instance', resource_id: row.id, data: { name: row.name, reason: 'create cancelled' } }];
    }
    const revision = Number(row.revision) + 1;
    if (undo.action === 'delete') {
      await trx.updateTable('instances').set({ deleting: 0, revision, updated_at: nowIso() }).where('id', '=', row.id).execute();
    } else {
      const spec = { ...fromJson<InstanceSpec>(row.spec), power_state: undo.power_state! };
      await trx.updateTable('instances').set({ spec: toJson(spec), force_stop: undo.force_stop ?? 0, restart_generation: undo.restart_generation ?? row.restart_generation, revision, updated_at: nowIso() }).where('id', '=', row.id).execute();
    }
    await recordHistory(trx, { kind: 'instance', resource_id: row.id, project: row.project, revision, action: `cancel-${undo.action}`, actor: 'system', before: null, after: null });
    return [{ type: 'resource.updated', project: row.project, kind: 'instance', resource_id: row.id, data: { revision, reason: `${undo.action} cancelled` } }];
  }

  /** Change history of one instance, oldest first. */
  async history(principal: Principal, ref: string, project: string, q: { limit?: number; cursor?: string }): Promise<PageOf<HistoryEntry>> {
    const row = await this.row(principal, ref, project, this.ctx.store.db);
    const limit = Math.min(q.limit ?? 100, 1000);
    let query = this.ctx.store.db.selectFrom('history').selectAll().where('resource_id', '=', row.id).orderBy('id', 'asc').limit(limit + 1);
    if (q.cursor) query = query.where('id', '>', decodeCursor(q.cursor));
    const rows = await query.execute();
    const page = rows.slice(0, limit);
    return {
      items: page.map((h) => ({ ...h, revision: Number(h.revision), before: fromJson(h.before), after: fromJson(h.after) })),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  }

  /** Everything placed on a host, for the snapshot an agent gets on connect. */
  async desiredForHost(hostId: string): Promise<DesiredInstance[]> {
    const rows = await this.ctx.store.db.selectFrom('instances').selectAll().where('host_id', '=', hostId).orderBy('id').execute();
    const images = await this.desiredImages(rows.map((r) => r.image_id));
    return rows.map((r) => desiredFromRow(r, images.get(r.image_id) ?? null));
  }

  /** The desired state of one instance, or null when it is gone. */
  async desiredOne(id: string): Promise<DesiredInstance | null> {
    const row = await this.ctx.store.db.selectFrom('instances').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return null;
    return desiredFromRow(row, (await this.desiredImages([row.image_id])).get(row.image_id) ?? null);
  }

  /** What agents need to know of images to fetch and cache their files. */
  private async desiredImages(ids: string[]): Promise<Map<string, DesiredImage>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Map();
    const rows = await this.ctx.store.db.selectFrom('images').select(['id', 'name', 'status']).where('id', 'in', unique).execute();
    return new Map(rows.map((r) => {
      const status = fromJson<{ sha256: string | null; size_bytes: number | null }>(r.status);
      return [r.id, { id: r.id, name: r.name, sha256: status.sha256, size_bytes: status.size_bytes }];
    }));
  }

  /** Pending operations for instances on a host become running once the agent has their desired state. */
  async dispatched(hostId: string, instanceIds: string[]): Promise<void> {
    if (instanceIds.length === 0) return;
    const events = await transaction(this.ctx.store, async (trx) => {
      const out: NewEvent[] = [];
      for (const id of instanceIds) {
        out.push(...(await this.operations.advance(trx, id, (op) => (op.status === 'pending' ? { status: 'running', progress: Math.max(Number(op.progress), 10), message: `sent to host ${hostId}` } : null))));
      }
      return out;
    });
    await this.ctx.bus.publish(...events);
  }

  /**
   * Apply what an agent observed: status, the end of deletes, and the
   * operations waiting for it. Reports from a host the instance is not on are ignored.
   */
  async applyObserved(hostId: string, obs: ObservedInstance): Promise<void> {
    const events = await transaction(this.ctx.store, async (trx) => {
      const row = await trx.selectFrom('instances').selectAll().where('id', '=', obs.id).executeTakeFirst();
      if (!row || row.host_id !== hostId) return [];
      const out: NewEvent[] = [];
      const before = fromJson<InstanceStatus>(row.status);
      if (obs.state === 'deleted') {
        if (row.deleting !== 1) return []; // a stale report; the instance is wanted
        await trx.deleteFrom('instances').where('id', '=', row.id).execute();
        await trx.deleteFrom('resource_labels').where('resource_id', '=', row.id).execute();
        out.push({ type: 'instance.state', project: row.project, kind: 'instance', resource_id: row.id, data: { name: row.name, state: 'deleted', previous: before.state } });
        out.push({ type: 'resource.deleted', project: row.project, kind: 'instance', resource_id: row.id, data: { name: row.name } });
      } else {
        const status: InstanceStatus = {
          state: row.deleting === 1 && obs.state !== 'error' ? 'deleting' : obs.state,
          host: hostId,
          reason: obs.reason,
          accelerator: obs.accelerator,
          observed_revision: obs.observed_revision,
          started_at: obs.started_at,
          stopped_at: obs.stopped_at,
        };
        if (JSON.stringify(status) !== JSON.stringify(before)) {
          await trx.updateTable('instances').set({ status: toJson(status), state: status.state }).where('id', '=', row.id).execute();
        }
        if (status.state !== before.state || status.reason !== before.reason) {
          out.push({ type: 'instance.state', project: row.project, kind: 'instance', resource_id: row.id, data: { name: row.name, state: status.state, previous: before.state, reason: status.reason } });
        }
      }
      out.push(...(await this.operations.advance(trx, row.id, (op) => settle(op, obs))));
      return out;
    });
    await this.ctx.bus.publish(...events);
  }
}

/** What cancelling restores. */
interface Undo {
  action: 'create' | 'start' | 'stop' | 'restart' | 'delete';
  power_state?: 'running' | 'stopped';
  force_stop?: number;
  restart_generation?: number;
}

/** Where an operation stands given one observation of its target (pure). */
export function settle(op: OperationsTable, obs: ObservedInstance) {
  const reached = obs.observed_generation >= Number(op.target_generation ?? 0);
  if (reached && obs.state === op.target_state) {
    return { status: 'succeeded' as const, progress: 100, message: obs.state };
  }
  if (reached && obs.state === 'error') {
    return { status: 'failed' as const, progress: Number(op.progress), message: obs.reason ?? 'failed on the host', error: { code: 'host_operation_failed', message: obs.reason ?? 'the host reported an error', details: { state: obs.state } } };
  }
  const progress = Math.max(Number(op.progress), PROGRESS[obs.state] ?? Number(op.progress));
  return { status: 'running' as const, progress: Math.min(progress, 95), message: obs.state };
}
