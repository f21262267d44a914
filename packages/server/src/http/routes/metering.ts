import { IdOrNameParams, meteringCsv, MeteringQuery, MeteringReport } from '@floe/api';
import type { Services } from '../../wiring.js';
import { errors, type Api } from '../routing.js';

/** What a project's resources held over a window, as JSON or CSV (docs/metering.md). */
export function meteringRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/projects/:id/metering',
    {
      schema: {
        tags: ['projects'],
        summary:
          'Sums of quantity × seconds per dimension (and resource, and UTC day) over [from, to); CSV with `Accept: text/csv` or `format=csv`',
        params: IdOrNameParams,
        querystring: MeteringQuery,
        response: { 200: MeteringReport, ...errors },
      },
    },
    async (req, reply) => {
      const report = await s.metering.report(req.principal, req.params.id, req.query);
      const csv = req.query.format === 'csv' || (req.query.format === undefined && wantsCsv(req.headers.accept));
      if (!csv) return report;
      reply.header('content-type', 'text/csv; charset=utf-8');
      // A string with a content type that is not JSON is sent as it is, not serialized.
      return reply.send(meteringCsv(report) as never);
    },
  );
}

/** True when the Accept header prefers CSV to JSON. */
function wantsCsv(accept: string | undefined): boolean {
  return accept !== undefined && /\btext\/csv\b/i.test(accept) && !/application\/json/i.test(accept);
}
