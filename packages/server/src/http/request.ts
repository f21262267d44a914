import { FloeError } from '@floe/api';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../services/context.js';
import type { RoutePolicy } from './policy.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; set for every non-public route. */
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** No bearer token needed. */
    public?: boolean;
    /** The route's entry in the policy table (http/policy.ts), set when the route is registered. */
    policy?: RoutePolicy;
  }
}

/** Parse `If-Match: "3"` (or `W/"3"`, `3`) into a revision; `*` or absent → undefined. */
export function ifMatch(request: FastifyRequest): number | undefined {
  const raw = request.headers['if-match'];
  if (raw === undefined || raw === '*') return undefined;
  const m = /^(?:W\/)?"?(\d{1,12})"?$/.exec(String(raw).trim());
  if (!m) throw new FloeError('validation_failed', 'If-Match must be an ETag such as "3"', { field: 'If-Match' });
  return Number(m[1]);
}

/** Set the ETag of a resource answer. */
export function etag(reply: FastifyReply, revision: number): void {
  reply.header('etag', `"${revision}"`);
}

/** The project names resolve in: `?project=`, else "default". */
export function projectOf(query: { project?: string | undefined }): string {
  return query.project ?? 'default';
}
