import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { principalUser, type AuditEntry, type AuditLog } from '../services/audit.js';
import type { AuthNote } from '../services/audit-note.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** What authentication said about this request, for the audit log (set by the bearer hook). */
    auditAuth?: AuthNote;
    /** The error code, or the created resource, read from the answer for the audit log. */
    auditAnswer?: { code?: string; id?: string; project?: string };
    /**
     * What a route records itself (an action its method and URL do not name, the user a login named); also
     * records a GET. Null: the request leaves no record (a poll that found nothing new).
     */
    auditOverride?: Partial<AuditEntry> | null;
  }
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** A value that looks like a secret of ours (a token pasted into a path) is never stored. */
function scrub(value: string | undefined): string | null {
  if (value === undefined) return null;
  return value.startsWith('floe_') ? '[redacted]' : value.slice(0, 200);
}

/** `machine-types` → `machine_type`. */
function singular(segment: string): string {
  return segment.replace(/-/g, '_').replace(/s$/, '');
}

/**
 * The action and resource kind a route pattern stands for: `POST /v1/instances` → `instance.create`,
 * `DELETE /v1/tokens/:id` → `token.revoke`, `POST /v1/instances/:id/start` → `instance.start`,
 * `POST /v1/instances/:id/nics` → `nic.create`, `PUT /v1/images/:id/file` → `image.file`.
 */
export function actionOf(method: string, route: string | undefined): { action: string; kind: string | null } {
  if (route === undefined) return { action: 'request.unrouted', kind: null };
  const parts = route.split('/').filter((p) => p !== '' && p !== 'v1');
  if (parts.length === 0) return { action: `${method.toLowerCase()}`, kind: null };
  const kind = singular(parts[0]!);
  const verbOf = (k: string) => {
    if (method === 'POST') return 'create';
    if (method === 'DELETE') return k === 'token' ? 'revoke' : 'delete';
    if (method === 'PATCH') return 'update';
    return 'replace';
  };
  // /v1/kind and /v1/kind/:id
  if (parts.length === 1 || (parts.length === 2 && parts[1]!.startsWith(':')))
    return { action: `${kind}.${verbOf(kind)}`, kind };
  // /v1/kind/verb (images/import, hosts/join, hosts/join-tokens)
  if (parts.length === 2) return { action: `${kind}.${parts[1]!.replace(/-/g, '_')}`, kind };
  const sub = parts[2]!;
  // /v1/kind/:id/sub/:sub: a child resource
  if (parts.length >= 4 && parts[3]!.startsWith(':'))
    return { action: `${singular(sub)}.${verbOf(singular(sub))}`, kind: singular(sub) };
  // /v1/kind/:id/nics (a collection of children) vs /v1/kind/:id/start (a verb)
  if (method === 'POST' && sub.endsWith('s')) return { action: `${singular(sub)}.create`, kind: singular(sub) };
  return { action: `${kind}.${sub.replace(/-/g, '_')}`, kind };
}

/** The `project` of a JSON object, if it names one. */
function projectIn(value: unknown): string | undefined {
  const p = (value as { project?: unknown } | null | undefined)?.project;
  return typeof p === 'string' ? p : undefined;
}

/** The id a create answered with: `{id}`, or `{instance: {id}}`, `{token: {id}}`, `{nic: {id}}`. */
function createdId(body: Record<string, unknown>): { id?: string; project?: string } {
  if (typeof body.id === 'string') return { id: body.id, ...(projectIn(body) ? { project: projectIn(body)! } : {}) };
  for (const v of Object.values(body)) {
    if (v !== null && typeof v === 'object' && typeof (v as { id?: unknown }).id === 'string') {
      const p = projectIn(v);
      return { id: (v as { id: string }).id, ...(p ? { project: p } : {}) };
    }
  }
  return {};
}

function audited(request: FastifyRequest): boolean {
  if (request.auditOverride === null) return false;
  return MUTATING.has(request.method) || request.auditAuth !== undefined || request.auditOverride !== undefined;
}

