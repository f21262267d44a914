import type { AuthContext, AuthFailure, AuthResult, Authenticator } from './types.js';

/** Where the chain reports each authenticator's answer (never the password). */
export type AuthChainLog = (entry: { authenticator: string; outcome: string; detail?: string }) => void;

/**
 * The operator's authenticators, asked in their configured order.
 *
 * - The first definitive answer wins: a success, or a refusal of a user the
 *   authenticator knows (`bad_credentials`, `denied`). Later entries are not asked.
 * - `unknown_user` and `unavailable` fall through to the next entry.
 * - When no entry answers definitively the chain fails closed: `unavailable`
 *   if any entry was unavailable (the user may exist in the backend that was
 *   down, so the caller can answer 503 rather than 401), else `unknown_user`.
 * - An authenticator that throws counts as `unavailable`.
 */
export class AuthChain {
  constructor(
    private readonly authenticators: readonly Authenticator[],
    private readonly log: AuthChainLog = () => {},
  ) {
    if (authenticators.length === 0) throw new Error('an authentication chain needs at least one authenticator');
  }

  /** Check a username and password against each authenticator in turn. */
  async verifyPassword(username: string, password: string, ctx: AuthContext = {}): Promise<AuthResult> {
    let unavailable: AuthFailure | undefined;
    let last: AuthFailure | undefined;
    for (const a of this.authenticators) {
      let result: AuthResult;
      try {
        result = await a.verifyPassword(username, password, ctx);
      } catch (err) {
        result = {
          ok: false,
          authenticator: a.name,
          reason: 'unavailable',
          detail: err instanceof Error ? err.name : 'error',
        };
      }
      this.log({
        authenticator: a.name,
        outcome: result.ok ? 'ok' : result.reason,
        ...(!result.ok && result.detail !== undefined ? { detail: result.detail } : {}),
      });
      if (result.ok || result.reason === 'bad_credentials' || result.reason === 'denied') return result;
      if (result.reason === 'unavailable') unavailable ??= result;
      last = result;
    }
    return unavailable ?? last!;
  }

  /** The authenticators, in order (the routes of OpenID logins and the per-request checker pick theirs from here). */
  get entries(): readonly Authenticator[] {
    return this.authenticators;
  }

  /** Close every authenticator. */
  async close(): Promise<void> {
    await Promise.all(this.authenticators.map(async (a) => a.close?.()));
  }
}
