import type { AuthSuccess, ProjectRole, RoleGrant } from './types.js';

/** The operator's mapping from backend groups to floe roles (part of the auth configuration). */
export interface RoleMapping {
  /** Members of any of these groups are operators. */
  readonly operators?: readonly string[];
  /** Per project: which groups make a user its owner, member or viewer. */
  readonly projects?: readonly {
    readonly project: string;
    readonly owner?: readonly string[];
    readonly member?: readonly string[];
    readonly viewer?: readonly string[];
  }[];
}

/** What a user may be, after mapping: operator or not, and one role per project. */
export interface MappedRoles {
  readonly operator: boolean;
  /** Project name → the highest role any of the user's groups (or grants) gives there. */
  readonly projects: Readonly<Record<string, ProjectRole>>;
}

const RANK: Record<ProjectRole, number> = { owner: 3, member: 2, viewer: 1 };

// Group names compare case-insensitively: LDAP DNs and most directory group
// names do, and an operator's `CN=Admins` should match a server's `cn=admins`.
const norm = (g: string): string => g.trim().toLowerCase();

/**
 * The roles a user's groups (and any roles an external checker granted
 * directly) give under the operator's mapping. A user in several groups gets
 * the highest role per project; groups the mapping does not name give nothing.
 * Pure: the same input always maps to the same roles.
 */
export function mapRoles(
  who: Pick<AuthSuccess, 'groups'> & { readonly roles?: readonly RoleGrant[] },
  mapping: RoleMapping,
): MappedRoles {
  const groups = new Set(who.groups.map(norm));
  const has = (list: readonly string[] | undefined): boolean => (list ?? []).some((g) => groups.has(norm(g)));
  let operator = has(mapping.operators);
  const projects: Record<string, ProjectRole> = Object.create(null) as Record<string, ProjectRole>;
  const grant = (project: string, role: ProjectRole): void => {
    const current = projects[project];
    if (current === undefined || RANK[role] > RANK[current]) projects[project] = role;
  };
  for (const p of mapping.projects ?? []) {
    for (const role of ['owner', 'member', 'viewer'] as const) if (has(p[role])) grant(p.project, role);
  }
  for (const r of who.roles ?? []) {
    if (r.role === 'operator') operator = true;
    else grant(r.project, r.role);
  }
  return { operator, projects: { ...projects } };
}
