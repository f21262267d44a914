import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The caller a request acts for, while the request is being answered. Events published meanwhile name it
 * (`Event.actor`) without every service passing it along; `ended` once the answer is sent, so work that
 * outlives the request (a timer it started, a download it kicked off) names nobody rather than a stale caller.
 */
export interface ActorScope {
  readonly actor: string | null;
  ended: boolean;
}

const scopes = new AsyncLocalStorage<ActorScope>();

/** Run `fn`, and everything it starts, for `scope`. */
export function runForActor<T>(scope: ActorScope, fn: () => T): T {
  return scopes.run(scope, fn);
}

/**
 * Run `fn`, and everything it starts, for nobody: background work a request kicks off (it lives past the
 * answer, and what it causes is the control plane's doing, like agent reports).
 */
export function runDetached<T>(fn: () => T): T {
  return scopes.run({ actor: null, ended: true }, fn);
}

/** The actor of the request being answered here, or null (no request, a public route, or its answer is sent). */
export function currentActor(): string | null {
  const scope = scopes.getStore();
  return scope === undefined || scope.ended ? null : scope.actor;
}
