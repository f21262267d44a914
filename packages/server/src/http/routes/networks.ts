import {
  IdOrNameParams,
  ListQuery,
  Network,
  NetworkCreate,
  NetworkPatch,
  Nic,
  NicRequest,
  Operation,
  OperationWaitQuery,
  Page,
  ProjectQuery,
} from '@floe/api';
import { Type } from 'typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Services } from '../../app.js';
import { isTerminal } from '../../services/operations.js';
import { etag, ifMatch, projectOf } from '../request.js';
import { errors, noContent, strict } from './resources.js';

const ProjectWaitQuery = Type.Object({ ...ProjectQuery.properties, ...OperationWaitQuery.properties });
type PW = { project?: string; wait?: number };

/** Body of `POST /v1/instances/{id}/nics`: the network, and optionally the addresses wanted. */
const NicAdd = Type.Object({
  network: Type.String({ minLength: 1, maxLength: 100, description: 'network id or name' }),
  ipv4: Type.Optional(Type.String({ minLength: 7, maxLength: 15 })),
  ipv6: Type.Optional(Type.String({ minLength: 2, maxLength: 45 })),
});
const NicParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  nic: Type.String({ minLength: 1, maxLength: 100 }),
});
const NicOp = Type.Object({ nic: Nic, operation: Operation });

// Operations answer 202 while they run and 200 once ended (after `?wait=`), as instance actions do.
async function waitFor(s: Services, req: FastifyRequest, op: Operation): Promise<Operation> {
  const wait = (req.query as PW).wait ?? 0;
  return wait > 0 ? s.operations.wait(req.principal, op.id, wait) : op;
}

function answer(reply: FastifyReply, op: Operation, body: unknown = op): FastifyReply {
  reply.header('location', `/v1/operations/${op.id}`);
  return reply.code(isTerminal(op.status) ? 200 : 202).send(body);
}

/** Networks and the NICs of instances. */
export function networkRoutes(app: FastifyInstance, s: Services): void {
  app.get(
    '/v1/networks',
    {
      schema: {
        tags: ['networks'],
        summary: 'List networks (those of the visible projects, and public ones)',
        querystring: ListQuery,
        response: { 200: Page(Network), ...errors },
      },
    },
    (req) => s.networks.list(req.principal, req.query as ListQuery),
  );
  app.post(
    '/v1/networks',
    {
      schema: {
        tags: ['networks'],
        summary: 'Create a network (public ones: admin)',
        body: strict(NetworkCreate),
        response: { 201: Network, ...errors },
      },
    },
    async (req, reply) => {
      const n = await s.networks.create(req.principal, req.body as NetworkCreate);
      etag(reply, n.revision);
      reply.header('location', `/v1/networks/${n.id}`);
      return reply.code(201).send(n);
    },
  );
  app.get(
    '/v1/networks/:id',
    {
      schema: {
        tags: ['networks'],
        summary: 'Show a network',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: Network, ...errors },
      },
    },
    async (req, reply) => {
      const n = await s.networks.get(req.principal, (req.params as { id: string }).id, projectOf(req.query as PW));
      etag(reply, n.revision);
      return n;
    },
  );
  app.patch(
    '/v1/networks/:id',
    {
      schema: {
        tags: ['networks'],
        summary: 'Update labels, metadata, DNS or reserved addresses (JSON merge patch)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        body: strict(NetworkPatch),
        response: { 200: Network, ...errors },
      },
    },
    async (req, reply) => {
      const n = await s.networks.update(
        req.principal,
        (req.params as { id: string }).id,
        projectOf(req.query as PW),
        req.body as NetworkPatch,
        ifMatch(req),
      );
      etag(reply, n.revision);
      return n;
    },
  );
  app.delete(
    '/v1/networks/:id',
    {
      schema: {
        tags: ['networks'],
        summary: 'Delete a network without NICs (409 in_use otherwise)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.networks.delete(
        req.principal,
        (req.params as { id: string }).id,
        projectOf(req.query as PW),
        ifMatch(req),
      );
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/instances/:id/nics',
    {
      schema: {
        tags: ['instances'],
        summary: 'List the NICs of an instance',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: Type.Object({ items: Type.Array(Nic) }), ...errors },
      },
    },
    async (req) => ({
      items: await s.instances.nics(req.principal, (req.params as { id: string }).id, projectOf(req.query as PW)),
    }),
  );
  app.post(
    '/v1/instances/:id/nics',
    {
      schema: {
        tags: ['instances'],
        summary: 'Add a NIC to an instance (hot-plugged when running)',
        params: IdOrNameParams,
        querystring: ProjectWaitQuery,
        body: strict(NicAdd),
        response: { 200: NicOp, 202: NicOp, ...errors },
      },
    },
    async (req, reply) => {
      const body = req.body as { network: string; ipv4?: string; ipv6?: string };
      const { nic, operation } = await s.instances.addNic(
        req.principal,
        (req.params as { id: string }).id,
        projectOf(req.query as PW),
        body satisfies NicRequest,
      );
      const op = await waitFor(s, req, operation);
      return answer(reply, op, { nic, operation: op });
    },
  );
  app.delete(
    '/v1/instances/:id/nics/:nic',
    {
      schema: {
        tags: ['instances'],
        summary: 'Remove a NIC from an instance (hot-unplugged when running); its addresses are freed',
        params: NicParams,
        querystring: ProjectWaitQuery,
        response: { 200: Operation, 202: Operation, ...errors },
      },
    },
    async (req, reply) => {
      const p = req.params as { id: string; nic: string };
      return answer(
        reply,
        await waitFor(s, req, await s.instances.removeNic(req.principal, p.id, projectOf(req.query as PW), p.nic)),
      );
    },
  );
}
