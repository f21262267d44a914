import {
  FloeError,
  MAX_NICS,
  mergeFirstBoot,
  NO_FIRST_BOOT,
  USER_DATA_MAX_BYTES,
  type DesiredInstance,
  type HistoryEntry,
  type Instance,
  type InstanceCreate,
  type InstancePatch,
  type InstanceSpec,
  type InstanceStatus,
  type ObservedInstance,
  type Operation,
  type PageOf,
  type DesiredImage,
  type DesiredNic,
  type Nic,
  type NicRequest,
} from '@floe/api';
import { fromJson, isUniqueViolation, nowIso, toJson, transaction } from '../db/index.js';
import type { InstancesTable, OperationsTable } from '../db/schema.js';
import {
  baseFields,
  canUseProject,
  checkMetadata,
  checkRevision,
  decodeCursor,
  encodeCursor,
  findRow,
  listPage,
  mergePatch,
  newBase,
  parseLabelSelectors,
  recordHistory,
  visibleProjects,
  writeLabels,
  type Db,
} from './common.js';
import { isIdOf } from '../ids.js';
import type { Principal, ServiceContext } from './context.js';
import type { NewEvent } from './events.js';
import { checkImageDisk } from './image-disk.js';
import type { ImageService, MachineTypeService } from './catalog.js';
import type { NetworkService } from './networks.js';
import type { OperationService } from './operations.js';
import type { ProjectService } from './projects.js';
import { normalizeSpec, normalizeStatus } from './first-boot.js';
import { placeInstance } from './scheduler.js';
import { deepFreeze, ReadCache } from './read-cache.js';

/**
 * How long a cached instance is served at most. Invalidations keep the cache exact; this only bounds
 * the damage of one that never arrived (a write to the database from outside floe, a lost notification).
 */
export const READ_CACHE_MAX_AGE_MS = 5_000;

/** Row → API shape. */
export function instanceFromRow(row: InstancesTable): Instance {
  return {
    ...baseFields(row),
    project: row.project,
    spec: normalizeSpec(fromJson<InstanceSpec>(row.spec)),
    status: normalizeStatus(fromJson<InstanceStatus>(row.status)),
  };
}

/** Row (and its image) → what the agent must make true. */
export function desiredFromRow(
  row: InstancesTable,
  image: DesiredImage | null = null,
  nics: DesiredNic[] = [],
  defaultVendorData: string | null = null,
): DesiredInstance {
  const spec = normalizeSpec(fromJson<InstanceSpec>(row.spec));
  return {
    id: row.id,
    name: row.name,
    project: row.project,
    revision: Number(row.revision),
    spec,
    image,
    deleting: row.deleting === 1,
    generation: Number(row.generation),
    restart_generation: Number(row.restart_generation),
    force_stop: row.force_stop === 1,
    nics,
    vendor_data: spec.vendor_data ?? defaultVendorData,
  };
}

/** Progress shown for each observed state while an operation runs. */
const PROGRESS: Record<string, number> = {
  pending: 5,
  scheduled: 10,
  creating: 30,
  starting: 60,
  stopping: 60,
  deleting: 50,
};

/** The answer of create: the instance and the operation that brings it up. */
export interface CreatedInstance {
  instance: Instance;
  operation: Operation;
}

