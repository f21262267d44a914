import type { FastifyInstance, FastifyRequest } from 'fastify';
import { runForActor, type ActorScope } from '../services/actor.js';

const scopeOf = new WeakMap<FastifyRequest, ActorScope>();

/**
 * Run each route's handler (and what it awaits) for the caller the request was authenticated as, so the
 * events it publishes name that caller (services/actor.ts); a public route's handler runs for nobody. Its
 * answer sent, the scope ends: whatever the request left running names nobody from then on.
 *
 * A preHandler, not part of the authenticating onRequest hook: an async hook's context does not reach the
 * handler, and body parsing in between runs outside it. The handler is called from within `done`.
 */
export function installActorScope(http: FastifyInstance): void {
  http.addHook('preHandler', (request, _reply, done) => {
    // `principal` is set for every route but the public ones.
    const principal = request.principal as FastifyRequest['principal'] | undefined;
    const scope: ActorScope = { actor: principal?.actor ?? null, ended: false };
    scopeOf.set(request, scope);
    runForActor(scope, done);
  });
  http.addHook('onResponse', (request, _reply, done) => {
    const scope = scopeOf.get(request);
    if (scope !== undefined) scope.ended = true;
    done();
  });
}
