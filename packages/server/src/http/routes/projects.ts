import {
  HistoryEntry,
  IdOrNameParams,
  ListQuery,
  Page,
  Project,
  ProjectCreate,
  ProjectLimits,
  ProjectPatch,
  ProjectUsage,
  QuotaLimitsChange,
} from '@floe/api';
import type { Services } from '../../wiring.js';
import { etag, ifMatch } from '../request.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** Projects: the tenants. */
export function projectRoutes(app: Api, s: Services): void {
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
    (req) => s.projects.list(req.principal, req.query),
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
      const p = await s.projects.create(req.principal, req.body);
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
      const p = await s.projects.get(req.principal, req.params.id);
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
      const p = await s.projects.update(req.principal, req.params.id, req.body, ifMatch(req));
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
      await s.projects.delete(req.principal, req.params.id, ifMatch(req));
      return reply.code(204).send(null);
    },
  );
}

/** A project's limits and what it uses of them. */
export function quotaRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/projects/:id/usage',
    {
      schema: {
        tags: ['projects'],
        summary: 'Allocated vs limit per dimension, for the project and its subtree',
        params: IdOrNameParams,
        response: { 200: ProjectUsage, ...errors },
      },
    },
    (req) => s.projects.usage(req.principal, req.params.id),
  );
  app.get(
    '/v1/projects/:id/limits',
    {
      schema: {
        tags: ['projects'],
        summary: "The project's own limits",
        params: IdOrNameParams,
        response: { 200: ProjectLimits, ...errors },
      },
    },
    (req) => s.projects.limits(req.principal, req.params.id),
  );
  app.put(
    '/v1/projects/:id/limits',
    {
      schema: {
        tags: ['projects'],
        summary: "Change the project's limits (admins; owners of the parent for a sub-project); null removes one",
        params: IdOrNameParams,
        body: strict(QuotaLimitsChange),
        response: { 200: ProjectLimits, ...errors },
      },
    },
    (req) => s.projects.setLimits(req.principal, req.params.id, req.body),
  );
  app.get(
    '/v1/projects/:id/history',
    {
      schema: {
        tags: ['projects'],
        summary: 'Change history of a project: creation, changes and limits',
        params: IdOrNameParams,
        querystring: ListQuery,
        response: { 200: Page(HistoryEntry), ...errors },
      },
    },
    (req) => s.projects.history(req.principal, req.params.id, req.query),
  );
}