/** Instances: the VM resource, its lifecycle operations and the agent's reports. */
export class InstanceService {
  /**
   * Instances by id, for `get` (single-instance GETs). Every transaction that writes the instances
   * table calls `forget` inside it and `forgotten` after commit; other control planes hear of the write
   * on 'floe_invalidate' when it commits, so their GETs are stale for at most the LISTEN/NOTIFY latency.
   */
  private readonly cache: ReadCache<Instance>;
  /** "project\nname" → id of instances `get` has read, so name lookups can use the cache too. */
  private readonly idsByName = new Map<string, string>();
  private readonly unsubscribe: Array<() => void>;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    private readonly images: ImageService,
    private readonly types: MachineTypeService,
    private readonly operations: OperationService,
    private readonly networks: NetworkService,
  ) {
    operations.onCancel('instance.', (trx, op, undo) => this.undo(trx, op, undo as Undo | null));
    this.cache = new ReadCache<Instance>({ maxEntries: ctx.config.readCacheEntries, maxAgeMs: READ_CACHE_MAX_AGE_MS });
    this.cache.setAvailable(ctx.cluster.listening);
    this.unsubscribe = [
      ctx.cluster.subscribe('floe_invalidate', (p) => {
        if (p.kind === 'instance' && Array.isArray(p.ids))
          this.cache.invalidate(p.ids.filter((id): id is string => typeof id === 'string'));
      }),
      // Invalidations from other control planes are lost while this one is not listening.
      ctx.cluster.onListening((listening) => this.cache.setAvailable(listening)),
      // Writes made inside another service's transaction (undo on cancel) publish an instance event after commit.
      ctx.bus.subscribe((e) => {
        if (e.kind === 'instance') this.cache.invalidate(e.resource_id);
      }),
    ];
  }

  /** True while `get` uses the read cache: configured on and, on PostgreSQL, hearing the other control planes. */
  get cacheEnabled(): boolean {
    return this.cache.enabled;
  }

  /** Stop hearing invalidations. */
  close(): void {
    for (const fn of this.unsubscribe) fn();
    this.cache.clear();
  }

  /** Instances of the visible projects. */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[]; project?: string },
  ): Promise<PageOf<Instance>> {
    return listPage<InstancesTable, Instance>(
      this.ctx.store.db,
      'instances',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels: parseLabelSelectors(q.label),
        projects: visibleProjects(principal, q.project),
      },
      instanceFromRow,
    );
  }

  /**
   * One instance by id, or by name inside `project`. Outside a transaction it may come from the read
   * cache; the answer is then shared and frozen.
   */
  async get(principal: Principal, ref: string, project: string, db: Db = this.ctx.store.db): Promise<Instance> {
    if (db !== this.ctx.store.db || !this.cache.enabled)
      return instanceFromRow(await this.row(principal, ref, project, db));
    const byId = isIdOf('instance', ref);
    const id = byId ? ref : this.idsByName.get(`${project}\n${ref}`);
    const hit = id === undefined ? undefined : this.cache.get(id);
    // A cached row still has the name it was found by: names never change, and (project, name) is unique.
    if (hit !== undefined && (byId || (hit.name === ref && hit.project === project))) {
      // The same not-found as findRow's, so a cached row does not leak its existence to other projects.
      if (!canUseProject(principal, hit.project))
        throw new FloeError('instance_not_found', `instance "${ref}" not found`, { kind: 'instance', id: ref });
      return hit;
    }
    const ticket = this.cache.ticket();
    const instance = deepFreeze(instanceFromRow(await this.row(principal, ref, project, db)));
    if (this.cache.set(instance.id, instance, ticket)) {
      if (this.idsByName.size >= this.ctx.config.readCacheEntries) this.idsByName.clear();
      this.idsByName.set(`${instance.project}\n${instance.name}`, instance.id);
    }
    return instance;
  }

  /**
   * Inside a transaction that writes instance `id` (or anything `get` returns for it), before it commits:
   * drop it from this read cache and from the other control planes' (their notification is sent when,
   * and only if, `trx` commits). Call `forgotten(id)` once the transaction committed.
   */
  async forget(trx: Db, id: string): Promise<void> {
    this.cache.invalidate(id);
    await this.ctx.cluster.publish('floe_invalidate', { kind: 'instance', ids: [id] }, trx);
  }

  /** After the commit of a transaction that called `forget`: drop what reads during the transaction cached. */
  forgotten(id: string | null | undefined): void {
    if (id) this.cache.invalidate(id);
  }

  private row(principal: Principal, ref: string, project: string, db: Db): Promise<InstancesTable> {
    return findRow<InstancesTable>(db, 'instances', 'instance', ref, {
      project,
      principal,
      code: 'instance_not_found',
      label: 'instance',
    });
  }

  /**
   * Validate, size, place and record a new instance, with the operation that
   * tracks it to running. All or nothing: a failure leaves no trace.
   */
  async create(principal: Principal, body: InstanceCreate): Promise<CreatedInstance> {
    const project = body.project ?? 'default';
    for (const field of ['user_data', 'vendor_data'] as const) {
      const doc = body[field];
      if (doc !== undefined && Buffer.byteLength(doc, 'utf8') > USER_DATA_MAX_BYTES) {
        throw new FloeError('validation_failed', `${field} is larger than ${USER_DATA_MAX_BYTES} bytes`, {
          field,
          limit: USER_DATA_MAX_BYTES,
        });
      }
    }
    if (body.machine_type === undefined && (body.vcpus === undefined || body.memory_mib === undefined)) {
      throw new FloeError('validation_failed', 'give machine_type, or both vcpus and memory_mib', {
        field: 'machine_type',
      });
    }
    const metadata = checkMetadata(body.metadata);
    const result = await (async () => {
      try {
        return await transaction(this.ctx.store, async (trx) => {
          await this.projects.require(principal, project, trx);
          const image = await this.images.get(principal, body.image, project, trx);
          const type = body.machine_type === undefined ? null : await this.types.get(body.machine_type, trx);
          const minDisk = checkImageDisk(image, body.disk_gib);
          const spec: InstanceSpec = {
            image: image.id,
            machine_type: type?.name ?? null,
            vcpus: body.vcpus ?? type!.spec.vcpus,
            memory_mib: body.memory_mib ?? type!.spec.memory_mib,
            // Without disk_gib, a machine type's disk smaller than the image grows to the image's minimum.
            disk_gib: Math.max(body.disk_gib ?? type?.spec.disk_gib ?? minDisk, minDisk),
            user_data: body.user_data ?? null,
            vendor_data: body.vendor_data ?? null,
            config_drive: body.config_drive ?? true,
            ssh_keys: body.ssh_keys ?? [],
            power_state: body.start === false ? 'stopped' : 'running',
            restart_policy: body.restart_policy ?? 'never',
          };
          const hostId = await placeInstance(trx, this.ctx.store.dialect, this.ctx.config, {
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
          });
          const status: InstanceStatus = {
            state: 'scheduled',
            host: hostId,
            reason: null,
            accelerator: null,
            observed_revision: 0,
            started_at: null,
            stopped_at: null,
            first_boot: NO_FIRST_BOOT,
          };
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
          // A new id is in no cache (misses are not cached), so no other control plane needs telling.
          this.cache.invalidate(row.id);
          await trx.insertInto('instances').values(row).execute();
          const nics = await this.networks.attach(trx, principal, row, body.networks ?? []);
          await writeLabels(trx, row.id, body.labels ?? {}, true);
          const instance = instanceFromRow(row);
          await recordHistory(trx, {
            kind: 'instance',
            resource_id: row.id,
            project,
            revision: 1,
            action: 'create',
            actor: principal.actor,
            before: null,
            after: instance,
          });
          const { operation, events } = await this.operations.create(trx, {
            project,
            kind: 'instance.create',
            resources: [{ kind: 'instance', id: row.id, name: row.name }],
            created_by: principal.actor,
            message: 'scheduled',
            target_id: row.id,
            target_generation: 1,
            target_state: spec.power_state,
            undo: { action: 'create' },
            new_target: true,
          });
          return { instance, operation, events, networkIds: nics.map((n) => n.network_id) };
        });
      } catch (err) {
        if (isUniqueViolation(err))
          throw new FloeError('name_conflict', `instance "${body.name}" already exists in project "${project}"`, {
            field: 'name',
            kind: 'instance',
            name: body.name,
          });
        throw err;
      }
    })();
    await this.ctx.bus.publish(
      {
        type: 'resource.created',
        project,
        kind: 'instance',
        resource_id: result.instance.id,
        data: { name: result.instance.name, host: result.instance.status.host },
      },
      ...result.events,
    );
    this.ctx.signals.send('desired', 'instance', result.instance.status.host!, result.instance.id);
    this.networks.announce(await this.networks.hostsOf(result.networkIds));
    return { instance: result.instance, operation: result.operation };
  }

  /** Merge-patch labels, metadata and the restart policy. */
  async update(
    principal: Principal,
    ref: string,
    project: string,
    patch: InstancePatch,
    ifMatch?: number,
  ): Promise<Instance> {
    const { after, hostId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      const before = instanceFromRow(row);
      checkRevision(ifMatch, before.revision);
      const after: Instance = {
        ...before,
        labels:
          patch.labels === undefined
            ? before.labels
            : (mergePatch(before.labels, patch.labels) as Record<string, string>),
        metadata:
          patch.metadata === undefined
            ? before.metadata
            : checkMetadata(mergePatch(before.metadata, patch.metadata) as Record<string, unknown>),
        spec: {
          ...before.spec,
          ...(patch.spec?.restart_policy !== undefined ? { restart_policy: patch.spec.restart_policy } : {}),
        },
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await this.forget(trx, row.id);
      await trx
        .updateTable('instances')
        .set({
          labels: toJson(after.labels),
          metadata: toJson(after.metadata),
          spec: toJson(after.spec),
          revision: after.revision,
          updated_at: after.updated_at,
        })
        .where('id', '=', row.id)
        .execute();
      await writeLabels(trx, row.id, after.labels);
      await recordHistory(trx, {
        kind: 'instance',
        resource_id: row.id,
        project: row.project,
        revision: after.revision,
        action: 'update',
        actor: principal.actor,
        before,
        after,
      });
      return { after, hostId: row.host_id };
    });
    this.forgotten(after.id);
    await this.ctx.bus.publish({
      type: 'resource.updated',
      project: after.project,
      kind: 'instance',
      resource_id: after.id,
      data: { revision: after.revision },
    });
    if (hostId) this.ctx.signals.send('desired', 'instance', hostId, after.id);
    return after;
  }

  /** Ask for a power change: start, stop or restart. */
  async power(
    principal: Principal,
    ref: string,
    project: string,
    action: 'start' | 'stop' | 'restart',
    force = false,
  ): Promise<Operation> {
    const { operation, events, hostId, instanceId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      if (row.deleting === 1)
        throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
      const before = instanceFromRow(row);
      const power_state = action === 'stop' ? 'stopped' : 'running';
      const spec: InstanceSpec = { ...before.spec, power_state };
      const generation = Number(row.generation) + 1;
      const revision = Number(row.revision) + 1;
      const updated_at = nowIso();
      await this.forget(trx, row.id);
      await trx
        .updateTable('instances')
        .set({
          spec: toJson(spec),
          generation,
          revision,
          updated_at,
          restart_generation: action === 'restart' ? Number(row.restart_generation) + 1 : row.restart_generation,
          force_stop: action === 'stop' && force ? 1 : 0,
        })
        .where('id', '=', row.id)
        .execute();
      await recordHistory(trx, {
        kind: 'instance',
        resource_id: row.id,
        project: row.project,
        revision,
        action,
        actor: principal.actor,
        before,
        after: { ...before, spec, revision, updated_at },
      });
      const created = await this.operations.create(trx, {
        project: row.project,
        kind: `instance.${action}`,
        resources: [{ kind: 'instance', id: row.id, name: row.name }],
        created_by: principal.actor,
        message: `${action} requested`,
        target_id: row.id,
        target_generation: generation,
        target_state: power_state,
        undo: {
          action,
          power_state: before.spec.power_state,
          force_stop: row.force_stop,
          restart_generation: row.restart_generation,
        },
      });
      return { ...created, hostId: row.host_id, instanceId: row.id };
    });
    this.forgotten(instanceId);
    await this.ctx.bus.publish(...events);
    if (hostId) this.ctx.signals.send('desired', 'instance', hostId, instanceId);
    return operation;
  }

  /** Delete: the agent tears the VM down, then the record goes. */
  async delete(principal: Principal, ref: string, project: string, ifMatch?: number): Promise<Operation> {
    const { operation, events, hostId, instanceId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      checkRevision(ifMatch, Number(row.revision));
      const generation = Number(row.generation) + 1;
      await this.forget(trx, row.id);
      await trx
        .updateTable('instances')
        .set({ deleting: 1, generation, revision: Number(row.revision) + 1, updated_at: nowIso() })
        .where('id', '=', row.id)
        .execute();
      const created = await this.operations.create(trx, {
        project: row.project,
        kind: 'instance.delete',
        resources: [{ kind: 'instance', id: row.id, name: row.name }],
        created_by: principal.actor,
        message: 'delete requested',
        target_id: row.id,
        target_generation: generation,
        target_state: 'deleted',
        undo: { action: 'delete' },
      });
      await recordHistory(trx, {
        kind: 'instance',
        resource_id: row.id,
        project: row.project,
        revision: Number(row.revision) + 1,
        action: 'delete',
        actor: principal.actor,
        before: instanceFromRow(row),
        after: null,
      });
      return { ...created, hostId: row.host_id, instanceId: row.id };
    });
    this.forgotten(instanceId);
    await this.ctx.bus.publish(...events);
    if (hostId) this.ctx.signals.send('desired', 'instance', hostId, instanceId);
    return operation;
  }

  /** The NICs of an instance, in slot order. */
  async nics(principal: Principal, ref: string, project: string): Promise<Nic[]> {
    const row = await this.row(principal, ref, project, this.ctx.store.db);
    return this.networks.nicsOf(this.ctx.store.db, row.id);
  }

  /**
   * Hot-add a NIC: record it with its MAC and addresses and bump the
   * generation, so the agent plugs it into the VM (or into its next start).
   */
  async addNic(
    principal: Principal,
    ref: string,
    project: string,
    req: NicRequest,
  ): Promise<{ nic: Nic; operation: Operation }> {
    const { operation, events, hostId, instanceId, nic } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.lockedRow(principal, ref, project, trx);
      if (row.deleting === 1)
        throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
      const existing = await trx.selectFrom('nics').select('idx').where('instance_id', '=', row.id).execute();
      if (existing.length >= MAX_NICS)
        throw new FloeError('too_many_nics', `an instance has at most ${MAX_NICS} NICs`, {
          field: 'network',
          limit: MAX_NICS,
        });
      // The lowest free slot, so a removed NIC's slot is reused.
      const used = new Set(existing.map((n) => Number(n.idx)));
      let index = 0;
      while (used.has(index)) index++;
      const [created] = await this.networks.attach(trx, principal, row, [req], index);
      const nic = (await this.networks.nicsOf(trx, row.id)).find((n) => n.id === created!.id)!;
      const ops = await this.bumpForNic(
        trx,
        principal,
        row,
        'nic-add',
        `NIC ${nic.id} on ${nic.network_name} requested`,
        nic.id,
      );
      return { ...ops, hostId: row.host_id, instanceId: row.id, nic };
    });
    this.forgotten(instanceId);
    await this.ctx.bus.publish(...events);
    if (hostId) this.ctx.signals.send('desired', 'instance', hostId, instanceId);
    this.networks.announce(await this.networks.hostsOf([nic.network]));
    return { nic, operation };
  }

  /** Hot-remove a NIC: its addresses are given back at once and the agent unplugs it. */
  async removeNic(principal: Principal, ref: string, project: string, nicId: string): Promise<Operation> {
    const { operation, events, hostId, instanceId, networkId } = await transaction(this.ctx.store, async (trx) => {
      const row = await this.lockedRow(principal, ref, project, trx);
      if (row.deleting === 1)
        throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
      const nic = await trx
        .selectFrom('nics')
        .selectAll()
        .where('instance_id', '=', row.id)
        .where('id', '=', nicId)
        .executeTakeFirst();
      if (!nic)
        throw new FloeError('nic_not_found', `instance "${row.name}" has no NIC "${nicId}"`, {
          kind: 'nic',
          id: nicId,
        });
      await this.networks.detach(trx, [nic.id]);
      const ops = await this.bumpForNic(
        trx,
        principal,
        row,
        'nic-remove',
        `removal of NIC ${nic.id} requested`,
        nic.id,
      );
      return { ...ops, hostId: row.host_id, instanceId: row.id, networkId: nic.network_id };
    });
    this.forgotten(instanceId);
    await this.ctx.bus.publish(...events);
    if (hostId) this.ctx.signals.send('desired', 'instance', hostId, instanceId);
    this.networks.announce([...(hostId ? [hostId] : []), ...(await this.networks.hostsOf([networkId]))]);
    return operation;
  }

  // The instance row, locked until the transaction ends: concurrent NIC changes must not pick the same slot or generation.
  private async lockedRow(principal: Principal, ref: string, project: string, trx: Db): Promise<InstancesTable> {
    const found = await this.row(principal, ref, project, trx);
    return trx.selectFrom('instances').selectAll().where('id', '=', found.id).forUpdate().executeTakeFirstOrThrow();
  }

  // A NIC change is an operation like start/stop: a new generation, done once the agent observed it in the wanted power state.
  private async bumpForNic(
    trx: Db,
    principal: Principal,
    row: InstancesTable,
    action: 'nic-add' | 'nic-remove',
    message: string,
    nicId: string,
  ) {
    const before = instanceFromRow(row);
    const generation = Number(row.generation) + 1;
    const revision = Number(row.revision) + 1;
    const updated_at = nowIso();
    await this.forget(trx, row.id);
    await trx.updateTable('instances').set({ generation, revision, updated_at }).where('id', '=', row.id).execute();
    await recordHistory(trx, {
      kind: 'instance',
      resource_id: row.id,
      project: row.project,
      revision,
      action,
      actor: principal.actor,
      before,
      after: { ...before, revision, updated_at },
    });
    return this.operations.create(trx, {
      project: row.project,
      kind: `instance.${action}`,
      resources: [
        { kind: 'instance', id: row.id, name: row.name },
        { kind: 'nic', id: nicId },
      ],
      created_by: principal.actor,
      message,
      target_id: row.id,
      target_generation: generation,
      target_state: before.spec.power_state,
    });
  }

  /** Undo a cancelled pending operation (it never reached a host). */
  private async undo(trx: Db, op: OperationsTable, undo: Undo | null): Promise<NewEvent[]> {
    const row = await trx.selectFrom('instances').selectAll().where('id', '=', op.target_id!).executeTakeFirst();
    // NIC changes have nothing to undo here: they are recorded at once, like a delete of the NIC.
    if (!row || !undo || !['create', 'start', 'stop', 'restart', 'delete'].includes(undo.action)) return [];
    // The cancel commits in OperationService; the instance event returned here, published after that
    // commit, does this service's after-commit invalidation (see the constructor).
    await this.forget(trx, row.id);
    if (undo.action === 'create') {
      await this.networks.detach(
        trx,
        (await trx.selectFrom('nics').select('id').where('instance_id', '=', row.id).execute()).map((n) => n.id),
      );
      await trx.deleteFrom('instances').where('id', '=', row.id).execute();
      await trx.deleteFrom('resource_labels').where('resource_id', '=', row.id).execute();
      await recordHistory(trx, {
        kind: 'instance',
        resource_id: row.id,
        project: row.project,
        revision: Number(row.revision) + 1,
        action: 'delete',
        actor: 'system',
        before: instanceFromRow(row),
        after: null,
      });
      return [
        {
          type: 'resource.deleted',
          project: row.project,
          kind: 'instance',
          resource_id: row.id,
          data: { name: row.name, reason: 'create cancelled' },
        },
      ];
    }
    const revision = Number(row.revision) + 1;
    if (undo.action === 'delete') {
      await trx
        .updateTable('instances')
        .set({ deleting: 0, revision, updated_at: nowIso() })
        .where('id', '=', row.id)
        .execute();
    } else {
      const spec = { ...fromJson<InstanceSpec>(row.spec), power_state: undo.power_state! };
      await trx
        .updateTable('instances')
        .set({
          spec: toJson(spec),
          force_stop: undo.force_stop ?? 0,
          restart_generation: undo.restart_generation ?? row.restart_generation,
          revision,
          updated_at: nowIso(),
        })
        .where('id', '=', row.id)
        .execute();
    }
    await recordHistory(trx, {
      kind: 'instance',
      resource_id: row.id,
      project: row.project,
      revision,
      action: `cancel-${undo.action}`,
      actor: 'system',
      before: null,
      after: null,
    });
    return [
      {
        type: 'resource.updated',
        project: row.project,
        kind: 'instance',
        resource_id: row.id,
        data: { revision, reason: `${undo.action} cancelled` },
      },
    ];
  }

  /** Change history of one instance, oldest first. */
  async history(
    principal: Principal,
    ref: string,
    project: string,
    q: { limit?: number; cursor?: string },
  ): Promise<PageOf<HistoryEntry>> {
    const row = await this.row(principal, ref, project, this.ctx.store.db);
    const limit = Math.min(q.limit ?? 100, 1000);
    let query = this.ctx.store.db
      .selectFrom('history')
      .selectAll()
      .where('resource_id', '=', row.id)
      .orderBy('id', 'asc')
      .limit(limit + 1);
    if (q.cursor) query = query.where('id', '>', decodeCursor(q.cursor));
    const rows = await query.execute();
    const page = rows.slice(0, limit);
    return {
      items: page.map((h) => ({
        ...h,
        revision: Number(h.revision),
        before: fromJson(h.before),
        after: fromJson(h.after),
      })),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.id) : null,
    };
  }

  /** Everything placed on a host, for the snapshot an agent gets on connect. */
  async desiredForHost(hostId: string): Promise<DesiredInstance[]> {
    const rows = await this.ctx.store.db
      .selectFrom('instances')
      .selectAll()
      .where('host_id', '=', hostId)
      .orderBy('id')
      .execute();
    const images = await this.desiredImages(rows.map((r) => r.image_id));
    const nics = await this.networks.desiredNics(rows.map((r) => r.id));
    return rows.map((r) =>
      desiredFromRow(r, images.get(r.image_id) ?? null, nics.get(r.id) ?? [], this.ctx.config.vendorData),
    );
  }

  /** The desired state of one instance, or null when it is gone. */
  async desiredOne(id: string): Promise<DesiredInstance | null> {
    const row = await this.ctx.store.db.selectFrom('instances').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return null;
    const nics = await this.networks.desiredNics([row.id]);
    return desiredFromRow(
      row,
      (await this.desiredImages([row.image_id])).get(row.image_id) ?? null,
      nics.get(row.id) ?? [],
      this.ctx.config.vendorData,
    );
  }

  /** What agents need to know of images to fetch and cache their files. */
  private async desiredImages(ids: string[]): Promise<Map<string, DesiredImage>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Map();
    const rows = await this.ctx.store.db
      .selectFrom('images')
      .select(['id', 'name', 'status'])
      .where('id', 'in', unique)
      .execute();
    return new Map(
      rows.map((r) => {
        const status = fromJson<{ sha256: string | null; size_bytes: number | null }>(r.status);
        return [r.id, { id: r.id, name: r.name, sha256: status.sha256, size_bytes: status.size_bytes }];
      }),
    );
  }

  /** Pending operations for instances on a host become running once the agent has their desired state. */
  async dispatched(hostId: string, instanceIds: string[]): Promise<void> {
    if (instanceIds.length === 0) return;
    const events = await transaction(this.ctx.store, async (trx) => {
      const out: NewEvent[] = [];
      for (const id of instanceIds) {
        out.push(
          ...(await this.operations.advance(trx, id, (op) =>
            op.status === 'pending'
              ? { status: 'running', progress: Math.max(Number(op.progress), 10), message: `sent to host ${hostId}` }
              : null,
          )),
        );
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
    const changedNetworks: string[] = [];
    let wrote = false;
    const events = await transaction(this.ctx.store, async (trx) => {
      wrote = false;
      changedNetworks.length = 0;
      const row = await trx.selectFrom('instances').selectAll().where('id', '=', obs.id).executeTakeFirst();
      if (!row || row.host_id !== hostId) return [];
      const out: NewEvent[] = [];
      const before = normalizeStatus(fromJson<InstanceStatus>(row.status));
      if (obs.state === 'deleted') {
        if (row.deleting !== 1) return []; // a stale report; the instance is wanted
        const nics = await trx
          .selectFrom('nics')
          .select(['id', 'network_id'])
          .where('instance_id', '=', row.id)
          .execute();
        await this.networks.detach(
          trx,
          nics.map((n) => n.id),
        );
        changedNetworks.push(...nics.map((n) => n.network_id));
        await this.forget(trx, row.id);
        wrote = true;
        await trx.deleteFrom('instances').where('id', '=', row.id).execute();
        await trx.deleteFrom('resource_labels').where('resource_id', '=', row.id).execute();
        out.push({
          type: 'instance.state',
          project: row.project,
          kind: 'instance',
          resource_id: row.id,
          data: { name: row.name, state: 'deleted', previous: before.state },
        });
        out.push({
          type: 'resource.deleted',
          project: row.project,
          kind: 'instance',
          resource_id: row.id,
          data: { name: row.name },
        });
      } else {
        const status: InstanceStatus = {
          state: row.deleting === 1 && obs.state !== 'error' ? 'deleting' : obs.state,
          host: hostId,
          reason: obs.reason,
          accelerator: obs.accelerator,
          observed_revision: obs.observed_revision,
          started_at: obs.started_at,
          stopped_at: obs.stopped_at,
          first_boot: mergeFirstBoot(before.first_boot, obs.first_boot),
        };
        if (JSON.stringify(status) !== JSON.stringify(before)) {
          await this.forget(trx, row.id);
          wrote = true;
          await trx
            .updateTable('instances')
            .set({ status: toJson(status), state: status.state })
            .where('id', '=', row.id)
            .execute();
        }
        if (status.state !== before.state || status.reason !== before.reason) {
          out.push({
            type: 'instance.state',
            project: row.project,
            kind: 'instance',
            resource_id: row.id,
            data: { name: row.name, state: status.state, previous: before.state, reason: status.reason },
          });
        }
      }
      out.push(...(await this.operations.advance(trx, row.id, (op) => settle(op, obs))));
      return out;
    });
    if (wrote) this.forgotten(obs.id);
    await this.ctx.bus.publish(...events);
    // The host that ran it drops the network if this was its last member; the others lose a peer and a lease.
    if (changedNetworks.length > 0) this.networks.announce([hostId, ...(await this.networks.hostsOf(changedNetworks))]);
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
    return {
      status: 'failed' as const,
      progress: Number(op.progress),
      message: obs.reason ?? 'failed on the host',
      error: {
        code: 'host_operation_failed',
        message: obs.reason ?? 'the host reported an error',
        details: { state: obs.state },
      },
    };
  }
  const progress = Math.max(Number(op.progress), PROGRESS[obs.state] ?? Number(op.progress));
  return { status: 'running' as const, progress: Math.min(progress, 95), message: obs.state };
}
