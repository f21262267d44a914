import { FloeError, NAME_PATTERN } from '@floe/api';
import type { MappedRoles, RoleMapping } from '../auth/roles.js';
import { mapRoles } from '../auth/roles.js';
import type { AuthSuccess, ProjectRole } from '../auth/types.js';
import { isUniqueViolation, nowIso, transaction, type Db, type Store } from '../db/index.js';
import type { UsersTable } from '../db/schema.js';
import { newId } from '../ids.js';

const NAME = new RegExp(NAME_PATTERN);
const EMAIL = /^[^@\s]+@[^@\s]+$/;

/** The profile fields an authenticator's answer sets on a floe user (invalid values are left out). */
function profileOf(success: AuthSuccess): { display_name?: string; email?: string } {
  const out: { display_name?: string; email?: string } = {};
  if (success.displayName !== undefined) out.display_name = success.displayName.slice(0, 200);
  if (success.email !== undefined && success.email.length <= 254 && EMAIL.test(success.email))
    out.email = success.email;
  return out;
}

/** One membership change the role mapping asks for. */
export type MembershipChange =
  | { readonly op: 'add'; readonly projectId: string; readonly role: ProjectRole }
  | { readonly op: 'set'; readonly projectId: string; readonly role: ProjectRole }
  | { readonly op: 'remove'; readonly projectId: string };

/**
 * What the mapping changes for a user, given its current memberships. Memberships the mapping gave
 * (`via` 'mapping') follow the mapping: added, changed, removed. Memberships added by hand are never
 * touched, not even when the mapping names the same project. Projects that do not exist are skipped.
 * Pure.
 */
export function membershipChanges(
  mapped: MappedRoles,
  current: readonly { projectId: string; role: ProjectRole; via: 'mapping' | null }[],
  projectIds: ReadonlyMap<string, string>,
): MembershipChange[] {
  const out: MembershipChange[] = [];
  const want = new Map<string, ProjectRole>();
  for (const [name, role] of Object.entries(mapped.projects)) {
    const id = projectIds.get(name);
    if (id !== undefined) want.set(id, role);
  }
  const have = new Map(current.map((m) => [m.projectId, m]));
  for (const [projectId, role] of want) {
    const m = have.get(projectId);
    if (m === undefined) out.push({ op: 'add', projectId, role });
    else if (m.via === 'mapping' && m.role !== role) out.push({ op: 'set', projectId, role });
  }
  for (const m of current)
    if (m.via === 'mapping' && !want.has(m.projectId)) out.push({ op: 'remove', projectId: m.projectId });
  return out;
}

/**
 * The operator flag after a login through an external authenticator: the mapping decides when it
 * names operator groups; otherwise only a checker's direct grant can make the user an operator, and
 * an operator made by hand stays one.
 */
export function operatorAfter(current: boolean, mapped: MappedRoles, mapping: RoleMapping): boolean {
  return mapping.operators !== undefined ? mapped.operator : current || mapped.operator;
}

/**
 * The floe user of an external authenticator's subject: the user linked to (authenticator, subject),
 * or a new one named after the subject on the first login. A subject whose name is not a valid floe
 * name, or is taken by another user (a local `admin`, say), is refused with `name_conflict`: it is
 * never linked to a user it did not create.
 */
export async function externalUser(store: Store, success: AuthSuccess): Promise<UsersTable> {
  const find = () =>
    store.db
      .selectFrom('users')
      .selectAll()
      .where('source', '=', success.authenticator)
      .where('external_subject', '=', success.subject)
      .executeTakeFirst();
  const found = await find();
  if (found !== undefined) return found;
  const conflict = (why: string) =>
    new FloeError(
      'name_conflict',
      `the ${success.authenticator} user "${success.subject}" has no floe user yet and cannot get one: ${why}; an operator must rename or remove the other user first`,
      { kind: 'user', name: success.subject, authenticator: success.authenticator },
    );
  if (!NAME.test(success.subject)) throw conflict('its name is not a valid floe user name (a-z, 0-9 and "-")');
  const now = nowIso();
  const profile = profileOf(success);
  const row: UsersTable = {
    id: newId('user'),
    name: success.subject,
    display_name: profile.display_name ?? '',
    email: profile.email ?? null,
    disabled: 0,
    password_hash: null,
    operator: 0,
    created_at: now,
    updated_at: now,
    source: success.authenticator,
    external_subject: success.subject,
  };
  try {
    await store.db.insertInto('users').values(row).execute();
    return row;
  } catch (err) {
    if (!isUniqueViolation(err)) throw err;
    // Another login of the same subject created it meanwhile, or the name belongs to someone else.
    const again = await find();
    if (again !== undefined) return again;
    throw conflict(`the name "${success.subject}" is taken by another user`);
  }
}

/**
 * Bring an external user in line with its authenticator's answer: display name and email, the
 * operator flag and the memberships the mapping gives. True when the user's rights changed.
 */
export async function syncExternalUser(
  store: Store,
  user: UsersTable,
  success: AuthSuccess,
  mapping: RoleMapping,
): Promise<{ user: UsersTable; rightsChanged: boolean }> {
  const mapped = mapRoles(success, mapping);
  return transaction(store, async (trx) => {
    const profile = profileOf(success);
    const operator = operatorAfter(user.operator === 1, mapped, mapping) ? 1 : 0;
    const next: UsersTable = {
      ...user,
      display_name: profile.display_name ?? user.display_name,
      email: profile.email ?? user.email,
      operator,
    };
    const profileChanged = next.display_name !== user.display_name || next.email !== user.email;
    if (profileChanged || operator !== user.operator) {
      next.updated_at = nowIso();
      await trx
        .updateTable('users')
        .set({ display_name: next.display_name, email: next.email, operator, updated_at: next.updated_at })
        .where('id', '=', user.id)
        .execute();
    }
    const changes = await applyMemberships(trx, user.id, mapped);
    return { user: next, rightsChanged: operator !== user.operator || changes > 0 };
  });
}

async function applyMemberships(trx: Db, userId: string, mapped: MappedRoles): Promise<number> {
  const names = Object.keys(mapped.projects);
  const projects =
    names.length === 0
      ? []
      : await trx.selectFrom('projects').select(['id', 'name']).where('name', 'in', names).execute();
  const current = await trx
    .selectFrom('project_members')
    .select(['project_id', 'role', 'via'])
    .where('user_id', '=', userId)
    .execute();
  const changes = membershipChanges(
    mapped,
    current.map((m) => ({ projectId: m.project_id, role: m.role, via: m.via ?? null })),
    new Map(projects.map((p) => [p.name, p.id])),
  );
  for (const c of changes) {
    if (c.op === 'add')
      await trx
        .insertInto('project_members')
        .values({ project_id: c.projectId, user_id: userId, role: c.role, created_at: nowIso(), via: 'mapping' })
        .execute();
    else if (c.op === 'set')
      await trx
        .updateTable('project_members')
        .set({ role: c.role })
        .where('project_id', '=', c.projectId)
        .where('user_id', '=', userId)
        .where('via', '=', 'mapping')
        .execute();
    else
      await trx
        .deleteFrom('project_members')
        .where('project_id', '=', c.projectId)
        .where('user_id', '=', userId)
        .where('via', '=', 'mapping')
        .execute();
  }
  return changes.length;
}
