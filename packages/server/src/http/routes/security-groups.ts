import {
  IdOrNameParams,
  ListQuery,
  Page,
  ProjectQuery,
  SecurityGroup,
  SecurityGroupCreate,
  SecurityGroupPatch,
  SgRuleCreate,
  SgRuleParams,
} from '@floe/api';
import type { Services } from '../../wiring.js';
import { etag, ifMatch, projectOf } from '../request.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** Security groups, their rules, and the groups and filtering of a NIC. */
export function securityGroupRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/security-groups',
    {
      schema: {
        tags: ['security-groups'],
        summary: 'List security groups (a project asked for gets its default group)',
        querystring: ListQuery,
        response: { 200: Page(SecurityGroup), ...errors },
      },
    },
    (req) => s.securityGroups.list(req.principal, req.query),
  );
  app.post(
    '/v1/security-groups',
    {
      schema: {
        tags: ['security-groups'],
        summary: 'Create a security group with its allow rules',
        body: strict(SecurityGroupCreate),
        response: { 201: SecurityGroup, ...errors },
      },
    },
    async (req, reply) => {
      const g = await s.securityGroups.create(req.principal, req.body);
      etag(reply, g.revision);
      reply.header('location', `/v1/security-groups/${g.id}`);
      return reply.code(201).send(g);
    },
  );
  app.get(
    '/v1/security-groups/:id',
    {
      schema: {
        tags: ['security-groups'],
        summary: 'Show a security group',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: SecurityGroup, ...errors },
      },
    },
    async (req, reply) => {
      const g = await s.securityGroups.get(req.principal, req.params.id, projectOf(req.query));
      etag(reply, g.revision);
      return g;
    },
  );
  app.patch(
    '/v1/security-groups/:id',
    {
      schema: {
        tags: ['security-groups'],
        summary: 'Update labels, metadata, description or the default verdicts (JSON merge patch)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        body: strict(SecurityGroupPatch),
        response: { 200: SecurityGroup, ...errors },
      },
    },
    async (req, reply) => {
      const g = await s.securityGroups.update(
        req.principal,
        req.params.id,
        projectOf(req.query),
        req.body,
        ifMatch(req),
      );
      etag(reply, g.revision);
      return g;
    },
  );
  app.delete(
    '/v1/security-groups/:id',
    {
      schema: {
        tags: ['security-groups'],
        summary: 'Delete a security group no NIC uses and no rule names (409 in_use otherwise)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.securityGroups.delete(req.principal, req.params.id, projectOf(req.query), ifMatch(req));
      return reply.code(204).send(null);
    },
  );
  app.post(
    '/v1/security-groups/:id/rules',
    {
      schema: {
        tags: ['security-groups'],
        summary: 'Add an allow rule; hosts apply it to running VMs at once',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        body: strict(SgRuleCreate),
        response: { 200: SecurityGroup, ...errors },
      },
    },
    (req) => s.securityGroups.addRule(req.principal, req.params.id, projectOf(req.query), req.body),
  );
  app.delete(
    '/v1/security-groups/:id/rules/:rule',
    {
      schema: {
        tags: ['security-groups'],
        summary: 'Remove a rule; connections it no longer allows get no new ones',
        params: SgRuleParams,
        querystring: ProjectQuery,
        response: { 200: SecurityGroup, ...errors },
      },
    },
    (req) => s.securityGroups.removeRule(req.principal, req.params.id, projectOf(req.query), req.params.rule),
  );
}
