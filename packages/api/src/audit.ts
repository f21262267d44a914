import { Type, type Static } from 'typebox';
import { Id, Nullable, Timestamp } from './common.js';

/**
 * One audit record: who asked for what, from where, and how it ended. Written for every mutating
 * request (refused ones too) and every authentication event. Never holds a body, a secret or a header.
 *
 * @example
 * const r: AuditRecord = { id: 'aud_01J...', action: 'instance.create', outcome: 'ok', status: 202, ... };
 */
export const AuditRecord = Type.Object({
  id: Id,
  at: Timestamp,
  action: Type.String({ description: 'what was asked, e.g. `instance.create`, `token.revoke`, `auth.failed`' }),
  outcome: Type.Union([Type.Literal('ok'), Type.Literal('error')]),
  status: Nullable(Type.Integer({ description: 'HTTP status of the answer' })),
  error_code: Nullable(Type.String({ description: 'the error code of a refused or failed request' })),
  reason: Nullable(
    Type.String({
      description:
        'why authentication failed: missing, malformed, unknown, revoked, expired; denied, unavailable (external checker)',
    }),
  ),
  token_id: Nullable(Type.String({ description: 'the token the request authenticated with' })),
  user_id: Nullable(Type.String()),
  user_name: Nullable(Type.String()),
  authenticator: Nullable(
    Type.String({
      description: 'how the caller authenticated: `token`, or an external checker’s or OpenID login’s name',
    }),
  ),
  source_address: Nullable(Type.String({ description: 'address of the connection (no proxy is trusted)' })),
  method: Nullable(Type.String()),
  route: Nullable(Type.String({ description: 'the route pattern, e.g. `/v1/instances/:id`' })),
  resource_kind: Nullable(Type.String()),
  resource_id: Nullable(Type.String({ description: 'id of the resource, or the name the request gave' })),
  project: Nullable(Type.String()),
  request_id: Nullable(Type.String()),
});
export type AuditRecord = Static<typeof AuditRecord>;

/** Query of `GET /v1/audit`: newest first; every filter narrows. */
export const AuditQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: Type.Optional(Type.String({ maxLength: 200 })),
  token: Type.Optional(Type.String({ maxLength: 100, description: 'records of this token id' })),
  user: Type.Optional(Type.String({ maxLength: 200, description: 'records of this user id or name' })),
  action: Type.Optional(Type.String({ maxLength: 100, description: 'action prefix: `instance.` or `auth.failed`' })),
  outcome: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('error')])),
  resource: Type.Optional(Type.String({ maxLength: 100, description: 'records about this resource id' })),
  project: Type.Optional(Type.String({ maxLength: 63 })),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'records at or after this time' })),
  until: Type.Optional(Type.String({ format: 'date-time', description: 'records before this time' })),
});
export type AuditQuery = Static<typeof AuditQuery>;
