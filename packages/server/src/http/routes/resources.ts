import {
  ErrorEnvelope,
  IdOrNameParams,
  Image,
  ImageCreate,
  ImagePatch,
  ListQuery,
  MachineType,
  MachineTypeCreate,
  Page,
  Project,
  ProjectCreate,
  ProjectPatch,
  ProjectQuery,
  Token,
  TokenCreate,
  TokenCreated,
} from '@floe/api';
import { Type, type TSchema } from 'typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Services } from '../../app.js';
import { etag, ifMatch, projectOf } from '../request.js';

/** Reject unknown fields in request bodies (typos must not pass silently). */
export function strict<T extends TSchema>(schema: T): T {
  return { ...schema, additionalProperties: false } as T;
}

/**
 * preValidation hook for POSTs whose body fields are all optional: no body at
 * all (as `curl -X POST` sends) is validated as `{}` instead of failing.
 */
export async function bodyOptional(request: FastifyRequest): Promise<void> {
  if (request.body === undefined) request.body = {};
}

/** Error answers every route documents. */
export const errors = { '4xx': ErrorEnvelope, '5xx': ErrorEnvelope };

/** A documented 204. */
export const noContent = { 204: Type.Null({ description: 'done' }) };

/** Projects, tokens, images and machine types: plain records, no host work. */
export function resourceRoutes(app: FastifyInstance, s: Services): void {
  // ---------------------------------------------------------------- projects
  app.get(
    '/v1/projects',
    {
      schema: {
        tags: ['projects'],
        summary: 'List projects',
        querystring: ListQuery,
        response: { 200: Page(Project), ...errors },
      },
    },
    (req) => s.projects.list(req.principal, req.query as ListQuery),
  );
  app.post(
    '/v1/projects',
    {
      schema: {
        tags: ['projects'],
        summary: 'Create a project (admin)',
        body: strict(ProjectCreate),
        response: { 201: Project, ...errors },
      },
    },
    async (req, reply) => {
      const p = await s.projects.create(req.principal, req.body as ProjectCreate);
      etag(reply, p.revision);
      return reply.code(201).send(p);
    },
  );
  app.get(
    '/v1/projects/:id',
    {
      schema: {
        tags: ['projects'],
        summary: 'Show a project',
        params: IdOrNameParams,
        response: { 200: Project, ...errors },
      },
    },
    async (req, reply) => {
      const p = await s.projects.get(req.principal, (req.params as { id: string }).id);
      etag(reply, p.revision);
      return p;
    },
  );
  app.patch(
    '/v1/projects/:id',
    {
      schema: {
        tags: ['projects'],
        summary: 'Update a project (JSON merge patch)',
        params: IdOrNameParams,
        body: strict(ProjectPatch),
        response: { 200: Project, ...errors },
      },
    },
    async (req, reply) => {
      const p = await s.projects.update(
        req.principal,
        (req.params as { id: string }).id,
        req.body as ProjectPatch,
        ifMatch(req),
      );
      etag(reply, p.revision);
      return p;
    },
  );
  app.delete(
    '/v1/projects/:id',
    {
      schema: {
        tags: ['projects'],
        summary: 'Delete an empty project (admin)',
        params: IdOrNameParams,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.projects.delete(req.principal, (req.params as { id: string }).id, ifMatch(req));
      return reply.code(204).send();
    },
  );

  // ---------------------------------------------------------------- tokens
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
    (req) => s.tokens.list(req.principal, req.query as ListQuery),
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
      const created = await s.tokens.create(req.principal, req.body as TokenCreate, (name) =>
        s.projects.require(req.principal, name),
      );
      return reply.code(201).send(created);
    },
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
      await s.tokens.revoke(req.principal, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );

  // ---------------------------------------------------------------- images
  app.get(
    '/v1/images',
    {
      schema: {
        tags: ['images'],
        summary: 'List images',
        querystring: ListQuery,
        response: { 200: Page(Image), ...errors },
      },
    },
    (req) => s.images.list(req.principal, req.query as ListQuery),
  );
  app.post(
    '/v1/images',
    {
      schema: {
        tags: ['images'],
        summary: 'Register an image record',
        body: strict(ImageCreate),
        response: { 201: Image, ...errors },
      },
    },
    async (req, reply) => {
      const img = await s.images.create(req.principal, req.body as ImageCreate);
      etag(reply, img.revision);
      return reply.code(201).send(img);
    },
  );
  app.get(
    '/v1/images/:id',
    {
      schema: {
        tags: ['images'],
        summary: 'Show an image',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: Image, ...errors },
      },
    },
    async (req, reply) => {
      const img = await s.images.get(
        req.principal,
        (req.params as { id: string }).id,
        projectOf(req.query as { project?: string }),
      );
      etag(reply, img.revision);
      return img;
    },
  );
  app.patch(
    '/v1/images/:id',
    {
      schema: {
        tags: ['images'],
        summary: 'Update an image (JSON merge patch)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        body: strict(ImagePatch),
        response: { 200: Image, ...errors },
      },
    },
    async (req, reply) => {
      const img = await s.images.update(
        req.principal,
        (req.params as { id: string }).id,
        projectOf(req.query as { project?: string }),
        req.body as ImagePatch,
        ifMatch(req),
      );
      etag(reply, img.revision);
      return img;
    },
  );
  app.delete(
    '/v1/images/:id',
    {
      schema: {
        tags: ['images'],
        summary: 'Delete an image no instance uses',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.images.delete(
        req.principal,
        (req.params as { id: string }).id,
        projectOf(req.query as { project?: string }),
        ifMatch(req),
      );
      return reply.code(204).send();
    },
  );

  // ---------------------------------------------------------------- machine types
  app.get(
    '/v1/machine-types',
    {
      schema: {
        tags: ['machine-types'],
        summary: 'List machine types',
        querystring: ListQuery,
        response: { 200: Page(MachineType), ...errors },
      },
    },
    (req) => s.machineTypes.list(req.query as ListQuery),
  );
  app.post(
    '/v1/machine-types',
    {
      schema: {
        tags: ['machine-types'],
        summary: 'Create a machine type (admin)',
        body: strict(MachineTypeCreate),
        response: { 201: MachineType, ...errors },
      },
    },
    async (req, reply) => {
      const t = await s.machineTypes.create(req.principal, req.body as MachineTypeCreate);
      return reply.code(201).send(t);
    },
  );
  app.get(
    '/v1/machine-types/:id',
    {
      schema: {
        tags: ['machine-types'],
        summary: 'Show a machine type',
        params: IdOrNameParams,
        response: { 200: MachineType, ...errors },
      },
    },
    async (req, reply) => {
      const t = await s.machineTypes.get((req.params as { id: string }).id);
      etag(reply, t.revision);
      return t;
    },
  );
  app.delete(
    '/v1/machine-types/:id',
    {
      schema: {
        tags: ['machine-types'],
        summary: 'Delete a machine type (admin)',
        params: IdOrNameParams,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.machineTypes.delete(req.principal, (req.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
