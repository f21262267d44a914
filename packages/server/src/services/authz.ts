import { FloeError } from '@floe/api';
import type { ProjectRole } from '../auth/types.js';
import type { Principal } from './principal.js';
import { roleAllows, type Verb } from './verbs.js';

/** The principal's role in `project`, or null when it may not see the project at all (admins: null too). */
function roleIn(principal: Principal, project: string): ProjectRole | null {
  if (!principal.projects.has(project)) return null;
  return principal.roles?.get(project) ?? 'member';
}

/**
 * Whether the principal may do `verb` (by default the verb of its request) to the resources of `project`.
 * False when it may not see the project: the caller answers not-found, as for a missing resource. When it
 * sees the project but its role does not allow the verb (a viewer deleting), `forbidden` is thrown.
 */
export function authorize(principal: Principal, project: string, verb: Verb = principal.verb ?? 'update'): boolean {
  if (principal.admin) return true;
  const role = roleIn(principal, project);
  if (role === null) return false;
  if (!roleAllows(role, verb))
    throw new FloeError('forbidden', `a ${role} of project "${project}" may not ${verb} its resources`, {
      project,
      role,
      verb,
    });
  return true;
}

/** True when the principal may use resources of `project` for its request (see authorize). */
export function canUseProject(principal: Principal, project: string): boolean {
  return authorize(principal, project);
}

/** Projects a principal may list in, or null for all (admins). */
export function visibleProjects(principal: Principal, requested?: string): readonly string[] | null {
  if (requested !== undefined) return canUseProject(principal, requested) ? [requested] : [];
  return principal.admin ? null : [...principal.projects];
}

/** Only admins pass. */
export function requireAdmin(principal: Principal, what: string): void {
  if (!principal.admin) throw new FloeError('forbidden', `only an admin token may ${what}`);
}

/** The principal as it asks for one request: the same rights, doing `verb`. */
export function withVerb(principal: Principal, verb: Verb): Principal {
  return Object.freeze({ ...principal, verb });
}

/** Admins and owners of `project` pass; others are forbidden to do `what`. */
export function requireOwner(principal: Principal, project: string, what: string): void {
  if (principal.admin) return;
  if (roleIn(principal, project) !== 'owner')
    throw new FloeError('forbidden', `only an owner of project "${project}" (or an admin) may ${what}`, { project });
}
