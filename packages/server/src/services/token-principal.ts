import { TokenScope } from '@floe/api';
import { Compile } from 'typebox/compile';
import type { ProjectRole } from '../auth/types.js';
import type { Db } from '../db/index.js';
import type { TokensTable } from '../db/schema.js';
import type { Principal, PrincipalScope } from './principal.js';

const checkScope = Compile(TokenScope);

/**
 * A token's stored scope: absent (null), what it allows, or `invalid` when the text is not one (the
 * token is then refused rather than taken as unlimited).
 */
export function parseScope(text: string | null): TokenScope | null | 'invalid' {
  if (text === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'invalid';
  }
  return checkScope.Check(value) ? value : 'invalid';
}

function principalScope(scope: TokenScope): PrincipalScope {
  return Object.freeze({
    ...(scope.kinds === undefined ? {} : { kinds: new Set(scope.kinds) }),
    ...(scope.resources === undefined ? {} : { resources: new Set(scope.resources) }),
    ...(scope.verbs === undefined ? {} : { verbs: new Set(scope.verbs) }),
  });
}

/**
 * What a token may do now, or null when it may do nothing (its user is gone or disabled).
 *
 * A project token (no user) is an admin, or may use the projects of its grants with every verb.
 * A personal token has at most its user's rights, read at the time of the request: it is an operator
 * only when both the token is an admin token and the user an operator; otherwise it reaches the
 * projects the user is a member of (only those of its grants, when it has grants), each with the
 * user's role there. An operator's non-admin token reaches its grants, as a project token does.
 * A token with a scope has it too, and it only narrows all of this (checked per request, http/scope.ts);
 * a scope that cannot be read refuses the token.
 */
export async function principalOfToken(db: Db, row: TokensTable): Promise<Principal | null> {
  const stored = parseScope(row.scope);
  if (stored === 'invalid') return null;
  const principal = await unscoped(db, row);
  if (principal === null || stored === null) return principal;
  return Object.freeze({ ...principal, scope: principalScope(stored) });
}

async function unscoped(db: Db, row: TokensTable): Promise<Principal | null> {
  // An admin token's grants do not matter: it is not asked for them (nor does it wait on the projects table).
  const grantsOf = async () => {
    const grants = await db
      .selectFrom('token_projects')
      .innerJoin('projects', 'projects.id', 'token_projects.project_id')
      .select('projects.name')
      .where('token_projects.token_id', '=', row.id)
      .execute();
    return new Set(grants.map((g) => g.name));
  };
  if (row.user_id === null) {
    const admin = row.admin === 1;
    return Object.freeze({ actor: row.id, admin, projects: admin ? new Set<string>() : await grantsOf() });
  }
  const user = await db
    .selectFrom('users')
    .select(['id', 'name', 'disabled', 'operator'])
    .where('id', '=', row.user_id)
    .executeTakeFirst();
  if (user === undefined || user.disabled === 1) return null;
  const operator = user.operator === 1;
  if (operator && row.admin === 1)
    return Object.freeze({
      actor: row.id,
      admin: true,
      projects: new Set<string>(),
      user: user.id,
      userName: user.name,
    });
  const granted = await grantsOf();
  if (operator)
    return Object.freeze({ actor: row.id, admin: false, projects: granted, user: user.id, userName: user.name });
  const memberships = await db
    .selectFrom('project_members')
    .innerJoin('projects', 'projects.id', 'project_members.project_id')
    .select(['projects.name', 'project_members.role'])
    .where('project_members.user_id', '=', user.id)
    .execute();
  const roles = new Map<string, ProjectRole>();
  for (const m of memberships) if (granted.size === 0 || granted.has(m.name)) roles.set(m.name, m.role);
  await addDescendants(db, roles);
  return Object.freeze({
    actor: row.id,
    admin: false,
    projects: new Set(roles.keys()),
    roles,
    user: user.id,
    userName: user.name,
  });
}

/**
 * Members of a project see its sub-projects, all levels down, as viewers (they do not own them): a
 * sub-project the user is a member of directly keeps that role.
 */
async function addDescendants(db: Db, roles: Map<string, ProjectRole>): Promise<void> {
  if (roles.size === 0) return;
  const children = await db
    .selectFrom('projects as c')
    .innerJoin('projects as p', 'p.id', 'c.parent_id')
    .select(['c.name as child', 'p.name as parent'])
    .execute();
  if (children.length === 0) return;
  const byParent = new Map<string, string[]>();
  for (const c of children) byParent.set(c.parent, [...(byParent.get(c.parent) ?? []), c.child]);
  const queue = [...roles.keys()];
  const seen = new Set(queue);
  while (queue.length > 0) {
    for (const child of byParent.get(queue.shift()!) ?? []) {
      if (seen.has(child)) continue;
      seen.add(child);
      if (!roles.has(child)) roles.set(child, 'viewer');
      queue.push(child);
    }
  }
}
