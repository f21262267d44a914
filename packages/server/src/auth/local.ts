import { DEFAULT_ARGON2_PARAMS, hashPassword, needsRehash, verifyPassword, type Argon2Params } from './passwords.js';
import { plausibleUsername, type AuthContext, type AuthResult, type Authenticator } from './types.js';

/** A user with a local password, as the user store keeps it. */
export interface LocalUserRecord {
  readonly subject: string;
  /** argon2id PHC string. */
  readonly passwordHash: string;
  readonly displayName?: string;
  readonly email?: string;
  readonly groups?: readonly string[];
}

/** Where local password hashes live (the users table later; a map in tests). */
export interface LocalUserStore {
  /** The user by login name, or null; throws when the store cannot answer. */
  find(username: string): Promise<LocalUserRecord | null>;
  /** Replace a hash made with old costs after a successful login; optional. */
  updatePasswordHash?(subject: string, passwordHash: string): Promise<void>;
}

/**
 * Local passwords hashed with argon2id. An unknown user costs one argon2
 * verification against a dummy hash, like a wrong password, so the time of a
 * refusal does not tell whether the user exists.
 */
export class LocalAuthenticator implements Authenticator {
  readonly kind = 'local';
  private dummyHash: Promise<string> | undefined;

  constructor(
    private readonly store: LocalUserStore,
    readonly name = 'local',
    private readonly params: Argon2Params = DEFAULT_ARGON2_PARAMS,
  ) {}

  async verifyPassword(username: string, password: string, _ctx?: AuthContext): Promise<AuthResult> {
    this.dummyHash ??= hashPassword('floe dummy password', this.params);
    let user: LocalUserRecord | null;
    try {
      user = plausibleUsername(username) ? await this.store.find(username) : null;
    } catch {
      return { ok: false, authenticator: this.name, reason: 'unavailable', detail: 'user store failed' };
    }
    if (user === null) {
      await verifyPassword(await this.dummyHash, password);
      return { ok: false, authenticator: this.name, reason: 'unknown_user' };
    }
    if (!(await verifyPassword(user.passwordHash, password))) {
      return { ok: false, authenticator: this.name, reason: 'bad_credentials' };
    }
    if (this.store.updatePasswordHash && needsRehash(user.passwordHash, this.params)) {
      // A failed upgrade must not fail the login: the old hash still works.
      await this.store
        .updatePasswordHash(user.subject, await hashPassword(password, this.params))
        .catch(() => undefined);
    }
    return {
      ok: true,
      authenticator: this.name,
      subject: user.subject,
      groups: [...(user.groups ?? [])],
      ...(user.displayName !== undefined ? { displayName: user.displayName } : {}),
      ...(user.email !== undefined ? { email: user.email } : {}),
    };
  }
}
