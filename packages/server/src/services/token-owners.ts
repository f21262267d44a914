import { FloeError, type TokenCreate } from '@floe/api';
import type { Db } from '../db/index.js';
import type { Principal } from './context.js';

/**
 * Project tokens of owners. A user who is `owner` of projects issues and manages project tokens
 * (tokens of nobody) granted only projects it owns; they are the projects', not the user's, so they
 * keep working when the user leaves. A project token granted any project the caller does not own stays
 * hidden from it (404, as a token that does not exist).
 */

/** The names of the projects the principal owns (by its user's role there); none for admins and tokens of nobody. */
function ownedProjects(principal: Principal): string[] {
  if (principal.admin || principal.user === undefined || principal.roles === undefined) return [];
  // A token with a scope manages no tokens but its user's own.
  if (principal.scope !== undefined) return [];
  return [...principal.roles].flatMap(([name, role]) => (role === 'owner' ? [name] : []));
}

/**
 * Whether a create asks for a project token of an owner (rather than a personal token), after checking
 * the request may be one: no user, no admin, at least one project, from a user's token. Ownership of
 * the projects is checked once they are resolved (`checkOwned`), so an unknown project is a 404 first.
 */
export function ownerProjectToken(principal: Principal, body: TokenCreate): boolean {
  if (body.project_token !== true) return false;
  if (body.user !== undefined)
    throw new FloeError('validation_failed', 'a project token belongs to nobody: give no user', { field: 'user' });
  if (body.admin === true)
    throw new FloeError('validation_failed', 'a project token is not an admin token', { field: 'admin' });
  if ((body.projects ?? []).length === 0)
    throw new FloeError('validation_failed', 'a project token needs at least one project', { field: 'projects' });
  if (principal.admin) return false;
  if (principal.user === undefined)
    throw new FloeError('forbidden', 'only admins and owners of the projects may create project tokens');
  return true;
}

/** `forbidden` unless the principal owns every project (by id). */
export async function checkOwned(db: Db, principal: Principal, projectIds: readonly string[]): Promise<void> {
  if (projectIds.length === 0) return;
  const owned = new Set(ownedProjects(principal));
  const rows = await db
    .selectFrom('projects')
    .select('name')
    .where('id', 'in', [...projectIds])
    .execute();
  const notOwned = rows.filter((r) => !owned.has(r.name)).map((r) => r.name);
  if (notOwned.length > 0 || rows.length !== projectIds.length)
    throw new FloeError(
      'forbidden',
      `only an owner of the project may create its project tokens: ${notOwned.join(', ')}`,
    );
}

/** The ids of the projects the principal owns. */
export async function ownedProjectIds(db: Db, principal: Principal): Promise<string[]> {
  const names = ownedProjects(principal);
  if (names.length === 0) return [];
  const rows = await db.selectFrom('projects').select('id').where('name', 'in', names).execute();
  return rows.map((r) => r.id);
}
