import { IdOrNameParams, ListQuery, MachineType, MachineTypeCreate, Page } from '@floe/api';
import type { Services } from '../../wiring.js';
import { etag } from '../request.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** Machine types: the sizes instances are made in. */
export function machineTypeRoutes(app: Api, s: Services): void {
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
    (req) => s.machineTypes.list(req.query),
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
      const t = await s.machineTypes.create(req.principal, req.body);
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
      const t = await s.machineTypes.get(req.params.id);
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
      await s.machineTypes.delete(req.principal, req.params.id);
      return reply.code(204).send(null);
    },
  );
}
