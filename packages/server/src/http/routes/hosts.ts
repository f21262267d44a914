import {
  Host,
  HostJoin,
  HostJoined,
  HostPatch,
  IdOrNameParams,
  JoinTokenCreate,
  JoinTokenCreated,
  ListQuery,
  Page,
} from '@floe/api';
import type { Services } from '../../wiring.js';
import { etag, ifMatch } from '../request.js';
import { bodyOptional, errors, noContent, strict, type Api } from '../routing.js';

/** Hosts (admin) and how agents join. */
export function hostRoutes(app: Api, s: Services): void {
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
    (req) => s.hosts.list(req.principal, req.query),
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
      const h = await s.hosts.get(req.principal, req.params.id);
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
      const h = await s.hosts.update(req.principal, req.params.id, req.body, ifMatch(req));
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
      const h = await s.hosts.delete(req.principal, req.params.id);
      s.hub.revoke(h.id);
      return reply.code(204).send(null);
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
      reply.code(201).send(await s.hosts.createJoinToken(req.principal, req.body.expires_in_minutes ?? 60)),
  );
  app.post(
    '/v1/hosts/join',
    {
      config: { public: true },
      schema: {
        tags: ['hosts'],
        summary: 'An agent trades a join token and a CSR for its certificate',
        description:
          'Needs no bearer token: the one-time join token is the credential. `Idempotency-Key` is ignored here, ' +
          'as on every unauthenticated request (nothing is stored for anonymous callers); a repeated join is ' +
          'refused because its token is spent. Limited per client address (FLOE_RATE_LIMIT_JOIN joins a window).',
        security: [],
        body: strict(HostJoin),
        response: { 201: HostJoined, ...errors },
      },
    },
    async (req, reply) => {
      const { token, name, csr } = req.body;
      const { host, certPem } = await s.hosts.join(token, name, (hostId) => s.pki.signCsr(csr, hostId));
      return reply.code(201).send({ host, certificate: certPem, ca: s.pki.caPem });
    },
  );
}
