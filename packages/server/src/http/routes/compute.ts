import {
  HistoryEntry,
  Host,
  HostJoin,
  HostJoined,
  HostPatch,
  IdOrNameParams,
  Instance,
  InstanceCreate,
  InstancePatch,
  InstanceStop,
  JoinTokenCreate,
  JoinTokenCreated,
  ListQuery,
  Operation,
  OperationWaitQuery,
  Page,
  ProjectQuery,
  type HostJoin as HostJoinT,
} from '@floe/api';
import { Type } from 'typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Services } from '../../app.js';
import { isTerminal } from '../../services/operations.js';
import { etag, ifMatch, projectOf } from '../request.js';
import { bodyOptional, errors, noContent, strict } from './resources.js';

const ProjectWaitQuery = Type.Object({ ...ProjectQuery.properties, ...OperationWaitQuery.properties });
type PW = { project?: string; wait?: number };

/** The response text of instances the read cache shares (frozen objects), made by the route's own serializer. */
const instanceJson = new WeakMap<Instance, ReturnType<FastifyReply['serialize']>>();

/** Answer with an operation: 202 while it runs, 200 once it ended (after `?wait=`). */
async function answerOperation(
  s: Services,
  req: FastifyRequest,
  reply: FastifyReply,
  op: Operation,
): Promise<Operation> {
  const wait = (req.query as PW).wait ?? 0;
  const final = wait > 0 ? await s.operations.wait(req.principal, op.id, wait) : op;
  reply.header('location', `/v1/operations/${final.id}`);
  return reply.code(isTerminal(final.status) ? 200 : 202).send(final);
}

