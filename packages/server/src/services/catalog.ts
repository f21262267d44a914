import {
  FloeError,
  type DesiredImage,
  type Image,
  type ImageCreate,
  type ImagePatch,
  type MachineType,
  type MachineTypeCreate,
  type PageOf,
} from '@floe/api';
import { fromJson, isUniqueViolation, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { ImagesTable, MachineTypesTable } from '../db/schema.js';
import { baseFields, checkRevision, findRow, newBase, patchedBase } from './resource-rows.js';
import { canUseProject, requireAdmin, visibleProjects } from './authz.js';
import { listPage } from './pagination.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { recordHistory } from './history.js';
import type { Principal, ServiceContext } from './context.js';
import type { ImageFileService } from './image-files.js';
import { imageFromRow } from './image-rows.js';
import type { OperationService } from './operations.js';
import type { ProjectService } from './projects.js';
import { closeAll } from './metering.js';

/** Sizes seeded into every new installation: 1 vCPU/256 MiB upwards. */
const BUILTIN_MACHINE_TYPES: ReadonlyArray<{
  name: string;
  vcpus: number;
  memory_mib: number;
  disk_gib: number;
}> = [
  { name: 'nano', vcpus: 1, memory_mib: 256, disk_gib: 1 },
  { name: 'micro', vcpus: 1, memory_mib: 512, disk_gib: 5 },
  { name: 'small', vcpus: 1, memory_mib: 1024, disk_gib: 10 },
  { name: 'medium', vcpus: 2, memory_mib: 2048, disk_gib: 20 },
  { name: 'large', vcpus: 2, memory_mib: 4096, disk_gib: 40 },
  { name: 'xlarge', vcpus: 4, memory_mib: 8192, disk_gib: 80 },
  { name: '2xlarge', vcpus: 8, memory_mib: 16384, disk_gib: 160 },
];

/** Row → API shape. */
function machineTypeFromRow(row: MachineTypesTable): MachineType {
  return { ...baseFields(row), spec: fromJson(row.spec), builtin: row.builtin === 1 };
}

/** Machine types: global, readable by everyone, written by admins. */
export class MachineTypeService {
  constructor(private readonly ctx: ServiceContext) {}

  /** Insert the builtin types that are missing (idempotent). */
  async seed(): Promise<void> {
    for (const t of BUILTIN_MACHINE_TYPES) {
      const exists = await this.ctx.store.db
        .selectFrom('machine_types')
        .select('id')
        .where('name', '=', t.name)
        .executeTakeFirst();
      if (exists) continue;
      const row: MachineTypesTable = {
        ...newBase('machine_type', t.name, {}, {}),
        spec: toJson({ vcpus: t.vcpus, memory_mib: t.memory_mib, disk_gib: t.disk_gib }),
        builtin: 1,
      };
      try {
        await this.ctx.store.db.insertInto('machine_types').values(row).execute();
      } catch (err) {
        if (!isUniqueViolation(err)) throw err; // another control plane seeded it first
      }
    }
  }

  /** All machine types, smallest first by id order of creation. */
  async list(q: { limit?: number; cursor?: string; label?: string | string[] }): Promise<PageOf<MachineType>> {
    return listPage<MachineTypesTable, MachineType>(
      this.ctx.store.db,
      'machine_types',
      { limit: q.limit, cursor: q.cursor, labels: parseLabelSelectors(q.label) },
      machineTypeFromRow,
    );
  }

  /** One machine type by id or name. */
  async get(ref: string, db: Db = this.ctx.store.db): Promise<MachineType> {
    return machineTypeFromRow(
      await findRow<MachineTypesTable>(db, 'machine_types', 'machine_type', ref, {
        code: 'machine_type_not_found',
        label: 'machine type',
      }),
    );
  }

  /** Add a custom machine type (admin). */
  async create(principal: Principal, body: MachineTypeCreate): Promise<MachineType> {
    requireAdmin(principal, 'create machine types');
    const row: MachineTypesTable = {
      ...newBase('machine_type', body.name, body.labels, body.metadata),
      spec: toJson({ vcpus: body.vcpus, memory_mib: body.memory_mib, disk_gib: body.disk_gib ?? 10 }),
      builtin: 0,
    };
    try {
      await transaction(this.ctx.store, async (trx) => {
        await trx.insertInto('machine_types').values(row).execute();
        await writeLabels(trx, row.id, body.labels ?? {});
      });
    } catch (err) {
      if (isUniqueViolation(err))
        throw new FloeError('name_conflict', `machine type "${body.name}" already exists`, {
          field: 'name',
          kind: 'machine_type',
          name: body.name,
        });
      throw err;
    }
    await this.ctx.bus.publish({
      type: 'resource.created',
      project: null,
      kind: 'machine_type',
      resource_id: row.id,
      data: { name: row.name },
    });
    return machineTypeFromRow(row);
  }

  /** Remove a machine type (admin). Instances keep their size; it is copied into their spec. */
  async delete(principal: Principal, ref: string): Promise<void> {
    requireAdmin(principal, 'delete machine types');
    const t = await this.get(ref);
    await transaction(this.ctx.store, async (trx) => {
      await trx.deleteFrom('machine_types').where('id', '=', t.id).execute();
      await trx.deleteFrom('resource_labels').where('resource_id', '=', t.id).execute();
    });
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: null,
      kind: 'machine_type',
      resource_id: t.id,
      data: { name: t.name },
    });
  }
}

