import { FloeError, type Member, type MemberAdd, type ProjectRoleName } from '@floe/api';
import { forUpdate, isUniqueViolation, nowIso, transaction, type Db } from '../db/index.js';
import { authorize } from './authz.js';
import type { Principal, ServiceContext } from './context.js';
import type { ProjectService } from './projects.js';
import { findUser } from './users.js';

/**
 * The members of a project and their roles. Anyone who sees the project lists them; its owners and
 * operators add, change and remove them. A project that has an owner keeps one: removing or demoting
 * its last owner is refused (`last_owner`), so that someone can always manage it; an operator can
 * still delete the project. Every change is an event of kind `user`, which makes every control plane
 * read its tokens' rights again at once.
 */
export class MemberService {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
  ) {}

  async list(principal: Principal, projectRef: string): Promise<Member[]> {
    const project = await this.projects.get(principal, projectRef);
    const rows = await this.ctx.store.db
      .selectFrom('project_members')
      .innerJoin('users', 'users.id', 'project_members.user_id')
      .select(['users.name', 'users.id', 'project_members.role', 'project_members.created_at'])
      .where('project_members.project_id', '=', project.id)
      .orderBy('users.name')
      .execute();
    return rows.map((r) => ({ user: r.name, user_id: r.id, role: r.role, created_at: r.created_at }));
  }

  async add(principal: Principal, projectRef: string, body: MemberAdd): Promise<Member> {
    const project = await this.managed(principal, projectRef);
    const user = await findUser(this.ctx.store.db, body.user);
    const created_at = nowIso();
    try {
      await this.ctx.store.db
        .insertInto('project_members')
        .values({ project_id: project.id, user_id: user.id, role: body.role, created_at })
        .execute();
    } catch (err) {
      if (isUniqueViolation(err))
        throw new FloeError('name_conflict', `user "${user.name}" is already a member of "${project.name}"`, {
          kind: 'member',
          name: user.name,
        });
      throw err;
    }
    await this.changed('member.added', project.name, user.id, { user: user.name, role: body.role });
    return { user: user.name, user_id: user.id, role: body.role, created_at };
  }

  async setRole(principal: Principal, projectRef: string, userRef: string, role: ProjectRoleName): Promise<Member> {
    const project = await this.managed(principal, projectRef);
    const member = await transaction(this.ctx.store, async (trx) => {
      const m = await this.member(trx, project, userRef);
      if (m.role === 'owner' && role !== 'owner') await this.keepAnOwner(trx, project);
      await trx
        .updateTable('project_members')
        .set({ role })
        .where('project_id', '=', project.id)
        .where('user_id', '=', m.user_id)
        .execute();
      return { ...m, role };
    });
    await this.changed('member.updated', project.name, member.user_id, { user: member.user, role });
    return member;
  }

  async remove(principal: Principal, projectRef: string, userRef: string): Promise<void> {
    const project = await this.managed(principal, projectRef);
    const member = await transaction(this.ctx.store, async (trx) => {
      const m = await this.member(trx, project, userRef);
      if (m.role === 'owner') await this.keepAnOwner(trx, project);
      await trx
        .deleteFrom('project_members')
        .where('project_id', '=', project.id)
        .where('user_id', '=', m.user_id)
        .execute();
      return m;
    });
    await this.changed('member.removed', project.name, member.user_id, { user: member.user });
  }

  /** The project, when the principal may manage its members (not found when it may not see it). */
  private async managed(principal: Principal, ref: string): Promise<{ id: string; name: string }> {
    const project = await this.projects.get(principal, ref);
    authorize(principal, project.name, 'manage');
    return project;
  }

  private async member(db: Db, project: { id: string; name: string }, userRef: string): Promise<Member> {
    const user = await findUser(db, userRef).catch(() => null);
    const row =
      user === null
        ? undefined
        : await db
            .selectFrom('project_members')
            .selectAll()
            .where('project_id', '=', project.id)
            .where('user_id', '=', user.id)
            .executeTakeFirst();
    if (user === null || row === undefined)
      throw new FloeError('member_not_found', `"${userRef}" is not a member of project "${project.name}"`, {
        kind: 'member',
        id: userRef,
      });
    return { user: user.name, user_id: user.id, role: row.role, created_at: row.created_at };
  }

  /** Refuse a change that takes the project's last owner away. */
  private async keepAnOwner(db: Db, project: { id: string; name: string }): Promise<void> {
    const owners = await forUpdate(
      db
        .selectFrom('project_members')
        .select('user_id')
        .where('project_id', '=', project.id)
        .where('role', '=', 'owner'),
    ).execute();
    if (owners.length <= 1)
      throw new FloeError('last_owner', `"${project.name}" would have no owner left; make another member owner first`, {
        project: project.name,
      });
  }

  private async changed(type: string, project: string, userId: string, data: Record<string, unknown>): Promise<void> {
    await this.ctx.bus.publish({ type, project, kind: 'user', resource_id: userId, data });
  }
}
