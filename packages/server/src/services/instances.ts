import {
  FloeError,
  type DesiredInstance,
  type HistoryEntry,
  type Instance,
  type InstanceCreate,
  type InstancePatch,
  type InstanceResize,
  type InstanceSpec,
  type ObservedInstance,
  type Operation,
  type PageOf,
  type Nic,
  type NicPatch,
  type NicRequest,
} from '@floe/api';
import { isUniqueViolation, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { InstancesTable } from '../db/schema.js';
import { visibleProjects } from './authz.js';
import type { ImageService, MachineTypeService } from './catalog.js';
import type { ServiceContext } from './context.js';
import { historyPage, recordHistory, updateWithHistory } from './history.js';
import type { CommitHook } from './commit-hook.js';
import { checkImageDisk } from './image-disk.js';
import { nicDeltas, reserve } from './quota.js';
import { bumpForChange, type TrackedChange } from './instance-bump.js';
import { InstanceCache } from './instance-cache.js';
import { DesiredInstances } from './instance-desired.js';
import { InstanceNicChanges } from './instance-nics.js';
import { instanceFromRow, instanceRow, lockedInstanceRow } from './instance-rows.js';
import { checkInstanceCreate, instanceSpecFrom, scheduledStatus } from './instance-spec.js';
import { InstanceResizes } from './instance-resize.js';
import { InstanceReachability, unreachableMessage } from './instance-reachability.js';
import { InstanceStatusIntake } from './instance-status.js';
import { undoInstanceOperation, type InstanceUndo } from './instance-undo.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import type { NetworkService } from './networks.js';
import type { NicService } from './nics.js';
import type { OperationService } from './operations.js';
import { listPage } from './pagination.js';
import { PostCommit } from './post-commit.js';
import type { Principal } from './principal.js';
import type { ProjectService } from './projects.js';
import { checkMetadata, checkRevision, newBase, patchedBase } from './resource-rows.js';
import { placeInstance } from './scheduler.js';
import { setQuantities } from './metering.js';

/** The answer of create: the instance and the operation that brings it up. */
export interface CreatedInstance {
  instance: Instance;
  operation: Operation;
}

/**
 * Instances: the VM resource and its lifecycle operations. The NICs, the agents' view and the agents'
 * reports are modules of their own; this service is their facade for the routes and the agent hub.
 */
export class InstanceService {
  /** Single-instance reads (see InstanceCache). */
  private readonly cache: InstanceCache;
  private readonly nicService: NicService;
  private readonly post: PostCommit;
  private readonly desired: DesiredInstances;
  private readonly intake: InstanceStatusIntake;
  private readonly reachability: InstanceReachability;
  private readonly nicChanges: InstanceNicChanges;
  private readonly resizes: InstanceResizes;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    private readonly images: ImageService,
    private readonly types: MachineTypeService,
    private readonly operations: OperationService,
    networks: NetworkService,
  ) {
    const nics = networks.nics;
    this.nicService = nics;
    this.cache = new InstanceCache(ctx);
    this.post = new PostCommit(ctx, {
      forgotten: (id) => this.cache.forgotten(id),
      hostsOf: (ids) => nics.hostsOf(ids),
    });
    this.desired = new DesiredInstances(ctx, images, nics);
    this.intake = new InstanceStatusIntake(ctx, operations, nics, this.cache, this.post);
    this.reachability = new InstanceReachability(ctx, operations, this.cache, this.post);
    this.nicChanges = new InstanceNicChanges(ctx, operations, nics, this.cache, this.post);
    this.resizes = new InstanceResizes(ctx, types, operations, this.cache, this.post);
    operations.onCancel('instance.', (trx, op, undo) =>
      undoInstanceOperation(trx, op, undo as InstanceUndo | null, { cache: this.cache, nics }),
    );
  }

  /** True while `get` uses the read cache: configured on and, on PostgreSQL, hearing the other control planes. */
  get cacheEnabled(): boolean {
    return this.cache.enabled;
  }

  /** Stop hearing invalidations. */
  close(): void {
    this.cache.close();
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
      return instanceFromRow(await instanceRow(principal, ref, project, db));
    return this.cache.get(principal, ref, project, () => instanceRow(principal, ref, project, db));
  }

  /**
   * Validate, size, place and record a new instance, with the operation that
   * tracks it to running. All or nothing: a failure leaves no trace. `onCommit` records the answer
   * in the same transaction.
   */
  async create(
    principal: Principal,
    body: InstanceCreate,
    onCommit?: CommitHook<CreatedInstance>,
  ): Promise<CreatedInstance> {
    const project = body.project ?? 'default';
    checkInstanceCreate(body);
    const metadata = checkMetadata(body.metadata);
    const result = await (async () => {
      try {
        return await transaction(this.ctx.store, async (trx) => {
          await this.projects.require(principal, project, trx);
          const image = await this.images.get(principal, body.image, project, trx);
          const type = body.machine_type === undefined ? null : await this.types.get(body.machine_type, trx);
          const spec = instanceSpecFrom(body, image, type, checkImageDisk(image, body.disk_gib));
          // Before placement, so a create over quota is refused before it waits on the hosts' rows.
          await reserve(trx, this.ctx.store.dialect, project, {
            instances: 1,
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            disk_gib: spec.disk_gib,
          });
          const hostId = await placeInstance(trx, this.ctx.store.dialect, this.ctx.config, {
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
          });
          const status = scheduledStatus(hostId);
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
            disk_gib: spec.disk_gib,
            deleting: 0,
            generation: 1,
            restart_generation: 0,
            force_stop: 0,
          };
          // A new id is in no cache (misses are not cached), so no other control plane needs telling.
          this.cache.invalidateLocal(row.id);
          await trx.insertInto('instances').values(row).execute();
          await setQuantities(
            trx,
            { project, resource_kind: 'instance', resource_id: row.id },
            { allocated: 1, vcpus: spec.vcpus, memory_mib: spec.memory_mib, disk_gib: spec.disk_gib },
            row.created_at,
          );
          const nics = await this.nicService.attach(trx, principal, row, body.networks ?? []);
          // The addresses the NICs took are known once they are taken: checked after, rolled back on refusal.
          await reserve(trx, this.ctx.store.dialect, project, await nicDeltas(trx, nics), { written: true });
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
          await onCommit?.(trx, { instance, operation });
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
    await this.post.run({
      events: [
        {
          type: 'resource.created',
          project,
          kind: 'instance',
          resource_id: result.instance.id,
          data: { name: result.instance.name, host: result.instance.status.host },
        },
        ...result.events,
      ],
      desired: [{ instanceId: result.instance.id, hostId: result.instance.status.host }],
      networks: result.networkIds,
    });
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
      // Locked: concurrent writers must not both pass If-Match or compute the same next revision.
      const row = await lockedInstanceRow(principal, ref, project, trx);
      const before = instanceFromRow(row);
      checkRevision(ifMatch, before.revision);
      const after: Instance = {
        ...before,
        ...patchedBase(before, patch),
        spec: {
          ...before.spec,
          ...(patch.spec?.restart_policy !== undefined ? { restart_policy: patch.spec.restart_policy } : {}),
        },
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await this.cache.forget(trx, row.id);
      await updateWithHistory(trx, 'instances', {
        kind: 'instance',
        row,
        actor: principal.actor,
        before,
        after,
        set: { spec: toJson(after.spec) },
      });
      return { after, hostId: row.host_id };
    });
    await this.post.run({
      forget: [after.id],
      events: [
        {
          type: 'resource.updated',
          project: after.project,
          kind: 'instance',
          resource_id: after.id,
          data: { revision: after.revision },
        },
      ],
      desired: [{ instanceId: after.id, hostId }],
    });
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
      const row = await lockedInstanceRow(principal, ref, project, trx);
      if (row.deleting === 1)
        throw new FloeError('invalid_state', `instance "${row.name}" is being deleted`, { state: row.state });
      const before = instanceFromRow(row);
      const power_state = action === 'stop' ? 'stopped' : 'running';
      const spec: InstanceSpec = { ...before.spec, power_state };
      const generation = Number(row.generation) + 1;
      const revision = Number(row.revision) + 1;
      const updated_at = nowIso();
      await this.cache.forget(trx, row.id);
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
        message: (await unreachableMessage(trx, before.status)) ?? `${action} requested`,
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
    await this.post.run({ forget: [instanceId], events, desired: [{ instanceId, hostId }] });
    return operation;
  }

  /** Resize a stopped instance (see InstanceResizes). */
  resize(principal: Principal, ref: string, project: string, body: InstanceResize): Promise<Operation> {
    return this.resizes.resize(principal, ref, project, body);
  }

  /**
   * Delete: the agent tears the VM down, then the record goes. A delete while one is under way
   * answers that operation, so every caller waits for the same outcome.
   */
  async delete(principal: Principal, ref: string, project: string, ifMatch?: number): Promise<Operation> {
    const { operation, events, hostId, instanceId } = await transaction(this.ctx.store, async (trx) => {
      const row = await lockedInstanceRow(principal, ref, project, trx);
      checkRevision(ifMatch, Number(row.revision));
      const current = row.deleting === 1 ? await this.operations.inFlight(trx, row.id, 'instance.delete') : null;
      if (current) return { operation: current, events: [], hostId: null, instanceId: row.id };
      const generation = Number(row.generation) + 1;
      await this.cache.forget(trx, row.id);
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
        message: (await unreachableMessage(trx, instanceFromRow(row).status)) ?? 'delete requested',
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
    await this.post.run({ forget: [instanceId], events, desired: [{ instanceId, hostId }] });
    return operation;
  }

  /** The NICs of an instance, in slot order. */
  nics(principal: Principal, ref: string, project: string): Promise<Nic[]> {
    return this.nicChanges.list(principal, ref, project);
  }

  /** Hot-add a NIC (see InstanceNicChanges). */
  addNic(
    principal: Principal,
    ref: string,
    project: string,
    req: NicRequest,
    onCommit?: CommitHook<{ nic: Nic; operation: Operation }>,
  ): Promise<{ nic: Nic; operation: Operation }> {
    return this.nicChanges.add(principal, ref, project, req, onCommit);
  }

  /** Change a NIC's security groups, filtering or rate limits (see InstanceNicChanges). */
  updateNic(
    principal: Principal,
    ref: string,
    project: string,
    nicId: string,
    patch: NicPatch,
  ): Promise<{ nic: Nic; operation: Operation }> {
    return this.nicChanges.update(principal, ref, project, nicId, patch);
  }

  /** Hot-remove a NIC (see InstanceNicChanges). */
  removeNic(principal: Principal, ref: string, project: string, nicId: string): Promise<Operation> {
    return this.nicChanges.remove(principal, ref, project, nicId);
  }

  /**
   * Make a change another service records on a running instance (a floating IP attached) an operation
   * on it, inside that service's transaction; the instance row must be locked (lockedInstanceRow).
   */
  trackChange(trx: Db, principal: Principal, row: InstancesTable, change: TrackedChange) {
    return bumpForChange(trx, { cache: this.cache, operations: this.operations }, principal, row, change);
  }

  /** The after-commit steps of such a change (the read cache forgets the instances, events, signals). */
  afterCommit(c: Parameters<PostCommit['run']>[0]): Promise<void> {
    return this.post.run(c);
  }

  /** Change history of one instance, oldest first. */
  async history(
    principal: Principal,
    ref: string,
    project: string,
    q: { limit?: number; cursor?: string },
  ): Promise<PageOf<HistoryEntry>> {
    const row = await instanceRow(principal, ref, project, this.ctx.store.db);
    return historyPage(this.ctx.store.db, row.id, q);
  }

  /** Everything placed on a host, for the snapshot an agent gets on connect. */
  desiredForHost(hostId: string): Promise<DesiredInstance[]> {
    return this.desired.forHost(hostId);
  }

  /** The desired state of one instance, or null when it is gone. */
  desiredOne(instanceId: string): Promise<DesiredInstance | null> {
    return this.desired.one(instanceId);
  }

  /** Pending operations for instances on a host become running once the agent has their desired state. */
  dispatched(hostId: string, instanceIds: string[]): Promise<void> {
    return this.intake.dispatched(hostId, instanceIds);
  }

  /** The host stopped answering (see InstanceReachability). */
  hostUnreachable(hostId: string, since?: string): Promise<void> {
    return this.reachability.hostUnreachable(hostId, since);
  }

  /** The host is back and reported what it runs (see InstanceReachability). */
  hostReachable(hostId: string): Promise<void> {
    return this.reachability.hostReachable(hostId);
  }

  /** Apply what an agent observed (see InstanceStatusIntake). */
  applyObserved(hostId: string, obs: ObservedInstance): Promise<void> {
    return this.intake.applyObserved(hostId, obs);
  }
}
