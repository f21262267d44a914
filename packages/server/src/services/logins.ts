import { FloeError, type LoginRequest, type Token, type User } from '@floe/api';
import type { AuthChain } from '../auth/chain.js';
import type { AuthConfig } from '../auth/config.js';
import { verifySecondFactor } from '../auth/totp.js';
import type { AuthSuccess } from '../auth/types.js';
import { nowIso } from '../db/index.js';
import type { UsersTable } from '../db/schema.js';
import { newId } from '../ids.js';
import type { LoginNote } from './audit-note.js';
import type { Principal, ServiceContext } from './context.js';
import { externalUser, syncExternalUser } from './login-provision.js';
import { DbTotpStore } from './login-stores.js';
import { LoginThrottle } from './login-throttle.js';
import { hashSecret, newSecret, type TokenService } from './tokens.js';
import type { UserService } from './users.js';

/** The control plane itself, for reads on behalf of a login (which has no token yet). */
const SYSTEM: Principal = Object.freeze({ actor: 'system', admin: true, projects: new Set<string>() });

/** What a login answers: the session token's secret (once), the session and the user. */
export interface LoginResult {
  readonly token: string;
  readonly session: Token;
  readonly user: User;
}

/** Facts about a login attempt. */
export interface LoginContext {
  readonly remoteAddress?: string;
  readonly sessionName?: string;
  /** Aborted when the caller gave up. */
  readonly signal?: AbortSignal;
}

/** The one refusal of a login, whatever the cause: unknown user, wrong password or code, disabled user. */
function invalidCredentials(): FloeError {
  return new FloeError('invalid_credentials', 'the username, password or code is wrong');
}

/**
 * Password logins: the authenticator chain says who the caller is, this service makes that a floe
 * user (provisioned and synced for external authenticators), asks for the second factor when the user
 * has one, and issues a session token. Failed attempts are counted per username and per address and
 * lock them out for a while (see LoginThrottle).
 */
