import { IdOrNameParams, ListQuery, Page, Token, TokenCreate, TokenCreated } from '@floe/api';
import { withVerb } from '../../services/authz.js';
import type { Services } from '../../wiring.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** API tokens: admins manage every token; users their own personal tokens, owners their projects' project tokens. */
export function tokenRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/tokens',
    {
      schema: {
        tags: ['tokens'],
        summary:
          'List API tokens: every token for admins; for users their own personal tokens and the project tokens of projects they own; `project` keeps the tokens granted that project',
        querystring: ListQuery,
        response: { 200: Page(Token), ...errors },
      },
    },
    (req) => s.tokens.list(req.principal, req.query),
  );
  app.post(
    '/v1/tokens',
    {
      schema: {
        tags: ['tokens'],
        summary:
          'Create an API token; the secret is shown once. Admins create any token; users their own personal tokens, within their projects; owners project tokens (`project_token`) of projects they own; each optionally narrowed by a scope',
        body: strict(TokenCreate),
        response: { 201: TokenCreated, ...errors },
      },
    },
    async (req, reply) => {
      const created = await s.tokens.create(
        req.principal,
        req.body,
        // Any project the caller sees may be granted (a viewer's personal token stays a viewer's).
        async (ref, db) => (await s.projects.get(withVerb(req.principal, 'read'), ref, db)).id,
      );
      return reply.code(201).send(created);
    },
  );
  app.get(
    '/v1/tokens/:id',
    {
      schema: {
        tags: ['tokens'],
        summary:
          'Show an API token (admins: any; users: their own, and project tokens of projects they own): its projects, scope and whether it is active, expired or revoked',
        params: IdOrNameParams,
        response: { 200: Token, ...errors },
      },
    },
    (req) => s.tokens.get(req.principal, req.params.id),
  );
  app.delete(
    '/v1/tokens/:id',
    {
      schema: {
        tags: ['tokens'],
        summary: 'Revoke an API token (admins: any; users: their own, and project tokens of projects they own)',
        params: IdOrNameParams,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.tokens.revoke(req.principal, req.params.id);
      return reply.code(204).send(null);
    },
  );
}
