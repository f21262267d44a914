import { ExternalChecker } from './auth/checker.js';
import { OidcAuthenticator } from './auth/oidc.js';
import type { RoleMapping } from './auth/roles.js';
import type { Services } from './wiring.js';
import type { CheckerWiring } from './http/checker-auth.js';
import type { OidcLoginDeps } from './services/oidc-logins.js';

/** How requests and logins reach authenticators other than the password chain. */
export interface AuthWiring {
  /** OpenID logins over HTTP (`/v1/auth/oidc/...`); without it those routes know no authenticator. */
  readonly oidc?: OidcLoginDeps;
  /** Decides each request whose Authorization header is not a floe token; without it such requests are 401. */
  readonly checker?: CheckerWiring;
}

/**
 * What the configured chain offers besides password logins: its OpenID Connect entries become the
 * `/v1/auth/oidc/{name}` logins, and its first external checker decides each request whose
 * Authorization header is not a floe token. Both make users and sessions as password logins do.
 */
export function authWiringOf(services: Services, roles: RoleMapping): AuthWiring {
  const oidc = new Map<string, OidcAuthenticator>();
  let checker: ExternalChecker | undefined;
  for (const a of services.authChain.entries) {
    if (a instanceof OidcAuthenticator) oidc.set(a.name, a);
    if (a instanceof ExternalChecker) checker ??= a;
  }
  return {
    oidc: { authenticators: oidc, completeLogin: (success, ctx) => services.logins.completeLogin(success, ctx) },
    ...(checker !== undefined ? { checker: { checker, roles } } : {}),
  };
}
