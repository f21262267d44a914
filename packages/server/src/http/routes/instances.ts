import {
  HistoryEntry,
  IdOrNameParams,
  Instance,
  InstanceCreate,
  InstanceCreated,
  InstancePatch,
  InstanceResize,
  InstanceStop,
  ListQuery,
  Operation,
  OperationWaitQuery,
  Page,
  ProjectQuery,
  ProjectWaitQuery,
} from '@floe/api';
import type { FastifyReply } from 'fastify';
import type { Services } from '../../wiring.js';
import { isTerminal } from '../../services/operations.js';
import { answerAtCommit } from '../idempotency.js';
import { etag, ifMatch, projectOf } from '../request.js';
import { answerOperation, bodyOptional, errors, sendJson, strict, waited, type Api } from '../routing.js';

/** The response text of instances the read cache shares (frozen objects), made by the route's own serializer. */
const instanceJson = new WeakMap<Instance, ReturnType<FastifyReply['serialize']>>();

/** Instances: records, power actions and change history. */
export function instanceRoutes(app: Api, s: Services): void {
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
    (req) => s.instances.list(req.principal, req.query),
  );
  app.post(
    '/v1/instances',
    {
      schema: {
        tags: ['instances'],
        summary: 'Create an instance; answers with the operation that starts it',
        querystring: OperationWaitQuery,
        body: strict(InstanceCreate),
        response: { 200: InstanceCreated, 202: InstanceCreated, ...errors },
      },
    },
    async (req, reply) => {
      // Until it is waited for, the answer is the one without a wait; kept with the instance if floed dies here.
      const created = await s.instances.create(
        req.principal,
        req.body,
        answerAtCommit(req, (r) => ({ status: isTerminal(r.operation.status) ? 200 : 202, body: r })),
      );
      const wait = req.query.wait ?? 0;
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
      const i = await s.instances.get(req.principal, req.params.id, projectOf(req.query));
      etag(reply, i.revision);
      if (!Object.isFrozen(i)) return i;
      // A frozen instance is shared through the read cache and never changes: serialize it once.
      let json = instanceJson.get(i);
      if (json === undefined) {
        json = reply.serialize(i);
        instanceJson.set(i, json);
      }
      return sendJson(reply, json);
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
      const i = await s.instances.update(req.principal, req.params.id, projectOf(req.query), req.body, ifMatch(req));
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
    async (req, reply) => {
      const op = await s.instances.delete(req.principal, req.params.id, projectOf(req.query), ifMatch(req));
      return answerOperation(reply, await waited(s, req, op, req.query.wait));
    },
  );
  // Start, stop and restart; only stop takes a body (all optional: `curl -X POST` sends none).
  const power = (action: 'start' | 'restart') =>
    app.post(
      `/v1/instances/:id/${action}`,
      {
        schema: {
          tags: ['instances'],
          summary: `${action[0]!.toUpperCase()}${action.slice(1)} an instance`,
          params: IdOrNameParams,
          querystring: ProjectWaitQuery,
          response: { 200: Operation, 202: Operation, ...errors },
        },
      },
      async (req, reply) => {
        const op = await s.instances.power(req.principal, req.params.id, projectOf(req.query), action, false);
        return answerOperation(reply, await waited(s, req, op, req.query.wait));
      },
    );
  power('start');
  app.post(
    '/v1/instances/:id/stop',
    {
      preValidation: bodyOptional,
      schema: {
        tags: ['instances'],
        summary: 'Stop an instance',
        params: IdOrNameParams,
        querystring: ProjectWaitQuery,
        body: strict(InstanceStop),
        response: { 200: Operation, 202: Operation, ...errors },
      },
    },
    async (req, reply) => {
      const force = req.body.force === true;
      const op = await s.instances.power(req.principal, req.params.id, projectOf(req.query), 'stop', force);
      return answerOperation(reply, await waited(s, req, op, req.query.wait));
    },
  );
  power('restart');
  app.post(
    '/v1/instances/:id/resize',
    {
      schema: {
        tags: ['instances'],
        summary:
          'Resize a stopped instance: vCPUs and memory up or down, the disk only up; the next start boots with the new size',
        params: IdOrNameParams,
        querystring: ProjectWaitQuery,
        body: strict(InstanceResize),
        response: { 200: Operation, 202: Operation, ...errors },
      },
    },
    async (req, reply) => {
      const op = await s.instances.resize(req.principal, req.params.id, projectOf(req.query), req.body);
      return answerOperation(reply, await waited(s, req, op, req.query.wait));
    },
  );
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
    (req) => s.instances.history(req.principal, req.params.id, projectOf(req.query), req.query),
  );
}
