import {
  FloeError,
  MAX_SG_RULES,
  type DesiredSecurityGroup,
  type PageOf,
  type SecurityGroup,
  type SecurityGroupCreate,
  type SecurityGroupPatch,
  type SecurityGroupSpec,
  type SgRuleCreate,
} from '@floe/api';
import { forUpdate, fromJson, isUniqueViolation, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { SecurityGroupsTable } from '../db/schema.js';
import { isIdOf } from '../ids.js';
import { visibleProjects } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import { deleteWithHistory, recordHistory, updateWithHistory } from './history.js';
import { parseLabelSelectors, writeLabels } from './labels.js';
import { listPage } from './pagination.js';
import type { ProjectService } from './projects.js';
import { reserve } from './quota.js';
import { baseFields, checkMetadata, checkRevision, findRow, newBase, patchedBase } from './resource-rows.js';
import { DEFAULT_GROUP, defaultGroupSpec, desiredGroup, groupSpecOf, ruleFrom } from './security-group-spec.js';

/** The groups of a NIC as stored (ids; [] for the project's default group). */
const groupsOf = (nic: { security_groups: string }): string[] => fromJson<string[]>(nic.security_groups) ?? [];

/**
 * Security groups: project resources with allow rules, applied to NICs (the
 * NIC service stores which); the agents get the groups their NICs use with
 * the current member addresses. Every change is pushed to the hosts running
 * instances of the group's project.
 */
export class SecurityGroupService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
  ) {}

  private fromRow(row: SecurityGroupsTable, nics = 0): SecurityGroup {
    return {
      ...baseFields(row),
      project: row.project,
      description: row.description,
      spec: groupSpecOf(row),
      status: { nics },
    };
  }

  /** Groups of the visible projects. */
  async list(
    principal: Principal,
    q: { limit?: number; cursor?: string; label?: string | string[]; project?: string },
  ): Promise<PageOf<SecurityGroup>> {
    const projects = visibleProjects(principal, q.project);
    if (q.project !== undefined && (projects === null || projects.includes(q.project)))
      await this.ensureDefault(this.ctx.store.db, q.project).catch(() => undefined);
    const page = await listPage<SecurityGroupsTable, SecurityGroupsTable>(
      this.ctx.store.db,
      'security_groups',
      {
        limit: q.limit,
        cursor: q.cursor,
        labels: parseLabelSelectors(q.label),
        where: projects === null ? undefined : (qb) => qb.where('project', 'in', projects.length ? projects : ['']),
      },
      (r) => r,
    );
    const counts = await this.memberCounts(page.items);
    return { items: page.items.map((r) => this.fromRow(r, counts.get(r.id))), next_cursor: page.next_cursor };
  }

  /** One group by id, or by name inside `project`. */
  async get(principal: Principal, ref: string, project: string): Promise<SecurityGroup> {
    if (ref === DEFAULT_GROUP) await this.ensureDefault(this.ctx.store.db, project).catch(() => undefined);
    const row = await this.row(principal, ref, project, this.ctx.store.db);
    return this.fromRow(row, (await this.memberCounts([row])).get(row.id));
  }

  /** The row of a group the principal may see. */
  row(principal: Principal | undefined, ref: string, project: string, db: Db): Promise<SecurityGroupsTable> {
    return findRow<SecurityGroupsTable>(db, 'security_groups', 'security_group', ref, {
      project,
      principal,
      code: 'security_group_not_found',
      label: 'security group',
    });
  }

  /** Create a group with its first rules (their remote groups by name or id, in the same project; `self` is itself). */
  async create(principal: Principal, body: SecurityGroupCreate): Promise<SecurityGroup> {
    const project = body.project ?? 'default';
    const base = newBase('security_group', body.name, body.labels, checkMetadata(body.metadata));
    try {
      const group = await transaction(this.ctx.store, async (trx) => {
        await this.projects.require(principal, project, trx);
        await reserve(trx, this.ctx.store.dialect, project, { security_groups: 1 });
        await this.ensureDefault(trx, project);
        const rules = [];
        for (const [i, r] of (body.rules ?? []).entries())
          rules.push(ruleFrom(r, await this.remoteOf(trx, r, project, base.id, body.name), `rules[${i}]`));
        const spec: SecurityGroupSpec = {
          ingress_default: body.ingress_default ?? 'deny',
          egress_default: body.egress_default ?? 'allow',
          rules,
        };
        const row: SecurityGroupsTable = {
          ...base,
          project,
          description: body.description ?? '',
          spec: toJson(spec),
        };
        await trx.insertInto('security_groups').values(row).execute();
        await writeLabels(trx, row.id, body.labels ?? {}, true);
        const group = this.fromRow(row);
        await recordHistory(trx, {
          kind: 'security_group',
          resource_id: row.id,
          project,
          revision: 1,
          action: 'create',
          actor: principal.actor,
          before: null,
          after: group,
        });
        return group;
      });
      await this.changed(group.project, 'resource.created', group.id, { name: group.name });
      return group;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      throw new FloeError('name_conflict', `security group "${body.name}" already exists in project "${project}"`, {
        field: 'name',
        kind: 'security_group',
        name: body.name,
      });
    }
  }

  /** Merge-patch labels, metadata, description and the default verdicts. */
  update(
    principal: Principal,
    ref: string,
    project: string,
    patch: SecurityGroupPatch,
    ifMatch?: number,
  ): Promise<SecurityGroup> {
    return this.change(principal, ref, project, ifMatch, (before) => ({
      ...before,
      ...patchedBase(before, patch),
      description: patch.description ?? before.description,
      spec: {
        ...before.spec,
        ingress_default: patch.spec?.ingress_default ?? before.spec.ingress_default,
        egress_default: patch.spec?.egress_default ?? before.spec.egress_default,
      },
    }));
  }

  /** Add an allow rule. */
  addRule(principal: Principal, ref: string, project: string, rule: SgRuleCreate): Promise<SecurityGroup> {
    return this.change(principal, ref, project, undefined, async (before, trx) => {
      if (before.spec.rules.length >= MAX_SG_RULES)
        throw new FloeError('validation_failed', `a security group has at most ${MAX_SG_RULES} rules`, {
          field: 'rules',
        });
      const remote = await this.remoteOf(trx, rule, before.project, before.id, before.name);
      return { ...before, spec: { ...before.spec, rules: [...before.spec.rules, ruleFrom(rule, remote, 'rule')] } };
    });
  }

  /** Remove a rule by its id. */
  removeRule(principal: Principal, ref: string, project: string, ruleId: string): Promise<SecurityGroup> {
    return this.change(principal, ref, project, undefined, (before) => {
      if (!before.spec.rules.some((r) => r.id === ruleId))
        throw new FloeError('security_group_not_found', `rule "${ruleId}" not found in "${before.name}"`, {
          kind: 'security_group_rule',
          id: ruleId,
        });
      return { ...before, spec: { ...before.spec, rules: before.spec.rules.filter((r) => r.id !== ruleId) } };
    });
  }

  /** Delete a group no NIC uses and no other group names (`in_use` otherwise); `default` stays. */
  async delete(principal: Principal, ref: string, project: string, ifMatch?: number): Promise<void> {
    const row = await transaction(this.ctx.store, async (trx) => {
      const row = await this.row(principal, ref, project, trx);
      checkRevision(ifMatch, Number(row.revision));
      if (row.name === DEFAULT_GROUP)
        throw new FloeError('in_use', 'the default group of a project cannot be deleted', {
          kind: 'security_group',
          id: row.id,
        });
      const nics = await this.nicsOf(trx, row.project);
      const user = nics.find((n) => groupsOf(n).includes(row.id));
      if (user)
        throw new FloeError('in_use', `security group "${row.name}" is used by NIC ${user.id}`, {
          kind: 'security_group',
          id: row.id,
          instance: user.instance_id,
        });
      const others = await trx.selectFrom('security_groups').selectAll().where('project', '=', row.project).execute();
      const naming = others.find((o) => o.id !== row.id && groupSpecOf(o).rules.some((r) => r.remote_group === row.id));
      if (naming)
        throw new FloeError('in_use', `security group "${row.name}" is the remote of rules of "${naming.name}"`, {
          kind: 'security_group',
          id: row.id,
        });
      await deleteWithHistory(trx, 'security_groups', {
        kind: 'security_group',
        row,
        actor: principal.actor,
        before: this.fromRow(row),
      });
      return row;
    });
    await this.changed(row.project, 'resource.deleted', row.id, { name: row.name });
  }

  /**
   * The ids of the groups `refs` name (names or ids in `project`) for a NIC, inside the caller's
   * transaction; none named: the project's default group. `field` names the request field in errors.
   */
  async resolve(trx: Db, principal: Principal, project: string, refs: readonly string[], field: string) {
    if (refs.length === 0) return [(await this.ensureDefault(trx, project)).id];
    const ids: string[] = [];
    for (const ref of refs) {
      if (ref === DEFAULT_GROUP) await this.ensureDefault(trx, project);
      try {
        const row = await this.row(principal, ref, project, trx);
        if (row.project !== project) throw new FloeError('security_group_not_found', `"${ref}" not found`, {});
        ids.push(row.id);
      } catch (err) {
        if (err instanceof FloeError && err.code === 'security_group_not_found')
          throw new FloeError('security_group_not_found', `security group "${ref}" not found in "${project}"`, {
            field,
            kind: 'security_group',
            id: ref,
          });
        throw err;
      }
    }
    return [...new Set(ids)];
  }

  /** Group names by id (for showing NICs). */
  async namesOf(db: Db, ids: readonly string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const rows = await db
      .selectFrom('security_groups')
      .select(['id', 'name'])
      .where('id', 'in', [...new Set(ids)])
      .execute();
    return new Map(rows.map((r) => [r.id, r.name]));
  }

  /** The project's default group, created with its rules when the project has none yet. */
  async ensureDefault(db: Db, project: string): Promise<SecurityGroupsTable> {
    const find = () =>
      db
        .selectFrom('security_groups')
        .selectAll()
        .where('project', '=', project)
        .where('name', '=', DEFAULT_GROUP)
        .executeTakeFirst();
    const found = await find();
    if (found) return found;
    // Only for a project that exists: asking in a missing one creates nothing.
    const exists = await db.selectFrom('projects').select('id').where('name', '=', project).executeTakeFirst();
    if (exists === undefined)
      throw new FloeError('project_not_found', `project "${project}" not found`, { kind: 'project', id: project });
    const base = newBase('security_group', DEFAULT_GROUP, {}, {});
    await db
      .insertInto('security_groups')
      .values({
        ...base,
        project,
        description: 'the group of NICs that name none',
        spec: toJson(defaultGroupSpec(base.id)),
      })
      .onConflict((oc) => oc.doNothing())
      .execute();
    return (await find())!;
  }

  /**
   * The agent-facing view: the groups the NICs of instances on `hostId` use, and the groups
   * their rules name as remotes, each with the addresses of its members on every host.
   */
  async desiredForHost(hostId: string, db: Db = this.ctx.store.db): Promise<DesiredSecurityGroup[]> {
    const projects = (
      await db.selectFrom('instances').select('project').where('host_id', '=', hostId).distinct().execute()
    ).map((r) => r.project);
    if (projects.length === 0) return [];
    const groups = await db.selectFrom('security_groups').selectAll().where('project', 'in', projects).execute();
    const defaults = new Map(groups.filter((g) => g.name === DEFAULT_GROUP).map((g) => [g.project, g.id]));
    const nics = await db
      .selectFrom('nics')
      .innerJoin('instances', 'instances.id', 'nics.instance_id')
      .select([
        'nics.project as project',
        'nics.ipv4 as ipv4',
        'nics.ipv6 as ipv6',
        'nics.security_groups as security_groups',
        'instances.host_id as host_id',
      ])
      .where('nics.project', 'in', projects)
      .execute();
    const members = new Map<string, string[]>();
    const used = new Set<string>();
    for (const n of nics) {
      const ids = groupsOf(n);
      const effective = ids.length > 0 ? ids : [defaults.get(n.project)].filter((g): g is string => g !== undefined);
      for (const g of effective) {
        const list = members.get(g) ?? [];
        if (n.ipv4 !== null) list.push(n.ipv4);
        if (n.ipv6 !== null) list.push(n.ipv6);
        members.set(g, list);
        if (n.host_id === hostId) used.add(g);
      }
    }
    const byId = new Map(groups.map((g) => [g.id, g]));
    for (const g of [...used])
      for (const r of groupSpecOf(byId.get(g)!).rules) if (r.remote_group !== null) used.add(r.remote_group);
    return [...used]
      .filter((id) => byId.has(id))
      .sort()
      .map((id) => desiredGroup(byId.get(id)!, members.get(id) ?? []));
  }

  /** Tell the hosts running instances of `project` that its groups or their members changed. */
  async announceProject(project: string): Promise<void> {
    const hosts = await this.ctx.store.db
      .selectFrom('instances')
      .select('host_id')
      .where('project', '=', project)
      .where('host_id', 'is not', null)
      .distinct()
      .execute();
    for (const h of hosts) if (h.host_id !== null) this.ctx.signals.send('desired', 'security_group', h.host_id);
  }

  /** The projects of the instances on a host. */
  async projectsOnHost(hostId: string): Promise<string[]> {
    const rows = await this.ctx.store.db
      .selectFrom('instances')
      .select('project')
      .where('host_id', '=', hostId)
      .distinct()
      .execute();
    return rows.map((r) => r.project);
  }

  private async remoteOf(
    trx: Db,
    rule: SgRuleCreate,
    project: string,
    selfId: string,
    selfName: string,
  ): Promise<string | null> {
    const ref = rule.remote_group;
    if (ref === undefined) return null;
    if (ref === 'self' || ref === selfId || ref === selfName) return selfId;
    if (!isIdOf('security_group', ref) && ref === DEFAULT_GROUP) await this.ensureDefault(trx, project);
    const row = await this.row(undefined, ref, project, trx).catch(() => undefined);
    if (row === undefined || row.project !== project)
      throw new FloeError('security_group_not_found', `security group "${ref}" not found in "${project}"`, {
        field: 'remote_group',
        kind: 'security_group',
        id: ref,
      });
    return row.id;
  }

  private async change(
    principal: Principal,
    ref: string,
    project: string,
    ifMatch: number | undefined,
    edit: (before: SecurityGroup, trx: Db) => SecurityGroup | Promise<SecurityGroup>,
  ): Promise<SecurityGroup> {
    const after = await transaction(this.ctx.store, async (trx) => {
      if (ref === DEFAULT_GROUP) await this.ensureDefault(trx, project).catch(() => undefined);
      const found = await this.row(principal, ref, project, trx);
      // Changes of one group at the same time (rules added at once) go one after the other, each editing the
      // group as the one before left it: otherwise the last to commit would drop the others' rules.
      const row =
        (await forUpdate(
          trx.selectFrom('security_groups').selectAll().where('id', '=', found.id),
        ).executeTakeFirst()) ?? found;
      const before = this.fromRow(row, (await this.memberCounts([row], trx)).get(row.id));
      checkRevision(ifMatch, before.revision);
      const edited = await edit(before, trx);
      const after: SecurityGroup = { ...edited, revision: before.revision + 1, updated_at: nowIso() };
      await updateWithHistory(trx, 'security_groups', {
        kind: 'security_group',
        row,
        actor: principal.actor,
        before,
        after,
        set: { description: after.description, spec: toJson(after.spec) },
      });
      return after;
    });
    await this.changed(after.project, 'resource.updated', after.id, { revision: after.revision });
    return after;
  }

  private async changed(
    project: string,
    type: 'resource.created' | 'resource.updated' | 'resource.deleted',
    id: string,
    data: Record<string, unknown>,
  ): Promise<void> {
    await this.ctx.bus.publish({ type, project, kind: 'security_group', resource_id: id, data });
    await this.announceProject(project);
  }

  private nicsOf(db: Db, project: string) {
    return db
      .selectFrom('nics')
      .select(['id', 'instance_id', 'security_groups'])
      .where('project', '=', project)
      .execute();
  }

  private async memberCounts(rows: readonly SecurityGroupsTable[], db: Db = this.ctx.store.db) {
    const out = new Map<string, number>();
    for (const project of new Set(rows.map((r) => r.project))) {
      const nics = await this.nicsOf(db, project);
      const def = rows.find((r) => r.project === project && r.name === DEFAULT_GROUP)?.id;
      for (const n of nics) {
        const ids = groupsOf(n);
        for (const g of ids.length > 0 ? ids : def !== undefined ? [def] : []) out.set(g, (out.get(g) ?? 0) + 1);
      }
    }
    return out;
  }
}
