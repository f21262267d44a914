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
}

/** Receives what authentication learned about a request. */
export type AuthNoter = (note: AuthNote) => void;
