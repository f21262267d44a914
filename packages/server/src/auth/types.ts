/**
 * The authenticator layer: every way floe can learn who a caller is (local
 * passwords, an htpasswd file, LDAP, an external checker) answers through the
 * same small interface, so the operator can put them in a chain in any order.
 */

/** A project role, highest first. */
export type ProjectRole = 'owner' | 'member' | 'viewer';

/** One role given to a user: operator of the whole installation, or a role in one project. */
export type RoleGrant = { readonly role: 'operator' } | { readonly role: ProjectRole; readonly project: string };

/** Why an authenticator refused. */
export type AuthFailureReason =
  /** This authenticator does not know the user; the chain asks the next one. */
  | 'unknown_user'
  /** The user is known here and the password (or header) is wrong: a definitive refusal. */
  | 'bad_credentials'
  /** The backend could not answer (down, timed out, answered nonsense); the chain asks the next one but never treats this as success. */
  | 'unavailable'
  /** An external checker answered "deny" for this request. */
  | 'denied';

/** Who the caller is, as an authenticator found them. */
export interface AuthSuccess {
  readonly ok: true;
  /** Which authenticator (by its configured name) answered. */
  readonly authenticator: string;
  /** A stable identifier of the user within that authenticator (the username, or an LDAP DN's uid). */
  readonly subject: string;
  readonly displayName?: string;
  readonly email?: string;
  /** Group names from the backend, input of the role mapping. */
  readonly groups: readonly string[];
  /** Roles an external checker granted directly (already in floe's terms). */
  readonly roles?: readonly RoleGrant[];
}

/** A refusal; `detail` is for the operator's log and never holds a password or header. */
export interface AuthFailure {
  readonly ok: false;
  readonly authenticator: string;
  readonly reason: AuthFailureReason;
  readonly detail?: string;
}

/** What one authenticator (or the whole chain) answers. */
export type AuthResult = AuthSuccess | AuthFailure;

/** Facts about the attempt that an authenticator may log or pass on; never credentials. */
export interface AuthContext {
  /** The client's address, for logs and rate limits. */
  readonly remoteAddress?: string;
  /** Aborted when the caller gave up (the request closed). */
  readonly signal?: AbortSignal;
}

/** One way to check a username and password. */
export interface Authenticator {
  /** The kind from the configuration: 'local', 'htpasswd', 'ldap', 'checker'. */
  readonly kind: string;
  /** The operator's name for this entry of the chain (defaults to the kind). */
  readonly name: string;
  /** Check a username and password; never throws for a wrong password or a broken backend. */
  verifyPassword(username: string, password: string, ctx?: AuthContext): Promise<AuthResult>;
  /** Release files, watchers and connections. */
  close?(): Promise<void>;
}

/** Longest username any authenticator accepts; longer ones are unknown users, checked before any backend sees them. */
const USERNAME_MAX_LENGTH = 256;
/** Longest password checked; longer ones are refused without hashing (a cheap denial of service otherwise). */
export const PASSWORD_MAX_LENGTH = 1024;

/**
 * A username any backend may see: 1 to 256 characters, no control characters.
 * Everything else is an unknown user, decided before a backend is asked.
 */
export function plausibleUsername(username: string): boolean {
  // eslint-disable-next-line no-control-regex
  return username.length > 0 && username.length <= USERNAME_MAX_LENGTH && !/[\u0000-\u001f\u007f]/.test(username);
}
