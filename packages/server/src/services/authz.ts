import { FloeError } from '@floe/api';
import type { Principal } from './principal.js';

/** True when the principal may use resources of `project`. */
export function canUseProject(principal: Principal, project: string): boolean {
  return principal.admin || principal.projects.has(project);
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
