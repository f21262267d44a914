/** Why a bearer token was refused; recorded as the reason of `auth.failed` (never the secret itself). */
export type AuthFailure = 'missing' | 'malformed' | 'unknown' | 'revoked' | 'expired' | 'denied' | 'unavailable';

/** What authentication tells the audit log about one request. */
export interface AuthNote {
  /** Set when authentication failed. */
  failure?: AuthFailure;
  /** The authenticator that refused (an external checker's name); absent for floe's own tokens. */
  authenticator?: string;
  /** The token that failed (revoked or expired) or was used for the first time. */
  tokenId?: string;
  /** Set to the token's id when this request was its first use. */
  firstUse?: string;
  /** Set by the login and logout routes. */
  login?: LoginNote;
}

/** Receives what authentication learned about a request. */
export type AuthNoter = (note: AuthNote) => void;

/** A password login or a logout, as the audit log records it (the action replaces the route's). */
export interface LoginNote {
  action: 'auth.login' | 'auth.login_failed' | 'auth.totp_failed' | 'auth.logout';
  /** The floe user, once known (never for an unknown username). */
  user?: { id: string; name: string };
  /** The authenticator that answered, by its configured name. */
  authenticator?: string;
  /** Why it failed (unknown_user, bad_credentials, disabled, locked_out, unavailable, bad_code, replayed, ...). */
  reason?: string;
  /** The session token a login created. */
  tokenId?: string;
}