/** The records one finished request leaves: its own (mutating or failed authentication) and a token's first use. */
export function auditEntries(request: FastifyRequest, reply: FastifyReply, at: string): AuditEntry[] {
  const route = request.routeOptions.url;
  const auth = request.auditAuth;
  const principal = (request as { principal?: FastifyRequest['principal'] }).principal;
  const user = principalUser(principal);
  // A caller an external checker vouched for presented no floe token: its actor is not a token's id.
  const tokenId = (principal?.authenticator === undefined ? principal?.actor : undefined) ?? auth?.tokenId ?? null;
  const presented = principal !== undefined || (auth?.failure !== undefined && auth.failure !== 'missing');
  const authenticator = presented ? (principal?.authenticator ?? auth?.authenticator ?? 'token') : null;
  const params = (request.params ?? {}) as Record<string, string | undefined>;
  const { action, kind } = actionOf(request.method, route);
  const answer = request.auditAnswer ?? {};
  const status = reply.statusCode;
  const base: AuditEntry = {
    at,
    action,
    outcome: status < 400 ? 'ok' : 'error',
    status,
    error_code: status >= 400 ? (answer.code ?? null) : null,
    reason: null,
    token_id: tokenId,
    user_id: user?.id ?? null,
    user_name: user?.name ?? null,
    authenticator,
    source_address: request.socket?.remoteAddress ?? request.ip,
    method: request.method,
    route: route ?? null,
    resource_kind: kind,
    resource_id: scrub(params.nic ?? params.id ?? answer.id),
    project: scrub(
      projectIn(request.query) ??
        (request.body instanceof Object ? projectIn(request.body) : undefined) ??
        answer.project,
    ),
    request_id: String(request.id),
    ...request.auditOverride,
  };
  const out: AuditEntry[] = [];
  const login = auth?.login;
  if (login !== undefined)
    out.push({
      ...base,
      action: login.action,
      reason: login.reason ?? null,
      token_id: login.tokenId ?? base.token_id,
      user_id: login.user?.id ?? base.user_id,
      user_name: login.user?.name ?? base.user_name,
      authenticator: login.authenticator ?? base.authenticator,
      // What the login made or ended: the session token; a failed login is about the user, once known.
      resource_kind: login.tokenId !== undefined ? 'token' : 'user',
      resource_id: login.tokenId ?? login.user?.id ?? null,
    });
  else if (auth?.failure !== undefined) out.push({ ...base, action: 'auth.failed', reason: auth.failure });
  else if (MUTATING.has(request.method) || request.auditOverride != null) out.push(base);
  if (auth?.firstUse !== undefined)
    out.push({
      ...base,
      action: 'token.first_use',
      outcome: 'ok',
      status: null,
      error_code: null,
      resource_kind: 'token',
      resource_id: auth.firstUse,
      project: null,
    });
  return out;
}

/**
 * Record every mutating request (refused and failed ones too) and every authentication event in the
 * audit log as the answer goes out; records are written to the database later, in batches. Bodies, headers and secrets are never recorded: the
 * error code and the created resource's id are read from the answer, nothing else.
 */
export function installAudit(app: FastifyInstance, audit: AuditLog): void {
  // One callback-style hook (no promise per request): the status and the answer are final here, and
  // queueing the record costs a push; the write happens later, in a batch.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (audited(request)) {
      if (typeof payload === 'string') readAnswer(request, reply, payload);
      for (const entry of auditEntries(request, reply, new Date().toISOString())) audit.record(entry);
    }
    done(null, payload);
  });
}

/** The error code of a refused request, or the id of what a POST created, from the answer's JSON. */
function readAnswer(request: FastifyRequest, reply: FastifyReply, payload: string): void {
  const failed = reply.statusCode >= 400;
  if (!failed && request.method !== 'POST') return;
  try {
    const body = JSON.parse(payload) as Record<string, unknown> | null;
    if (failed) {
      const code = (body?.error as { code?: unknown } | undefined)?.code;
      if (typeof code === 'string') request.auditAnswer = { code };
    } else if (body !== null && typeof body === 'object') request.auditAnswer = createdId(body);
  } catch {
    // Not JSON: nothing to read.
  }
}
