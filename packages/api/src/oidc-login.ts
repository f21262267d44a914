import { Type, type Static } from 'typebox';
import { Name, Nullable, Timestamp } from './common.js';
import { User } from './users.js';

/** An authenticator's name in the configuration. @example "corp-sso" */
const AuthenticatorName = Type.String({
  pattern: '^[a-z][a-z0-9-]{0,62}$',
  maxLength: 63,
  description: 'the configured name',
});

/** The id of a pending login. */
const LoginId = Type.String({ pattern: '^lgn_[A-Za-z0-9_-]{22}$', description: 'id of the pending login' });

/** Path of `POST /v1/auth/oidc/{name}/start`. */
export const OidcStartParams = Type.Object({ name: AuthenticatorName });
export type OidcStartParams = Static<typeof OidcStartParams>;

/** Body of `POST /v1/auth/oidc/{name}/start` (optional). */
export const OidcStart = Type.Object({
  session_name: Type.Optional({ ...Name, description: 'name of the session token the login makes' }),
});
export type OidcStart = Static<typeof OidcStart>;

/** Answer of `POST /v1/auth/oidc/{name}/start`: where to send the browser, and what the client keeps to poll. */
export const OidcLoginStarted = Type.Object({
  login_id: LoginId,
  authorization_url: Type.String({ description: "the identity provider's page; open it in a browser" }),
  poll_secret: Type.String({ description: 'secret of this login, shown once; needed to collect the session' }),
  user_code: Type.String({
    description: 'code to show the person: floe’s page asks for it after the provider, to confirm the login',
  }),
  expires_at: Timestamp,
});
export type OidcLoginStarted = Static<typeof OidcLoginStarted>;

/** Body of `POST /v1/auth/oidc/poll`. */
export const OidcPoll = Type.Object({
  login_id: LoginId,
  poll_secret: Type.String({ minLength: 1, maxLength: 128 }),
});
export type OidcPoll = Static<typeof OidcPoll>;

/** Answer 202 of `POST /v1/auth/oidc/poll`: the browser has not come back yet. */
export const OidcPollPending = Type.Object({ status: Type.Literal('pending'), expires_at: Timestamp });
export type OidcPollPending = Static<typeof OidcPollPending>;

/** Answer 200 of `POST /v1/auth/oidc/poll`: the session token, given exactly once. */
export const LoginSession = Type.Object({
  token: Type.String({ description: 'the session token (a bearer token), shown once' }),
  expires_at: Nullable(Timestamp),
  user: User,
});
export type LoginSession = Static<typeof LoginSession>;

/** Query of `GET /v1/auth/oidc/callback`, as the identity provider sends the browser back (RFC 6749 4.1.2, RFC 9207). */
export const OidcCallbackQuery = Type.Object(
  {
    code: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    state: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    iss: Type.Optional(Type.String({ maxLength: 2048 })),
    error: Type.Optional(Type.String({ maxLength: 256 })),
    error_description: Type.Optional(Type.String({ maxLength: 2048 })),
  },
  { additionalProperties: true },
);
export type OidcCallbackQuery = Static<typeof OidcCallbackQuery>;

/** Body of `POST /v1/auth/oidc/confirm`: the form of floe's page after the provider (form-encoded). */
export const OidcConfirm = Type.Object({
  confirm: Type.String({ minLength: 1, maxLength: 128, description: 'the page’s confirmation secret' }),
  code: Type.String({ minLength: 1, maxLength: 64, description: 'the code the terminal shows' }),
});
export type OidcConfirm = Static<typeof OidcConfirm>;
