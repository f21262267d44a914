import { Type, type Static } from 'typebox';
import { Id, Name, Nullable, Timestamp } from './common.js';

/** A user's role in a project: owner (also manages members), member (all of the project's resources), viewer (reads). */
export const ProjectRoleName = Type.Union([Type.Literal('owner'), Type.Literal('member'), Type.Literal('viewer')]);
export type ProjectRoleName = Static<typeof ProjectRoleName>;

/** Longest password accepted (the hash is argon2id; longer inputs only cost time). */
export const USER_PASSWORD_MAX = 1024;
const Password = Type.String({ minLength: 12, maxLength: USER_PASSWORD_MAX, description: 'at least 12 characters' });
const Email = Type.String({ maxLength: 254, pattern: '^[^@\\s]+@[^@\\s]+$' });
const DisplayName = Type.String({ maxLength: 200 });

/** A person. Operators manage hosts, public networks, machine types, projects and users. */
export const User = Type.Object({
  id: Id,
  name: Name,
  display_name: DisplayName,
  email: Nullable(Email),
  disabled: Type.Boolean({ description: 'a disabled user and all its tokens are refused at once' }),
  operator: Type.Boolean(),
  has_password: Type.Boolean(),
  source: Nullable(
    Type.String({
      description:
        'the authenticator that created the user on its first login (LDAP, htpasswd, ...); null for local users',
    }),
  ),
  totp: Type.Boolean({ description: 'logins need a TOTP code (or a recovery code)' }),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export type User = Static<typeof User>;

/** Body of `POST /v1/users`. */
export const UserCreate = Type.Object({
  name: Name,
  display_name: Type.Optional(DisplayName),
  email: Type.Optional(Nullable(Email)),
  operator: Type.Optional(Type.Boolean({ default: false })),
  password: Type.Optional(Password),
  authenticator: Type.Optional(
    Type.String({
      pattern: '^[a-z][a-z0-9-]{0,62}$',
      description:
        'an authenticator of the chain other than `local` (an LDAP directory, say): the user logs in there, and its first login finds this user, with the memberships given meanwhile',
    }),
  ),
  subject: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 256,
      description: "the user's identifier in that authenticator (default: the name)",
    }),
  ),
});
export type UserCreate = Static<typeof UserCreate>;

/** Body of `PATCH /v1/users/{id}` (operators). */
export const UserPatch = Type.Object({
  display_name: Type.Optional(DisplayName),
  email: Type.Optional(Nullable(Email)),
  disabled: Type.Optional(Type.Boolean()),
  operator: Type.Optional(Type.Boolean()),
});
export type UserPatch = Static<typeof UserPatch>;

/** Body of `POST /v1/users/me/password`. */
export const PasswordChange = Type.Object({
  old_password: Type.String({ maxLength: USER_PASSWORD_MAX }),
  new_password: Password,
});
export type PasswordChange = Static<typeof PasswordChange>;

/** A user's role in a project. */
export const Member = Type.Object({
  user: Name,
  user_id: Id,
  role: ProjectRoleName,
  created_at: Timestamp,
});
export type Member = Static<typeof Member>;

/** Body of `POST /v1/projects/{id}/members`: a user (by name or id) and its role. */
export const MemberAdd = Type.Object({ user: Type.String({ minLength: 1, maxLength: 63 }), role: ProjectRoleName });
export type MemberAdd = Static<typeof MemberAdd>;

/** Body of `PATCH /v1/projects/{id}/members/{user}`. */
export const MemberPatch = Type.Object({ role: ProjectRoleName });
export type MemberPatch = Static<typeof MemberPatch>;

/** Path of one member: the project and the user (each by name or id). */
export const MemberParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  user: Type.String({ minLength: 1, maxLength: 100 }),
});
export type MemberParams = Static<typeof MemberParams>;

/** Answer of `GET /v1/projects/{id}/members`. */
export const MemberList = Type.Object({ items: Type.Array(Member) });
export type MemberList = Static<typeof MemberList>;