export class LoginService {
  private readonly throttle: LoginThrottle;
  private readonly localNames: ReadonlySet<string>;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly chain: AuthChain,
    private readonly auth: AuthConfig,
    private readonly tokens: TokenService,
    private readonly users: UserService,
    now: () => number = Date.now,
  ) {
    this.throttle = new LoginThrottle(ctx.config.loginLockout, now);
    this.localNames = new Set(auth.chain.filter((e) => e.kind === 'local').map((e) => e.name ?? e.kind));
  }

  /**
   * Check a username, password and (when the user has TOTP) code; answer a session token. `note` hears
   * what the audit log should record, also when the login fails.
   */
  async login(body: LoginRequest, ctx: LoginContext, note: (n: LoginNote) => void = () => {}): Promise<LoginResult> {
    const failed = (n: Omit<LoginNote, 'action'>, action: LoginNote['action'] = 'auth.login_failed') =>
      note({ action, ...n });
    const locked = this.throttle.check(body.username, ctx.remoteAddress);
    if (locked !== null) {
      failed({ reason: `locked_out_${locked.key}` });
      throw new FloeError('rate_limited', `too many failed logins; retry in ${locked.retryAfterS} s`, {
        retry_after_s: locked.retryAfterS,
      });
    }
    const result = await this.chain.verifyPassword(body.username, body.password, {
      ...(ctx.remoteAddress !== undefined ? { remoteAddress: ctx.remoteAddress } : {}),
      ...(ctx.signal !== undefined ? { signal: ctx.signal } : {}),
    });
    if (!result.ok) {
      failed({ authenticator: result.authenticator, reason: result.reason });
      if (result.reason === 'unavailable')
        throw new FloeError('auth_unavailable', 'the authentication backend did not answer; try again later');
      this.throttle.fail(body.username, ctx.remoteAddress);
      throw invalidCredentials();
    }
    const user = await this.userOf(result).catch((err: unknown) => {
      failed({ authenticator: result.authenticator, reason: err instanceof FloeError ? err.code : 'error' });
      throw err;
    });
    const who = { id: user.id, name: user.name };
    if (user.disabled === 1) {
      failed({ authenticator: result.authenticator, reason: 'disabled', user: who });
      this.throttle.fail(body.username, ctx.remoteAddress);
      throw invalidCredentials();
    }
    const totp = new DbTotpStore(this.ctx.store.db);
    if ((await totp.get(user.id)) !== null) {
      if (body.totp_code === undefined) {
        failed({ authenticator: result.authenticator, reason: 'totp_required', user: who });
        throw new FloeError('totp_required', 'this user has TOTP: send the login again with totp_code');
      }
      const second = await verifySecondFactor(totp, user.id, body.totp_code);
      if (!second.ok) {
        failed({ authenticator: result.authenticator, reason: second.reason, user: who }, 'auth.totp_failed');
        this.throttle.fail(body.username, ctx.remoteAddress);
        throw invalidCredentials();
      }
    }
    this.throttle.succeed(body.username);
    const done = await this.finish(user, result, ctx);
    note({ action: 'auth.login', authenticator: result.authenticator, user: who, tokenId: done.session.id });
    return done;
  }

  /**
   * Turn an authenticator's success into a floe user and a session: the local user of that name, or
   * the user linked to an external authenticator's subject (created on its first login, its profile,
   * operator flag and mapped memberships synced on every login). A disabled user is refused with
   * `invalid_credentials`. Asks for no second factor: callers that need one (password logins) check
   * it before.
   */
  async completeLogin(success: AuthSuccess, ctx: LoginContext): Promise<LoginResult> {
    const user = await this.userOf(success);
    if (user.disabled === 1) throw invalidCredentials();
    return this.finish(user, success, ctx);
  }

  /** Revoke the caller's session token; other tokens are revoked with `floe token revoke`. */
  async logout(principal: Principal): Promise<void> {
    const row = await this.ctx.store.db
      .selectFrom('tokens')
      .select(['id', 'kind'])
      .where('id', '=', principal.actor)
      .executeTakeFirst();
    if (row?.kind !== 'session')
      throw new FloeError(
        'invalid_state',
        'this token is not a login session; revoke API tokens with `floe token revoke` (DELETE /v1/tokens/{id})',
      );
    await this.tokens.revoke(SYSTEM, row.id);
  }

  /** The floe user an authenticator's answer stands for (created on an external user's first login). */
  private async userOf(success: AuthSuccess): Promise<UsersTable> {
    if (!this.localNames.has(success.authenticator)) return externalUser(this.ctx.store, success);
    const row = await this.ctx.store.db
      .selectFrom('users')
      .selectAll()
      .where('name', '=', success.subject)
      .where('source', 'is', null)
      .executeTakeFirst();
    // Deleted between the password check and here: as if it had never existed.
    if (row === undefined) throw invalidCredentials();
    return row;
  }

  private async finish(user: UsersTable, success: AuthSuccess, ctx: LoginContext): Promise<LoginResult> {
    if (!this.localNames.has(success.authenticator)) {
      const synced = await syncExternalUser(this.ctx.store, user, success, this.auth.roles);
      user = synced.user;
      // Cached rights of the user's other tokens are read again on every control plane.
      if (synced.rightsChanged)
        await this.ctx.bus.publish({
          type: 'user.roles_synced',
          project: null,
          kind: 'user',
          resource_id: user.id,
          data: { name: user.name, authenticator: success.authenticator },
        });
    }
    const secret = newSecret();
    const id = newId('token');
    await this.ctx.store.db
      .insertInto('tokens')
      .values({
        id,
        name: ctx.sessionName ?? 'login',
        secret_hash: hashSecret(secret),
        admin: user.operator,
        created_at: nowIso(),
        expires_at: new Date(Date.now() + this.ctx.config.sessionTtlMs).toISOString(),
        last_used_at: null,
        revoked_at: null,
        user_id: user.id,
        kind: 'session',
      })
      .execute();
    return {
      token: secret,
      session: await this.tokens.get(SYSTEM, id),
      user: await this.users.get(SYSTEM, user.id),
    };
  }
}
