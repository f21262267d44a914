import { Type, type Static } from 'typebox';
import { Name, Timestamp } from './common.js';
import { User } from './users.js';

/** Body of `POST /v1/auth/login`: a username and password for the authenticator chain, and the TOTP code when the user has one. */
export const LoginRequest = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 256 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
  totp_code: Type.Optional(
    Type.String({ minLength: 1, maxLength: 64, description: 'a 6-digit TOTP code or an unused recovery code' }),
  ),
  session_name: Type.Optional(Name),
});
export type LoginRequest = Static<typeof LoginRequest>;

/** Answer of a login: the session token's secret (shown once), when it expires, and the user. */
export const LoginResponse = Type.Object({
  token: Type.String({ description: 'the session token: send it as `Authorization: Bearer <token>`' }),
  token_id: Type.String(),
  expires_at: Timestamp,
  user: User,
});
export type LoginResponse = Static<typeof LoginResponse>;

/**
 * Answer of `POST /v1/auth/session`, a browser login: the session token stays in an HttpOnly cookie and never
 * reaches scripts; `csrf_token` (also in the readable `floe_csrf` cookie) goes in the `X-CSRF-Token` header of
 * every request that changes something.
 */
export const SessionLogin = Type.Object({
  token_id: Type.String(),
  expires_at: Timestamp,
  csrf_token: Type.String({
    description: 'send as `X-CSRF-Token` on every cookie-authenticated POST, PUT, PATCH and DELETE',
  }),
  user: User,
});
export type SessionLogin = Static<typeof SessionLogin>;

/** Answer of `POST /v1/users/me/totp`: the new secret three ways and the recovery codes, pending until confirmed. */
export const TotpEnrolment = Type.Object({
  secret: Type.String({ description: 'base32, for typing into an authenticator app by hand' }),
  uri: Type.String({ description: 'otpauth:// URI' }),
  qr_terminal: Type.String({ description: 'the URI as a QR code drawn with terminal characters' }),
  qr_png_base64: Type.String({ description: 'the URI as a PNG QR code, base64' }),
  recovery_codes: Type.Array(Type.String(), { description: 'single-use codes for a lost device; shown once' }),
});
export type TotpEnrolment = Static<typeof TotpEnrolment>;

/** Body of `POST /v1/users/me/totp/confirm` and `DELETE /v1/users/me/totp`: a current code. */
export const TotpCode = Type.Object({ code: Type.String({ minLength: 1, maxLength: 64 }) });
export type TotpCode = Static<typeof TotpCode>;
