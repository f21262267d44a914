import {
  IdOrNameParams,
  ListQuery,
  Member,
  MemberAdd,
  MemberList,
  MemberParams,
  MemberPatch,
  Page,
  PasswordChange,
  User,
  UserCreate,
  UserPatch,
} from '@floe/api';
import type { Services } from '../../wiring.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** Users (operators; a user reads itself and changes its own password) and the members of projects. */
export function userRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/users',
    {
      schema: {
        tags: ['users'],
        summary: 'List users (operators)',
        querystring: ListQuery,
        response: { 200: Page(User), ...errors },
      },
    },
    (req) => s.users.list(req.principal, req.query),
  );
  app.post(
    '/v1/users',
    {
      schema: {
        tags: ['users'],
        summary: 'Create a user (operators); the password, if given, is stored as an argon2id hash',
        body: strict(UserCreate),
        response: { 201: User, ...errors },
      },
    },
    async (req, reply) => reply.code(201).send(await s.users.create(req.principal, req.body)),
  );
  app.get(
    '/v1/users/me',
    {
      schema: {
        tags: ['users'],
        summary: 'The user the token belongs to (404 for a token of nobody)',
        response: { 200: User, ...errors },
      },
    },
    (req) => s.users.me(req.principal),
  );
  app.post(
    '/v1/users/me/password',
    {
      schema: {
        tags: ['users'],
        summary: 'Change the password of the token’s user; the old one must match',
        body: strict(PasswordChange),
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.users.changePassword(req.principal, req.body);
      return reply.code(204).send(null);
    },
  );
  app.get(
    '/v1/users/:id',
    {
      schema: {
        tags: ['users'],
        summary: 'Show a user (operators)',
        params: IdOrNameParams,
        response: { 200: User, ...errors },
      },
    },
    (req) => s.users.get(req.principal, req.params.id),
  );
  app.patch(
    '/v1/users/:id',
    {
      schema: {
        tags: ['users'],
        summary: 'Change a user (operators); disabling one stops its tokens at once',
        params: IdOrNameParams,
        body: strict(UserPatch),
        response: { 200: User, ...errors },
      },
    },
    (req) => s.users.update(req.principal, req.params.id, req.body),
  );
  app.delete(
    '/v1/users/:id',
    {
      schema: {
        tags: ['users'],
        summary: 'Delete a user with its memberships and tokens (operators)',
        params: IdOrNameParams,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.users.delete(req.principal, req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/projects/:id/members',
    {
      schema: {
        tags: ['projects'],
        summary: 'List the members of a project and their roles',
        params: IdOrNameParams,
        response: { 200: MemberList, ...errors },
      },
    },
    async (req) => ({ items: await s.members.list(req.principal, req.params.id) }),
  );
  app.post(
    '/v1/projects/:id/members',
    {
      schema: {
        tags: ['projects'],
        summary: 'Add a member to a project (owners and operators)',
        params: IdOrNameParams,
        body: strict(MemberAdd),
        response: { 201: Member, ...errors },
      },
    },
    async (req, reply) => reply.code(201).send(await s.members.add(req.principal, req.params.id, req.body)),
  );
  app.patch(
    '/v1/projects/:id/members/:user',
    {
      schema: {
        tags: ['projects'],
        summary: 'Change a member’s role (owners and operators); the last owner stays owner',
        params: MemberParams,
        body: strict(MemberPatch),
        response: { 200: Member, ...errors },
      },
    },
    (req) => s.members.setRole(req.principal, req.params.id, req.params.user, req.body.role),
  );
  app.delete(
    '/v1/projects/:id/members/:user',
    {
      schema: {
        tags: ['projects'],
        summary: 'Remove a member (owners and operators); the last owner cannot be removed',
        params: MemberParams,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.members.remove(req.principal, req.params.id, req.params.user);
      return reply.code(204).send(null);
    },
  );
}
