import { FloeError, type Kind } from '@floe/api';
import type { Db } from '../db/index.js';
import { isIdOf } from '../ids.js';
import type { Principal, PrincipalScope } from '../services/principal.js';
import { notFound, SCOPABLE } from '../services/token-scope.js';
import { idKindOf, kindOf, type RoutePolicy } from './policy.js';

/*
 * A token's scope, checked once per request against the route's policy: the one place that enforces
 * it. A scope only narrows what the token may do otherwise (its projects, its user's roles), which the
 * services check as for any token.
 */

/** What a scope says of a route before any resource is looked at. */
export type ScopeDecision =
  | { readonly allow: true }
  | { readonly refuse: FloeError }
  /** Allowed when the route's `:id` is one of the scoped resources (of this kind). */
  | { readonly checkId: Kind };

/** Decide from the scope and the route's policy alone (pure). */
export function scopeDecision(scope: PrincipalScope, policy: RoutePolicy): ScopeDecision {
  if (scope.verbs !== undefined && !scope.verbs.has(policy.verb))
    return {
      refuse: new FloeError(
        'forbidden',
        `this token may not ${policy.verb}: its scope allows only ${[...scope.verbs].join(', ')}`,
        { verb: policy.verb },
      ),
    };
  const kind = kindOf(policy);
  if (scope.kinds !== undefined && (kind === null || !scope.kinds.has(kind)))
    return {
      refuse: new FloeError(
        'forbidden',
        `this token may not use ${kind === null ? 'this route' : `${kind} resources`}: its scope allows only ${[...scope.kinds].join(', ')}`,
        kind === null ? {} : { kind },
      ),
    };
  if (scope.resources === undefined) return { allow: true };
  const idKind = idKindOf(policy);
  if (idKind === null)
    return {
      refuse: new FloeError(
        'forbidden',
        'this token is limited to single resources: it may not list, create or use routes without a resource',
      ),
    };
  return { checkId: idKind };
}

/** The id a route's `:id` names in `project`, or null when it names nothing there. */
async function idOf(db: Db, kind: Kind, ref: string, project: string): Promise<string | null> {
  if (isIdOf(kind, ref)) return ref;
  if (!(kind in SCOPABLE)) return null;
  const table = SCOPABLE[kind as keyof typeof SCOPABLE];
  const row = await db
    .selectFrom(table)
    .select('id')
    .where('name', '=', ref)
    .where('project', '=', project)
    .executeTakeFirst();
  return row?.id ?? null;
}

/**
 * Whether the request reads an operation this very token started: whatever its scope, a token may follow
 * (`GET`, also with `?wait`) what it did, so a CI token limited to restarting one instance can wait for
 * the restart to finish. Cancelling stays a verb of its own.
 */
async function readsOwnOperation(db: Db, principal: Principal, policy: RoutePolicy, params: unknown): Promise<boolean> {
  if (policy.target !== 'operation' || policy.verb !== 'read') return false;
  const ref = (params as { id?: unknown } | undefined)?.id;
  if (typeof ref !== 'string' || !isIdOf('operation', ref)) return false;
  const row = await db.selectFrom('operations').select('created_by').where('id', '=', ref).executeTakeFirst();
  return row?.created_by === principal.actor;
}

/**
 * Refuse a request its principal's scope does not allow: 403 `forbidden` for a verb or kind outside
 * the scope (and for lists and creates of a token limited to single resources), and for a resource
 * outside it the same not-found answer as for a resource of another project.
 */
export async function enforceScope(
  db: Db,
  principal: Principal,
  policy: RoutePolicy,
  params: unknown,
  query: unknown,
): Promise<void> {
  if (principal.scope === undefined) return;
  if (await readsOwnOperation(db, principal, policy, params)) return;
  const decision = scopeDecision(principal.scope, policy);
  if ('allow' in decision) return;
  if ('refuse' in decision) throw decision.refuse;
  const kind = decision.checkId;
  const ref = (params as { id?: unknown } | undefined)?.id;
  const fromQuery = (query as { project?: unknown } | undefined)?.project;
  const project = typeof fromQuery === 'string' ? fromQuery : 'default';
  if (typeof ref === 'string') {
    const id = await idOf(db, kind, ref, project);
    if (id !== null && principal.scope.resources?.has(id) === true) return;
  }
  throw notFound(kind, String(ref));
}
