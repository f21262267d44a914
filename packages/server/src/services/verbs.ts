import { VERBS, type Verb } from '@floe/api';
import type { ProjectRole } from '../auth/types.js';

export type { Verb };

/*
 * What a request does to a project's resources. read: see them, their logs and stats; create: add one
 * to a collection; update: change one; delete: remove one; power: start, stop and restart instances;
 * console: an instance's serial console; manage: the project's members and tokens. Every route's verb
 * is in the policy table (http/policy.ts); the verbs themselves are in @floe/api (VERBS).
 */

/** The verbs each project role allows; the one place that decides it. */
const ALLOWED: Readonly<Record<ProjectRole, ReadonlySet<Verb>>> = {
  owner: new Set<Verb>(VERBS),
  member: new Set<Verb>(VERBS.filter((v) => v !== 'manage')),
  viewer: new Set<Verb>(['read']),
};

/** Whether `role` in a project allows `verb` on that project's resources. */
export function roleAllows(role: ProjectRole, verb: Verb): boolean {
  return ALLOWED[role].has(verb);
}
