import {
  IdOrNameParams,
  ListQuery,
  Network,
  NetworkCreate,
  NetworkPatch,
  NicAdd,
  NicAdded,
  NicList,
  NicParams,
  NicPatch,
  Operation,
  Page,
  ProjectQuery,
  ProjectWaitQuery,
  type NicRequest,
} from '@floe/api';
import type { Services } from '../../wiring.js';
import { isTerminal } from '../../services/operations.js';
import { answerAtCommit } from '../idempotency.js';
import { etag, ifMatch, projectOf } from '../request.js';
import { answerOperation, errors, noContent, strict, waited, type Api } from '../routing.js';

/** Networks and the NICs of instances. */
export function networkRoutes(app: Api, s: Services): void {
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
    (req) => s.networks.list(req.principal, req.query),
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
      const n = await s.networks.create(req.principal, req.body);
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
      const n = await s.networks.get(req.principal, req.params.id, projectOf(req.query));
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
      const n = await s.networks.update(req.principal, req.params.id, projectOf(req.query), req.body, ifMatch(req));
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
      await s.networks.delete(req.principal, req.params.id, projectOf(req.query), ifMatch(req));
      return reply.code(204).send(null);
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
        response: { 200: NicList, ...errors },
      },
    },
    async (req) => ({
      items: await s.instances.nics(req.principal, req.params.id, projectOf(req.query)),
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
        response: { 200: NicAdded, 202: NicAdded, ...errors },
      },
    },
    async (req, reply) => {
      const { nic, operation } = await s.instances.addNic(
        req.principal,
        req.params.id,
        projectOf(req.query),
        req.body satisfies NicRequest,
        answerAtCommit(req, (r) => ({ status: isTerminal(r.operation.status) ? 200 : 202, body: r })),
      );
      const op = await waited(s, req, operation, req.query.wait);
      return answerOperation(reply, op, { nic, operation: op });
    },
  );
  app.patch(
    '/v1/instances/:id/nics/:nic',
    {
      schema: {
        tags: ['instances'],
        summary: "Change a NIC's security groups, filtering or rate limits (applied to the running instance)",
        params: NicParams,
        querystring: ProjectWaitQuery,
        body: strict(NicPatch),
        response: { 200: NicAdded, 202: NicAdded, ...errors },
      },
    },
    async (req, reply) => {
      const { id, nic: nicId } = req.params;
      const { nic, operation } = await s.instances.updateNic(req.principal, id, projectOf(req.query), nicId, req.body);
      const op = await waited(s, req, operation, req.query.wait);
      return answerOperation(reply, op, { nic, operation: op });
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
      const { id, nic } = req.params;
      const op = await s.instances.removeNic(req.principal, id, projectOf(req.query), nic);
      return answerOperation(reply, await waited(s, req, op, req.query.wait));
    },
  );
}