/** Image records; their files are kept by the ImageFileService. */
export class ImageService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    /** Removes a stored file once no record names it. */
    private readonly files?: Pick<ImageFileService, 'release'>,
    /** Cancels the import of an image deleted while it downloads. */
    private readonly operations?: Pick<OperationService, 'cancel'>,
  ) {}

  /**
   * Images of the visible projects and the public images of every project: those are usable from any
   * project (an operator's library of distribution images), so a project's list offers them too. A
   * project the principal may not see lists nothing.
   */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[]; project?: string },
  ): Promise<PageOf<Image>> {
    const projects = visibleProjects(principal, q.project);
    const labels = parseLabelSelectors(q.label);
    if (projects === null || projects.length === 0)
      return listPage<ImagesTable, Image>(
        this.ctx.store.db,
        'images',
        { limit: q.limit, cursor: q.cursor, labels, projects },
        imageFromRow,
      );
    return listPage<ImagesTable, Image>(
      this.ctx.store.db,
      'images',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels,
        where: (qb) => qb.where((eb) => eb.or([eb('project', 'in', projects), eb('public', '=', 1)])),
      },
      imageFromRow,
    );
  }

  /**
   * One image by id, or by name in `project`; a public image of another project
   * is found by id, or by name when the project has none of that name.
   */
  async get(principal: Principal, ref: string, project: string, db: Db = this.ctx.store.db): Promise<Image> {
    try {
      return imageFromRow(
        await findRow<ImagesTable>(db, 'images', 'image', ref, {
          project,
          principal,
          code: 'image_not_found',
          label: 'image',
        }),
      );
    } catch (err) {
      // A viewer of the image's project who writes elsewhere still uses the project's public images.
      if (!(err instanceof FloeError) || (err.code !== 'image_not_found' && err.code !== 'forbidden')) throw err;
      const publicRow = await db
        .selectFrom('images')
        .selectAll()
        .where('public', '=', 1)
        .where((eb) => eb.or([eb('id', '=', ref), eb('name', '=', ref)]))
        .orderBy('id', 'asc')
        .executeTakeFirst();
      if (publicRow) return imageFromRow(publicRow);
      throw err;
    }
  }

  /** What agents need to know of these images to fetch and cache their files. */
  async desired(ids: readonly string[], db: Db = this.ctx.store.db): Promise<Map<string, DesiredImage>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Map();
    const rows = await db.selectFrom('images').select(['id', 'name', 'status']).where('id', 'in', unique).execute();
    return new Map(
      rows.map((r) => {
        const status = fromJson<{ sha256: string | null; size_bytes: number | null }>(r.status);
        return [r.id, { id: r.id, name: r.name, sha256: status.sha256, size_bytes: status.size_bytes }];
      }),
    );
  }

  /** Register an image record; it stays `pending` until its file is uploaded. */
  async create(principal: Principal, body: ImageCreate): Promise<Image> {
    const project = body.project ?? 'default';
    await this.projects.require(principal, project);
    if (body.public && !principal.admin)
      throw new FloeError('forbidden', 'only an admin token may publish images to every project');
    const row: ImagesTable = {
      ...newBase('image', body.name, body.labels, body.metadata),
      project,
      spec: toJson({
        format: body.format ?? 'qcow2',
        os: body.os ?? '',
        min_disk_gib: body.min_disk_gib ?? 1,
        public: body.public ?? false,
      }),
      status: toJson({ state: 'pending', size_bytes: null, sha256: null, virtual_size_bytes: null }),
      public: body.public ? 1 : 0,
    };
    try {
      await transaction(this.ctx.store, async (trx) => {
        await trx.insertInto('images').values(row).execute();
        await writeLabels(trx, row.id, body.labels ?? {});
        await recordHistory(trx, {
          kind: 'image',
          resource_id: row.id,
          project,
          revision: 1,
          action: 'create',
          actor: principal.actor,
          before: null,
          after: imageFromRow(row),
        });
      });
    } catch (err) {
      if (isUniqueViolation(err))
        throw new FloeError('name_conflict', `image "${body.name}" already exists in project "${project}"`, {
          field: 'name',
          kind: 'image',
          name: body.name,
        });
      throw err;
    }
    await this.ctx.bus.publish({
      type: 'resource.created',
      project,
      kind: 'image',
      resource_id: row.id,
      data: { name: row.name },
    });
    return imageFromRow(row);
  }

  /** Merge-patch labels, metadata, os or public. */
  async update(
    principal: Principal,
    ref: string,
    project: string,
    patch: ImagePatch,
    ifMatch?: number,
  ): Promise<Image> {
    if (patch.spec?.public !== undefined && !principal.admin)
      throw new FloeError('forbidden', 'only an admin token may change whether an image is public');
    const after = await transaction(this.ctx.store, async (trx) => {
      const before = imageFromRow(
        await findRow<ImagesTable>(trx, 'images', 'image', ref, {
          project,
          principal,
          code: 'image_not_found',
          label: 'image',
        }),
      );
      checkRevision(ifMatch, before.revision);
      const next: Image = {
        ...before,
        ...patchedBase(before, patch),
        spec: {
          ...before.spec,
          ...(patch.spec?.os !== undefined ? { os: patch.spec.os } : {}),
          ...(patch.spec?.public !== undefined ? { public: patch.spec.public } : {}),
        },
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await trx
        .updateTable('images')
        .set({
          labels: toJson(next.labels),
          metadata: toJson(next.metadata),
          spec: toJson(next.spec),
          public: next.spec.public ? 1 : 0,
          revision: next.revision,
          updated_at: next.updated_at,
        })
        .where('id', '=', before.id)
        .execute();
      await writeLabels(trx, before.id, next.labels);
      await recordHistory(trx, {
        kind: 'image',
        resource_id: before.id,
        project: before.project,
        revision: next.revision,
        action: 'update',
        actor: principal.actor,
        before,
        after: next,
      });
      return next;
    });
    await this.ctx.bus.publish({
      type: 'resource.updated',
      project: after.project,
      kind: 'image',
      resource_id: after.id,
      data: { revision: after.revision },
    });
    return after;
  }

  /** Delete an image no instance uses, and its file unless another image has the same one. */
  async delete(principal: Principal, ref: string, project: string, ifMatch?: number): Promise<void> {
    // An image still downloading goes with its import: cancelling it removes the record and stops the download.
    const current = await this.get(principal, ref, project);
    if (
      current.status.state === 'importing' &&
      this.operations !== undefined &&
      canUseProject(principal, current.project)
    ) {
      checkRevision(ifMatch, current.revision);
      const op = await this.ctx.store.db
        .selectFrom('operations')
        .select('id')
        .where('target_id', '=', current.id)
        .where('status', 'in', ['pending', 'running'])
        .executeTakeFirst();
      if (op) {
        try {
          await this.operations.cancel(principal, op.id);
          return;
        } catch (err) {
          // It finished meanwhile: delete the image as any other.
          if (!(err instanceof FloeError) || err.code !== 'operation_not_cancellable') throw err;
        }
      }
    }
    const image = await transaction(this.ctx.store, async (trx) => {
      const img = imageFromRow(
        await findRow<ImagesTable>(trx, 'images', 'image', ref, {
          project,
          principal,
          code: 'image_not_found',
          label: 'image',
        }),
      );
      if (!canUseProject(principal, img.project))
        throw new FloeError('image_not_found', `image "${ref}" not found`, { kind: 'image', id: ref });
      checkRevision(ifMatch, img.revision);
      const user = await trx
        .selectFrom('instances')
        .select(['id', 'name'])
        .where('image_id', '=', img.id)
        .limit(1)
        .executeTakeFirst();
      if (user)
        throw new FloeError('in_use', `image "${img.name}" is used by instance "${user.name}"`, {
          kind: 'image',
          id: img.id,
          used_by: user.id,
        });
      await trx.deleteFrom('images').where('id', '=', img.id).execute();
      await trx.deleteFrom('resource_labels').where('resource_id', '=', img.id).execute();
      await closeAll(trx, [img.id], nowIso());
      await recordHistory(trx, {
        kind: 'image',
        resource_id: img.id,
        project: img.project,
        revision: img.revision + 1,
        action: 'delete',
        actor: principal.actor,
        before: img,
        after: null,
      });
      return img;
    });
    // The record is gone either way; a file that cannot be removed now is only disk space.
    if (image.status.sha256 !== null) await this.files?.release(image.status.sha256).catch(() => undefined);
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: image.project,
      kind: 'image',
      resource_id: image.id,
      data: { name: image.name },
    });
  }
}
