import { ErrorEnvelope, type Operation } from '@floe/api';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type TSchema } from 'typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import { isTerminal } from '../services/operations.js';
import type { Services } from '../wiring.js';

/**
 * The server as routes see it: params, query and body are typed from the route's TypeBox schemas
 * (and checked against them at runtime by the validator compiler of app.ts).
 */
export type Api = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** Adds one family of routes. */
export type RouteFamily = (app: Api, s: Services) => void;

/** Reject unknown fields in request bodies (typos must not pass silently). */
export function strict<T extends TSchema>(schema: T): T {
  return { ...schema, additionalProperties: false };
}

/**
 * preValidation hook for POSTs whose body fields are all optional: no body at
 * all (as `curl -X POST` sends) is validated as `{}` instead of failing.
 */
export function bodyOptional(request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  if (request.body === undefined) request.body = {};
  done();
}

/** Error answers every route documents. */
export const errors = { '4xx': ErrorEnvelope, '5xx': ErrorEnvelope };

/** A documented 204. */
export const noContent = { 204: Type.Null({ description: 'done' }) };

/** The operation after `?wait=SECONDS`: its state once it ended or the time ran out (at once without a wait). */
export async function waited(
  s: Services,
  req: FastifyRequest,
  op: Operation,
  wait: number | undefined,
): Promise<Operation> {
  return wait !== undefined && wait > 0 ? s.operations.wait(req.principal, op.id, wait) : op;
}

/**
 * Answer with an operation (or a body holding it): 202 while it runs, 200 once it ended,
 * and the operation's URL in `Location`.
 */
export function answerOperation(reply: FastifyReply, op: Operation, body: unknown = op): FastifyReply {
  reply.header('location', `/v1/operations/${op.id}`);
  return reply.code(isTerminal(op.status) ? 200 : 202).send(body);
}

/** Send JSON text serialized beforehand (by the route's own serializer), as is. */
export function sendJson(reply: FastifyReply, json: ReturnType<FastifyReply['serialize']>): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(json);
}
