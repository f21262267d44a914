import { FloeError } from '@floe/api';
import type { ExternalChecker } from '../auth/checker.js';
import { mapRoles, type RoleMapping } from '../auth/roles.js';
import type { AuthNoter } from '../services/audit-note.js';
import type { Principal } from '../services/principal.js';

/** An external checker that decides every request whose `Authorization` header is not a floe token. */
export interface CheckerWiring {
  readonly checker: ExternalChecker;
  /** Groups the checker names → floe roles (the `roles` of the auth configuration). */
  readonly roles: RoleMapping;
}

/** What the checker is told about a request: its header, method, URL and route parameters. */
export interface CheckedRequest {
  readonly authorization: string;
  readonly method: string;
  readonly url: string;
  readonly params: unknown;
  readonly query: unknown;
}

/** True for `Authorization: Bearer floe_...`: floe's own tokens, which floe checks itself. */
export function isFloeBearer(header: string): boolean {
  return /^Bearer floe_/i.test(header);
}

/** A string parameter of a (not yet validated) query or path, else undefined (absent, repeated, or too long). */
function textParam(from: unknown, key: string): string | undefined {
  const v = (from as Record<string, unknown> | null | undefined)?.[key];
  return typeof v === 'string' && v.length > 0 && v.length <= 256 ? v : undefined;
}

/**
 * The caller of one request as an external checker decides it (Kraut Computing's design: floe hands
 * the opaque header with the method, path, project and resource to the operator's checker). Allowed:
 * a principal named `checker:<authenticator>:<subject>`, an operator when its roles say so, with the
 * projects and roles of the checker's grants and of its groups under the role mapping. Denied:
 * `unauthenticated`. The checker down or answering nonsense: `authenticator_unavailable` (503), never
 * a pass. The project is the request's `project` query parameter (default `default`), the resource
 * its `:id` path parameter; the checker caches its answers briefly per header and request.
 */
export async function principalFromChecker(
  wiring: CheckerWiring,
  request: CheckedRequest,
  note?: AuthNoter,
): Promise<Principal> {
  const resource = textParam(request.params, 'id');
  const result = await wiring.checker.check({
    authorization: request.authorization,
    method: request.method,
    path: request.url.split('?')[0]!,
    project: textParam(request.query, 'project') ?? 'default',
    ...(resource !== undefined ? { resource } : {}),
  });
  if (!result.ok) {
    const unavailable = result.reason === 'unavailable';
    note?.({ failure: unavailable ? 'unavailable' : 'denied', authenticator: result.authenticator });
    if (unavailable)
      throw new FloeError('authenticator_unavailable', 'the external checker cannot be asked; try again later', {
        authenticator: result.authenticator,
      });
    throw new FloeError('unauthenticated', 'the external checker refused this request');
  }
  const mapped = mapRoles(result, wiring.roles);
  const roles = new Map(Object.entries(mapped.projects));
  return Object.freeze({
    actor: `checker:${result.authenticator}:${result.subject}`,
    admin: mapped.operator,
    projects: new Set(roles.keys()),
    roles,
    userName: result.subject,
    authenticator: result.authenticator,
  });
}
