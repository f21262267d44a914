import type { Kind } from '@floe/api';
import type { ProjectRole } from '../auth/types.js';
import type { Verb } from './verbs.js';

/**
 * A token's scope: what it may do beyond its projects and its user's roles (each absent part limits
 * nothing). Checked once per request against the route's policy (http/scope.ts).
 */
export interface PrincipalScope {
  readonly kinds?: ReadonlySet<Kind>;
  /** Ids of the only resources whose routes (`:id`) the token may call. */
  readonly resources?: ReadonlySet<string>;
  readonly verbs?: ReadonlySet<Verb>;
}

/** Who is asking: resolved from the bearer token. */
export interface Principal {
  /** Token id, or "system" / "agent:<host>" for internal callers. */
  readonly actor: string;
  /** Operator (admin token, or a personal token of an operator user): every project and the global resources. */
  readonly admin: boolean;
  /** Projects a non-admin may see (by name). Ignored for admins. */
  readonly projects: ReadonlySet<string>;
  /**
   * The role in each project of `projects` (by name). A project without an entry is a project token's
   * grant, which allows everything on the project's resources (`member`).
   */
  readonly roles?: ReadonlyMap<string, ProjectRole>;
  /** The user a personal token belongs to (its id), or absent. */
  readonly user?: string;
  /** That user's name, as the audit log records it (for an external checker's caller: its subject). */
  readonly userName?: string;
  /** The authenticator that vouched for the caller of this one request (an external checker); absent for tokens. */
  readonly authenticator?: string;
  /** What the request does (set per request from its route's policy); absent means an update. */
  readonly verb?: Verb;
  /** The token's scope, when it has one. */
  readonly scope?: PrincipalScope;
}