/** Instances, operations and hosts: everything that involves host work. */
export function computeRoutes(app: FastifyInstance, s: Services): void {
  // ---------------------------------------------------------------- instances
  const InstanceOp = Type.Object({ instance: Instance, operation: Operation });
  app.get(
    '/v1/instances',
    {
      schema: {
        tags: ['instances'],
        summary: 'List instances',
        querystring: ListQuery,
        response: { 200: Page(Instance), ...errors },
      },
    },
    (req) => s.instances.list(req.principal, req.query as ListQuery),
  );
  app.post(
    '/v1/instances',
    {
      schema: {
        tags: ['instances'],
        summary: 'Create an instance; answers with the operation that starts it',
        querystring: OperationWaitQuery,
        body: strict(InstanceCreate),
        response: { 200: InstanceOp, 202: InstanceOp, ...errors },
      },
    },
    async (req, reply) => {
      const created = await s.instances.create(req.principal, req.body as InstanceCreate);
      const wait = (req.query as PW).wait ?? 0;
      let { instance, operation } = created;
      if (wait > 0) {
        operation = await s.operations.wait(req.principal, operation.id, wait);
        instance = await s.instances.get(req.principal, instance.id, instance.project).catch(() => instance);
      }
      reply.header('location', `/v1/instances/${instance.id}`);
      return reply.code(isTerminal(operation.status) ? 200 : 202).send({ instance, operation });
    },
  );
  app.get(
    '/v1/instances/:id',
    {
      schema: {
        tags: ['instances'],
        summary: 'Show an instance',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: Instance, ...errors },
      },
    },
    async (req, reply) => {
      const i = await s.instances.get(req.principal, (req.params as { id: string }).id, projectOf(req.query as PW));
      etag(reply, i.revision);
      if (!Object.isFrozen(i)) return i;
      // A frozen instance is shared through the read cache and never changes: serialize it once.
      let json = instanceJson.get(i);
      if (json === undefined) {
        json = reply.serialize(i);
        instanceJson.set(i, json);
      }
      return reply.type('application/json; charset=utf-8').send(json);
    },
  );
  app.patch(
    '/v1/instances/:id',
    {
      schema: {
        tags: ['instances'],
        summary: 'Update labels, metadata or the restart policy (JSON merge patch)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        body: strict(InstancePatch),
        response: { 200: Instance, ...errors },
      },
    },
    async (req, reply) => {
      const i = await s.instances.update(
        req.principal,
        (req.params as { id: string }).id,
        projectOf(req.query as PW),
        req.body as InstancePatch,
        ifMatch(req),
      );
      etag(reply, i.revision);
      return i;
    },
  );
  app.delete(
    '/v1/instances/:id',
    {
      schema: {
        tags: ['instances'],
        summary: 'Delete an instance',
        params: IdOrNameParams,
        querystring: ProjectWaitQuery,
        response: { 200: Operation, 202: Operation, ...errors },
      },
    },
    async (req, reply) =>
      answerOperation(
        s,
        req,
        reply,
        await s.instances.delete(
          req.principal,
          (req.params as { id: string }).id,
          projectOf(req.query as PW),
          ifMatch(req),
        ),
      ),
  );
  for (const action of ['start', 'stop', 'restart'] as const) {
    app.post(
      `/v1/instances/:id/${action}`,
      {
        ...(action === 'stop' ? { preValidation: bodyOptional } : {}),
        schema: {
          tags: ['instances'],
          summary: `${action[0]!.toUpperCase()}${action.slice(1)} an instance`,
          params: IdOrNameParams,
          querystring: ProjectWaitQuery,
          ...(action === 'stop' ? { body: strict(InstanceStop) } : {}),
          response: { 200: Operation, 202: Operation, ...errors },
        },
      },
      async (req, reply) => {
        const force = action === 'stop' && (req.body as { force?: boolean } | undefined)?.force === true;
        return answerOperation(
          s,
          req,
          reply,
          await s.instances.power(
            req.principal,
            (req.params as { id: string }).id,
            projectOf(req.query as PW),
            action,
            force,
          ),
        );
      },
    );
  }
  app.get(
    '/v1/instances/:id/history',
    {
      schema: {
        tags: ['instances'],
        summary: 'Change history of an instance',
        params: IdOrNameParams,
        querystring: ListQuery,
        response: { 200: Page(HistoryEntry), ...errors },
      },
    },
    (req) =>
      s.instances.history(
        req.principal,
        (req.params as { id: string }).id,
        projectOf(req.query as PW),
        req.query as ListQuery,
      ),
  );

  // ---------------------------------------------------------------- operations
  const OpListQuery = Type.Object({ ...ListQuery.properties, status: Type.Optional(Type.String({ maxLength: 20 })) });
  app.get(
    '/v1/operations',
    {
      schema: {
        tags: ['operations'],
        summary: 'List operations, newest first',
        querystring: OpListQuery,
        response: { 200: Page(Operation), ...errors },
      },
    },
    (req) =>
      s.operations.list(
        req.principal,
        req.query as { project?: string; status?: string; limit?: number; cursor?: string },
      ),
  );
  app.get(
    '/v1/operations/:id',
    {
      schema: {
        tags: ['operations'],
        summary: 'Show an operation; ?wait=SECONDS blocks until it ends',
        params: IdOrNameParams,
        querystring: OperationWaitQuery,
        response: { 200: Operation, ...errors },
      },
    },
    (req) => {
      const { wait } = req.query as PW;
      const id = (req.params as { id: string }).id;
      if (!wait) return s.operations.get(req.principal, id);
      const abort = new AbortController();
      req.raw.once('close', () => abort.abort());
      return s.operations.wait(req.principal, id, wait, abort.signal);
    },
  );
  app.post(
    '/v1/operations/:id/cancel',
    {
      schema: {
        tags: ['operations'],
        summary: 'Cancel a pending operation, or a running image import (the download stops)',
        params: IdOrNameParams,
        response: { 200: Operation, ...errors },
      },
    },
    (req) => s.operations.cancel(req.principal, (req.params as { id: string }).id),
  );

  // ---------------------------------------------------------------- hosts
  app.get(
    '/v1/hosts',
    {
      schema: {
        tags: ['hosts'],
        summary: 'List hosts (admin)',
        querystring: ListQuery,
        response: { 200: Page(Host), ...errors },
      },
    },
    (req) => s.hosts.list(req.principal, req.query as ListQuery),
  );
  app.get(
    '/v1/hosts/:id',
    {
      schema: {
        tags: ['hosts'],
        summary: 'Show a host (admin)',
        params: IdOrNameParams,
        response: { 200: Host, ...errors },
      },
    },
    async (req, reply) => {
      const h = await s.hosts.get(req.principal, (req.params as { id: string }).id);
      etag(reply, h.revision);
      return h;
    },
  );
  app.patch(
    '/v1/hosts/:id',
    {
      schema: {
        tags: ['hosts'],
        summary: 'Drain or label a host (admin)',
        params: IdOrNameParams,
        body: strict(HostPatch),
        response: { 200: Host, ...errors },
      },
    },
    async (req, reply) => {
      const h = await s.hosts.update(
        req.principal,
        (req.params as { id: string }).id,
        req.body as HostPatch,
        ifMatch(req),
      );
      etag(reply, h.revision);
      return h;
    },
  );
  app.delete(
    '/v1/hosts/:id',
    {
      schema: {
        tags: ['hosts'],
        summary: 'Remove an empty host (admin); its agent is disconnected',
        params: IdOrNameParams,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      const h = await s.hosts.delete(req.principal, (req.params as { id: string }).id);
      s.hub.revoke(h.id);
      return reply.code(204).send();
    },
  );
  app.post(
    '/v1/hosts/join-tokens',
    {
      preValidation: bodyOptional,
      schema: {
        tags: ['hosts'],
        summary: 'Create a one-time host join token (admin)',
        body: strict(JoinTokenCreate),
        response: { 201: JoinTokenCreated, ...errors },
      },
    },
    async (req, reply) =>
      reply
        .code(201)
        .send(
          await s.hosts.createJoinToken(
            req.principal,
            (req.body as { expires_in_minutes?: number } | undefined)?.expires_in_minutes ?? 60,
          ),
        ),
  );
  app.post(
    '/v1/hosts/join',
    {
      config: { public: true },
      schema: {
        tags: ['hosts'],
        summary: 'An agent trades a join token and a CSR for its certificate',
        security: [],
        body: strict(HostJoin),
        response: { 201: HostJoined, ...errors },
      },
    },
    async (req, reply) => {
      const body = req.body as HostJoinT;
      const { host, certPem } = await s.hosts.join(body.token, body.name, (hostId) => s.pki.signCsr(body.csr, hostId));
      return reply.code(201).send({ host, certificate: certPem, ca: s.pki.caPem });
    },
  );
}
