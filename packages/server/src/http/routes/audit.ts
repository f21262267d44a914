import { AuditQuery, AuditRecord, Page } from '@floe/api';
import type { Services } from '../../wiring.js';
import { errors, type Api } from '../routing.js';

/** The audit log (operators). */
export function auditRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/audit',
    {
      schema: {
        tags: ['audit'],
        summary:
          'Audit log (admin): every mutating request and authentication event with its requestor and outcome, newest first',
        querystring: AuditQuery,
        response: { 200: Page(AuditRecord), ...errors },
      },
    },
    (req) => s.audit.list(req.principal, req.query),
  );
}
