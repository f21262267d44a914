import type { ProjectRole } from '../auth/types.js';

/**
 * What a request does to a project's resources. read: see them, their logs and stats; write: create,
 * change and delete them; power: start, stop and restart instances; console: an instance's serial
 * console; manage: the project's members and tokens.
 */
export type Verb = 'read' | 'write' | 'console' | 'power' | 'manage';

/** The verbs each project role allows; the one place that decides it. */
const ALLOWED: Readonly<Record<ProjectRole, ReadonlySet<Verb>>> = {
  owner: new Set<Verb>(['read', 'write', 'console', 'power', 'manage']),
  member: new Set<Verb>(['read', 'write', 'console', 'power']),
  viewer: new Set<Verb>(['read']),
};

/** Whether `role` in a project allows `verb` on that project's resources. */
export function roleAllows(role: ProjectRole, verb: Verb): boolean {
  return ALLOWED[role].has(verb);
}

/**
 * The verb of a request when its route names none: reads for GET and HEAD, writes otherwise.
 * Routes whose method says too little (console, power actions) name their verb themselves.
 */
export function verbOfMethod(method: string): Verb {
  return method === 'GET' || method === 'HEAD' ? 'read' : 'write';
}
