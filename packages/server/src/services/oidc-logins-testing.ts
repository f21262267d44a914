import { FloeError } from '@floe/api';
import type { Services } from '../wiring.js';
import type { CompleteLogin } from './oidc-logins.js';
import type { Principal } from './principal.js';

const OPERATOR: Principal = { actor: 'test-login', admin: true, projects: new Set() };

/**
 * For tests, what the login service does with floe's own services: the user the authenticator named
 * (its username, else its subject) is made on first login and gets a real personal token valid for a
 * day. `calls` records each subject it was asked for.
 */
export function completeLoginForTests(s: Services, calls: string[] = []): CompleteLogin {
  return async (success, ctx) => {
    calls.push(success.subject);
    const name = (success as { username?: string }).username ?? success.subject;
    const user = await s.users.get(OPERATOR, name).catch(async (err: unknown) => {
      if (err instanceof FloeError && err.code === 'user_not_found')
        return s.users.create(OPERATOR, { name, email: success.email ?? null });
      throw err;
    });
    const created = await s.tokens.create(
      OPERATOR,
      { name: ctx.sessionName ?? 'oidc-session', user: name, expires_in_days: 1 },
      () => Promise.reject(new FloeError('validation_failed', 'a session names no projects')),
    );
    return { token: created.secret, session: created.token, user };
  };
}
