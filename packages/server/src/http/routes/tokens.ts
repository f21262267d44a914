import { IdOrNameParams, ListQuery, Page, Token, TokenCreate, TokenCreated } from '@floe/api';
import type { Services } from '../../wiring.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** API tokens (admin). */
export function tokenRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/tokens',
    {
      schema: {
        tags: ['tokens'],
        summary: 'List API tokens (admin)',
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
        summary: 'Create an API token (admin); the secret is shown once',
        body: strict(TokenCreate),
        response: { 201: TokenCreated, ...errors },
      },
    },
    async (req, reply) => {
      const created = await s.tokens.create(
        req.principal,
        req.body,
        async (ref, db) => (await s.projects.get(req.principal, ref, db)).id,
      );
      return reply.code(201).send(created);
    },
  );
  app.get(
    '/v1/tokens/:id',
    {
      schema: {
        tags: ['tokens'],
        summary: 'Show an API token (admin): its projects and whether it is active, expired or revoked',
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
        summary: 'Revoke an API token (admin)',
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
