import fastifyRateLimit from '@fastify/rate-limit';
import { FloeError } from '@floe/api';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RateLimits } from '../config.js';

/** The error codes that mean "this caller failed to authenticate". */
const AUTH_FAILURES = new Set(['unauthenticated', 'client_certificate_required']);

/** Addresses remembered as over their limit of failed authentications, at most. */
const MAX_BLOCKED = 10_000;

/** The 429 of every limit: the envelope with `rate_limited`; `Retry-After` is set beside it. */
function rateLimited(seconds: number): FloeError {
  return new FloeError('rate_limited', `too many requests from this address; retry in ${seconds} s`, {
    retry_after_s: seconds,
  });
}

/**
 * Per-client-address limits (the socket's address, as no proxy is trusted): unauthenticated endpoints
 * (/healthz, the OpenAPI document, /docs), host joins, and failed authentications, so tokens cannot be
 * guessed at speed. Once an address has failed too often, every request from it is refused before its
 * token is even looked at, until the window ends. Requests with a valid token are never counted.
 * Call before the routes and the authentication hook are added.
 */
export async function installRateLimits(app: FastifyInstance, limits: RateLimits): Promise<void> {
  await app.register(fastifyRateLimit, {
    global: false,
    hook: 'onRequest',
    cache: MAX_BLOCKED,
    errorResponseBuilder: (_req, context) => rateLimited(Math.ceil(context.ttl / 1000)),
  });
  // One counter per limit (not per route): all public endpoints share one.
  const limiter = (max: number) => (max === 0 ? null : app.rateLimit({ max, timeWindow: limits.windowMs }));
  const publicLimit = limiter(limits.publicRequests);
  const joinLimit = limiter(limits.joins);
  const limitOf = (url: string, isPublic: boolean) => {
    if (url === '/v1/hosts/join') return joinLimit;
    // Agent endpoints authenticate by client certificate: only their failures count.
    if (url.startsWith('/v1/agent')) return null;
    if (isPublic || url === '/docs' || url.startsWith('/docs/')) return publicLimit;
    return null;
  };
  app.addHook('onRoute', (route) => {
    const limit = limitOf(route.url, route.config?.public === true);
    if (limit === null) return;
    const hooks = route.onRequest;
    route.onRequest = [...(hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]), limit];
  });
  if (limits.authFailures === 0) return;

  const countFailure = app.createRateLimit({ max: limits.authFailures, timeWindow: limits.windowMs });
  const blockedUntil = new Map<string, number>();
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const until = blockedUntil.get(request.ip);
    if (until === undefined) return;
    const now = Date.now();
    if (until <= now) {
      blockedUntil.delete(request.ip);
      return;
    }
    const seconds = Math.ceil((until - now) / 1000);
    void reply.header('retry-after', String(seconds));
    throw rateLimited(seconds);
  });
  app.addHook('onError', async (request, _reply, err) => {
    if (!(err instanceof FloeError) || !AUTH_FAILURES.has(err.code)) return;
    const counted = await countFailure(request);
    if (counted.isAllowed || !counted.isExceeded) return;
    if (blockedUntil.size >= MAX_BLOCKED) {
      const now = Date.now();
      for (const [ip, until] of blockedUntil) if (until <= now) blockedUntil.delete(ip);
      if (blockedUntil.size >= MAX_BLOCKED) blockedUntil.delete(blockedUntil.keys().next().value!);
    }
    blockedUntil.set(request.ip, Date.now() + counted.ttl);
  });
}
