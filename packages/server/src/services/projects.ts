import {
  FloeError,
  type HistoryEntry,
  type PageOf,
  type Project,
  type ProjectCreate,
  type ProjectLimits,
  type ProjectPatch,
  type ProjectUsage,
  type QuotaLimitsChange,
} from '@floe/api';
import { isUniqueViolation, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { ProjectsTable } from '../db/schema.js';
import { baseFields, checkRevision, findRow, newBase, patchedBase } from './resource-rows.js';
import { listPage } from './pagination.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { historyPage, recordHistory } from './history.js';
import { canUseProject, requireAdmin, requireOwner, withVerb } from './authz.js';
import { applyLimits, limitsOfProject, loadTree, usageOf } from './quota.js';
import type { Principal, ServiceContext } from './context.js';

/** Row → API shape; `names` gives the parent's name from its id. */
function projectFromRow(row: ProjectsTable, names: ReadonlyMap<string, string>): Project {
  return {
    ...baseFields(row),
    description: row.description,
    parent: row.parent_id === null ? null : (names.get(row.parent_id) ?? null),
  };
}

/** Project ids to names. */
async function projectNames(db: Db): Promise<Map<string, string>> {
  return new Map((await loadTree(db)).map((n) => [n.id, n.name]));
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
    const parents = await projectNames(this.ctx.store.db);
    return listPage<ProjectsTable, Project>(
      this.ctx.store.db,
      'projects',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels: parseLabelSelectors(q.label),
        where: names === null ? undefined : (qb) => qb.where('name', 'in', names.length > 0 ? names : ['']),
      },
      (row) => projectFromRow(row, parents),
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
    return projectFromRow(row, row.parent_id === null ? new Map() : await projectNames(db));
  }

  /** Throw project_not_found unless the project exists and the principal may use it. */
  async require(principal: Principal, name: string, db: Db = this.ctx.store.db): Promise<void> {
    await this.get(principal, name, db);
  }

  /**
   * Create a project: a top-level one (admin; it gets the operator's default limits unless the body
   * names its own), or a sub-project of `parent` (its owners, and admins), whose limits are carved out
   * of the parent's. A user who creates a sub-project becomes its owner.
   */
  async create(principal: Principal, body: ProjectCreate): Promise<Project> {
    if (body.parent === undefined) requireAdmin(principal, 'create top-level projects');
    const base: ProjectsTable = {
      ...newBase('project', body.name, body.labels, body.metadata),
      description: body.description ?? '',
      parent_id: null,
    };
    let row = base;
    try {
      await transaction(this.ctx.store, async (trx) => {
        if (body.parent !== undefined) {
          const parent = await this.get(principal, body.parent, trx);
          requireOwner(principal, parent.name, 'create its sub-projects');
          row = { ...base, parent_id: parent.id };
        }
        await trx.insertInto('projects').values(row).execute();
        await applyLimits(
          trx,
          this.ctx.store.dialect,
          row.name,
          body.limits ?? (body.parent === undefined ? this.ctx.config.defaultLimits : {}),
        );
        if (body.parent !== undefined && principal.user !== undefined && !principal.admin)
          await trx
            .insertInto('project_members')
            .values({ project_id: row.id, user_id: principal.user, role: 'owner', created_at: nowIso() })
            .execute();
        await writeLabels(trx, row.id, body.labels ?? {});
        await recordHistory(trx, {
          kind: 'project',
          resource_id: row.id,
          project: row.name,
          revision: 1,
          action: 'create',
          actor: principal.actor,
          before: null,
          after: projectFromRow(row, new Map(body.parent === undefined ? [] : [[row.parent_id!, body.parent]])),
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
    const project = await this.get(Object.freeze({ ...principal, admin: true }), row.id);
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

  /** Allocated against limits, per dimension, for the project and its subtree (anyone who sees the project). */
  async usage(principal: Principal, ref: string): Promise<ProjectUsage> {
    const p = await this.get(principal, ref);
    return usageOf(this.ctx.store.db, this.ctx.store.dialect, p.name);
  }

  /** The project's own limits (anyone who sees the project). */
  async limits(principal: Principal, ref: string): Promise<ProjectLimits> {
    const p = await this.get(principal, ref);
    return limitsOfProject(this.ctx.store.db, p);
  }

  /**
   * Change the project's limits: admins for any project, owners of the parent for a sub-project (the
   * limits are the parent's to give). Checked and written under the locks of the project's chain; the audit log keeps who changed them.
   */
  async setLimits(principal: Principal, ref: string, change: QuotaLimitsChange): Promise<ProjectLimits> {
    const result = await transaction(this.ctx.store, async (trx) => {
      // Owners of the parent see a sub-project as viewers: reading it is enough to find it.
      const p = await this.get(withVerb(principal, 'read'), ref, trx);
      if (!principal.admin) {
        if (p.parent === null) requireAdmin(principal, 'change the limits of a top-level project');
        else requireOwner(principal, p.parent, `change the limits of its sub-project "${p.name}"`);
      }
      const before = await limitsOfProject(trx, p);
      const after = await applyLimits(trx, this.ctx.store.dialect, p.name, change);
      // A change of limits is a change of the project: a new revision and a history entry with both sets.
      // Read under the chain's lock applyLimits took: a concurrent change of the project cannot take the same revision.
      const current = await trx
        .selectFrom('projects')
        .select('revision')
        .where('id', '=', p.id)
        .executeTakeFirstOrThrow();
      const revision = Number(current.revision) + 1;
      const updated_at = nowIso();
      await trx.updateTable('projects').set({ revision, updated_at }).where('id', '=', p.id).execute();
      await recordHistory(trx, {
        kind: 'project',
        resource_id: p.id,
        project: p.name,
        revision,
        action: 'set-limits',
        actor: principal.actor,
        before: { ...p, limits: before.limits },
        after: { ...p, revision, updated_at, limits: after.limits },
      });
      return { p, after };
    });
    await this.ctx.bus.publish({
      type: 'resource.updated',
      project: result.p.name,
      kind: 'project',
      resource_id: result.p.id,
      data: { limits: result.after.limits },
    });
    return result.after;
  }

  /** Change history of a project (creation, changes, limits), oldest first. */
  async history(
    principal: Principal,
    ref: string,
    q: { limit?: number; cursor?: string },
  ): Promise<PageOf<HistoryEntry>> {
    const p = await this.get(principal, ref);
    return historyPage(this.ctx.store.db, p.id, q);
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
        (await trx.selectFrom('networks').select('id').where('project', '=', p.name).limit(1).executeTakeFirst()) ??
        (await trx.selectFrom('projects').select('id').where('parent_id', '=', p.id).limit(1).executeTakeFirst());
      if (used)
        throw new FloeError('in_use', `project "${p.name}" still has instances, images, networks or sub-projects`, {
          kind: 'project',
          id: p.id,
        });
      await trx.deleteFrom('projects').where('id', '=', p.id).execute();
      await trx.deleteFrom('project_limits').where('project_id', '=', p.id).execute();
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
