import {
  FloatingIp,
  FloatingIpAttach,
  FloatingIpChanged,
  FloatingIpCreate,
  HistoryEntry,
  IdOrNameParams,
  ListQuery,
  Page,
  PortForward,
  PortForwardCreate,
  ProjectQuery,
  ProjectWaitQuery,
} from '@floe/api';
import type { Services } from '../../wiring.js';
import { etag, projectOf } from '../request.js';
import { answerOperation, errors, noContent, strict, waited, type Api } from '../routing.js';

/** Floating IPs and port forwards: public traffic NATed to NICs. */
export function natRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/floating-ips',
    {
      schema: {
        tags: ['floating-ips'],
        summary: 'List floating IPs',
        querystring: ListQuery,
        response: { 200: Page(FloatingIp), ...errors },
      },
    },
    (req) => s.floatingIps.list(req.principal, req.query),
  );
  app.post(
    '/v1/floating-ips',
    {
      schema: {
        tags: ['floating-ips'],
        summary: "Take an address of a public network's pool, optionally attached to an instance at once",
        body: strict(FloatingIpCreate),
        response: { 201: FloatingIp, ...errors },
      },
    },
    async (req, reply) => {
      const f = await s.floatingIps.create(req.principal, req.body);
      etag(reply, f.revision);
      reply.header('location', `/v1/floating-ips/${f.id}`);
      return reply.code(201).send(f);
    },
  );
  app.get(
    '/v1/floating-ips/:id',
    {
      schema: {
        tags: ['floating-ips'],
        summary: 'Show a floating IP (by id, name or address)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: FloatingIp, ...errors },
      },
    },
    async (req, reply) => {
      const f = await s.floatingIps.get(req.principal, req.params.id, projectOf(req.query));
      etag(reply, f.revision);
      return f;
    },
  );
  app.post(
    '/v1/floating-ips/:id/attach',
    {
      schema: {
        tags: ['floating-ips'],
        summary:
          "Attach to an instance's NIC (one to one NAT), moving it from where it was in one step: an operation on that instance",
        params: IdOrNameParams,
        querystring: ProjectWaitQuery,
        body: strict(FloatingIpAttach),
        response: { 200: FloatingIpChanged, 202: FloatingIpChanged, ...errors },
      },
    },
    async (req, reply) => {
      const r = await s.floatingIps.attach(req.principal, req.params.id, projectOf(req.query), req.body);
      const op = await waited(s, req, r.operation, req.query.wait);
      etag(reply, r.floating_ip.revision);
      return answerOperation(reply, op, { floating_ip: r.floating_ip, operation: op });
    },
  );
  app.post(
    '/v1/floating-ips/:id/detach',
    {
      schema: {
        tags: ['floating-ips'],
        summary: 'Detach from its NIC, an operation on the instance it leaves; the project keeps the address',
        params: IdOrNameParams,
        querystring: ProjectWaitQuery,
        response: { 200: FloatingIpChanged, 202: FloatingIpChanged, ...errors },
      },
    },
    async (req, reply) => {
      const r = await s.floatingIps.detach(req.principal, req.params.id, projectOf(req.query));
      const op = await waited(s, req, r.operation, req.query.wait);
      etag(reply, r.floating_ip.revision);
      return answerOperation(reply, op, { floating_ip: r.floating_ip, operation: op });
    },
  );
  app.delete(
    '/v1/floating-ips/:id',
    {
      schema: {
        tags: ['floating-ips'],
        summary: 'Give the address back to the pool',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.floatingIps.delete(req.principal, req.params.id, projectOf(req.query));
      return reply.code(204).send(null);
    },
  );
  app.get(
    '/v1/floating-ips/:id/history',
    {
      schema: {
        tags: ['floating-ips'],
        summary: 'Change history of a floating IP',
        params: IdOrNameParams,
        querystring: ListQuery,
        response: { 200: Page(HistoryEntry), ...errors },
      },
    },
    (req) => s.floatingIps.history(req.principal, req.params.id, projectOf(req.query), req.query),
  );

  app.get(
    '/v1/port-forwards',
    {
      schema: {
        tags: ['port-forwards'],
        summary: 'List port forwards',
        querystring: ListQuery,
        response: { 200: Page(PortForward), ...errors },
      },
    },
    (req) => s.portForwards.list(req.principal, req.query),
  );
  app.post(
    '/v1/port-forwards',
    {
      schema: {
        tags: ['port-forwards'],
        summary: "Forward a port of a floating IP, or of the instance's host, to a port of an instance's NIC",
        body: strict(PortForwardCreate),
        response: { 201: PortForward, ...errors },
      },
    },
    async (req, reply) => {
      const f = await s.portForwards.create(req.principal, req.body);
      etag(reply, f.revision);
      reply.header('location', `/v1/port-forwards/${f.id}`);
      return reply.code(201).send(f);
    },
  );
  app.get(
    '/v1/port-forwards/:id',
    {
      schema: {
        tags: ['port-forwards'],
        summary: 'Show a port forward',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: PortForward, ...errors },
      },
    },
    async (req, reply) => {
      const f = await s.portForwards.get(req.principal, req.params.id, projectOf(req.query));
      etag(reply, f.revision);
      return f;
    },
  );
  app.delete(
    '/v1/port-forwards/:id',
    {
      schema: {
        tags: ['port-forwards'],
        summary: 'Stop forwarding the port',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.portForwards.delete(req.principal, req.params.id, projectOf(req.query));
      return reply.code(204).send(null);
    },
  );
  app.get(
    '/v1/port-forwards/:id/history',
    {
      schema: {
        tags: ['port-forwards'],
        summary: 'Change history of a port forward',
        params: IdOrNameParams,
        querystring: ListQuery,
        response: { 200: Page(HistoryEntry), ...errors },
      },
    },
    (req) => s.portForwards.history(req.principal, req.params.id, projectOf(req.query), req.query),
  );
}
