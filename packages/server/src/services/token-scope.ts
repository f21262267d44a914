import { FloeError, type ErrorCode, type Kind, type TokenScope } from '@floe/api';
import type { Db } from '../db/index.js';
import { isIdOf } from '../ids.js';

/** Kinds whose resources a token's scope may name one by one (by name or id): named resources of a project, with their tables. */
export const SCOPABLE = {
  instance: 'instances',
  image: 'images',
  network: 'networks',
  security_group: 'security_groups',
} as const;
type Scopable = keyof typeof SCOPABLE;
const isScopable = (k: Kind): k is Scopable => k in SCOPABLE;

/** The not-found error of each kind a route's `:id` or a scope's resource may name. */
const NOT_FOUND: Partial<Record<Kind, ErrorCode>> = {
  project: 'project_not_found',
  token: 'token_not_found',
  user: 'user_not_found',
  host: 'host_not_found',
  image: 'image_not_found',
  machine_type: 'machine_type_not_found',
  instance: 'instance_not_found',
  network: 'network_not_found',
  nic: 'nic_not_found',
  security_group: 'security_group_not_found',
  vpn_pool: 'vpn_pool_not_found',
  vpn_network: 'vpn_network_not_found',
  vpn_peer: 'vpn_peer_not_found',
  floating_ip: 'floating_ip_not_found',
  port_forward: 'port_forward_not_found',
  operation: 'operation_not_found',
};

/** `<kind> "<ref>" not found`, as the services answer for a missing resource or one of another project. */
export function notFound(kind: Kind, ref: string): FloeError {
  return new FloeError(NOT_FOUND[kind] ?? 'not_found', `${kind} "${ref}" not found`, { kind, id: ref });
}

const invalid = (message: string) => new FloeError('validation_failed', message, { field: 'scope.resources' });

/**
 * The kind a scoped resource reference names: the kind of its id, or for a name the one kind the
 * scope names (a name alone says nothing of its kind).
 */
function kindOfRef(ref: string, kinds: readonly Kind[] | undefined): Scopable {
  const byId = (Object.keys(SCOPABLE) as Scopable[]).find((k) => isIdOf(k, ref));
  if (byId !== undefined) {
    if (kinds !== undefined && !kinds.includes(byId))
      throw invalid(`resource "${ref}" is a ${byId}, which the scope's kinds leave out`);
    return byId;
  }
  const named = (kinds ?? []).filter(isScopable);
  if (kinds === undefined || kinds.length !== 1 || named.length !== 1)
    throw invalid(
      `resource "${ref}" is a name: name exactly one kind of ${Object.keys(SCOPABLE).join(', ')} in the scope, or give ids`,
    );
  return named[0]!;
}

/**
 * A scope as stored: resources given by name or id resolved to the ids of resources of `project` (the
 * token's one project), in the transaction that creates the token. An unknown resource is its kind's
 * not-found error; resources need exactly one project.
 */
export async function resolveScope(
  db: Db,
  scope: TokenScope | undefined,
  project: string | null,
): Promise<TokenScope | null> {
  if (scope === undefined) return null;
  if (scope.resources === undefined) return scope;
  if (project === null)
    throw invalid('a token limited to resources needs exactly one project (projects), in which they are');
  const ids: string[] = [];
  for (const ref of scope.resources) {
    const kind = kindOfRef(ref, scope.kinds);
    const row = await db
      .selectFrom(SCOPABLE[kind])
      .select('id')
      .where(isIdOf(kind, ref) ? 'id' : 'name', '=', ref)
      .where('project', '=', project)
      .executeTakeFirst();
    if (row === undefined) throw notFound(kind, ref);
    ids.push(row.id);
  }
  return { ...scope, resources: [...new Set(ids)] };
}
