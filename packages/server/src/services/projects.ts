import { FloeError, type PageOf, type Project, type ProjectCreate, type ProjectPatch } from '@floe/api';
import { isUniqueViolation, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { ProjectsTable } from '../db/schema.js';
import { baseFields, checkRevision, findRow, newBase, patchedBase } from './resource-rows.js';
import { listPage } from './pagination.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { recordHistory } from './history.js';
import { canUseProject, requireAdmin } from './authz.js';
import type { Principal, ServiceContext } from './context.js';

/** Row → API shape. */
function projectFromRow(row: ProjectsTable): Project {
  return { ...baseFields(row), description: row.description };
}

/** Tenants. Only admins create and delete them; tokens see the projects they are scoped to. */
export class ProjectService {
  constructor(private readonly ctx: ServiceContext) {}

  /** Projects visible to the principal. */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[] },
  ): Promise<PageOf<Project>> {
    const names = principal.admin ? null : [...principal.projects];
    return listPage<ProjectsTable, Project>(
      this.ctx.store.db,
      'projects',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels: parseLabelSelectors(q.label),
        where: names === null ? undefined : (qb) => qb.where('name', 'in', names.length > 0 ? names : ['']),
      },
      projectFromRow,
    );
  }

  /** One project by id or name. */
  async get(principal: Principal, ref: string, db: Db = this.ctx.store.db): Promise<Project> {
    const row = await findRow<ProjectsTable>(db, 'projects', 'project', ref, {
      code: 'project_not_found',
      label: 'project',
    });
    if (!canUseProject(principal, row.name)) {
      throw new FloeError('project_not_found', `project "${ref}" not found`, { kind: 'project', id: ref });
    }
    return projectFromRow(row);
  }

  /** Throw project_not_found unless the project exists and the principal may use it. */
  async require(principal: Principal, name: string, db: Db = this.ctx.store.db): Promise<void> {
    await this.get(principal, name, db);
  }

  /** Create a project (admin). */
  async create(principal: Principal, body: ProjectCreate): Promise<Project> {
    requireAdmin(principal, 'create projects');
    const row: ProjectsTable = {
      ...newBase('project', body.name, body.labels, body.metadata),
      description: body.description ?? '',
    };
    try {
      await transaction(this.ctx.store, async (trx) => {
        await trx.insertInto('projects').values(row).execute();
        await writeLabels(trx, row.id, body.labels ?? {});
        await recordHistory(trx, {
          kind: 'project',
          resource_id: row.id,
          project: row.name,
          revision: 1,
          action: 'create',
          actor: principal.actor,
          before: null,
          after: projectFromRow(row),
        });
      });
    } catch (err) {
      if (isUniqueViolation(err))
        throw new FloeError('name_conflict', `project "${body.name}" already exists`, {
          field: 'name',
          kind: 'project',
          name: body.name,
        });
      throw err;
    }
    const project = projectFromRow(row);
    await this.ctx.bus.publish({
      type: 'resource.created',
      project: row.name,
      kind: 'project',
      resource_id: row.id,
      data: { name: row.name },
    });
    return project;
  }

  /** Merge-patch labels, metadata or description. */
  async update(principal: Principal, ref: string, patch: ProjectPatch, ifMatch?: number): Promise<Project> {
    const updated = await transaction(this.ctx.store, async (trx) => {
      const before = await this.get(principal, ref, trx);
      checkRevision(ifMatch, before.revision);
      const { labels, metadata } = patchedBase(before, patch);
      const after: Project = {
        ...before,
        labels,
        metadata,
        description: patch.description ?? before.description,
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await trx
        .updateTable('projects')
        .set({
          labels: toJson(labels),
          metadata: toJson(metadata),
          description: after.description,
          revision: after.revision,
          updated_at: after.updated_at,
        })
        .where('id', '=', before.id)
        .execute();
      await writeLabels(trx, before.id, labels);
      await recordHistory(trx, {
        kind: 'project',
        resource_id: before.id,
        project: before.name,
        revision: after.revision,
        action: 'update',
        actor: principal.actor,
        before,
        after,
      });
      return after;
    });
    await this.ctx.bus.publish({
      type: 'resource.updated',
      project: updated.name,
      kind: 'project',
      resource_id: updated.id,
      data: { revision: updated.revision },
    });
    return updated;
  }

  /** Delete an empty project (admin). */
  async delete(principal: Principal, ref: string, ifMatch?: number): Promise<void> {
    requireAdmin(principal, 'delete projects');
    const project = await transaction(this.ctx.store, async (trx) => {
      const p = await this.get(principal, ref, trx);
      checkRevision(ifMatch, p.revision);
      const used =
        (await trx.selectFrom('instances').select('id').where('project', '=', p.name).limit(1).executeTakeFirst()) ??
        (await trx.selectFrom('images').select('id').where('project', '=', p.name).limit(1).executeTakeFirst()) ??
        (await trx.selectFrom('networks').select('id').where('project', '=', p.name).limit(1).executeTakeFirst());
      if (used)
        throw new FloeError('in_use', `project "${p.name}" still has instances, images or networks`, {
          kind: 'project',
          id: p.id,
        });
      await trx.deleteFrom('projects').where('id', '=', p.id).execute();
      await trx.deleteFrom('resource_labels').where('resource_id', '=', p.id).execute();
      await recordHistory(trx, {
        kind: 'project',
        resource_id: p.id,
        project: p.name,
        revision: p.revision + 1,
        action: 'delete',
        actor: principal.actor,
        before: p,
        after: null,
      });
      return p;
    });
    await this.ctx.bus.publish({
      type: 'resource.deleted',
      project: project.name,
      kind: 'project',
      resource_id: project.id,
      data: { name: project.name },
    });
  }
}
