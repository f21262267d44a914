import { IdOrNameParams, Operation, OperationListQuery, OperationWaitQuery, Page } from '@floe/api';
import type { Services } from '../../wiring.js';
import { errors, type Api } from '../routing.js';

/** Operations: the work on hosts, followed until it ends. */
export function operationRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/operations',
    {
      schema: {
        tags: ['operations'],
        summary: 'List operations, newest first',
        querystring: OperationListQuery,
        response: { 200: Page(Operation), ...errors },
      },
    },
    (req) => s.operations.list(req.principal, req.query),
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
      const { wait } = req.query;
      const { id } = req.params;
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
    (req) => s.operations.cancel(req.principal, req.params.id),
  );
}
