import type { Kind } from '@floe/api';
import type { Verb } from '../services/verbs.js';

/*
 * Who may call each route, what its request does and what it is about: the one table authorization
 * reads. The app takes each request's verb from here, and building the app fails when a registered
 * route has no entry, so a route cannot arrive without a policy. The authorization matrix test
 * (authz-matrix.test.ts) walks this table against every kind of caller.
 */

/**
 * Who may call a route. public: no token needed, and the token changes nothing; docs: the API
 * documentation; agent: a host's client certificate, never a bearer token; admin: admin tokens only;
 * authenticated: any valid token; project: tokens of the resource's project (and admins), as far as
 * their role allows the route's verb; manage: owners of the project (and admins); self: tokens of
 * users, about themselves; tokens: admins for every token, users for their own personal tokens and
 * owners for the project tokens of projects they own (tokens of nobody: forbidden).
 */
export type Access = 'public' | 'docs' | 'agent' | 'admin' | 'authenticated' | 'project' | 'manage' | 'self' | 'tokens';

/**
 * What a request is about: the kind of resource its `:id` names (for `nic`, `:id` is the NIC's
 * instance and `:nic` the NIC), a collection of a project (lists and creates), a member of a
 * project (`:id` the project, `:user` the user), or nothing in particular (null).
 */
export type Target = Kind | 'collection' | 'member' | null;

export interface RoutePolicy {
  readonly access: Access;
  readonly target: Target;
  /** What the request does; a token's scope and a project role allow it or not. */
  readonly verb: Verb;
  /** The kind of resource a collection or a route without `:id` is about (a token's scope of kinds checks it). */
  readonly kind?: Kind;
}

const p = (access: Access, target: Target, verb: Verb, kind?: Kind): RoutePolicy =>
  kind === undefined ? { access, target, verb } : { access, target, verb, kind };
const open = p('public', null, 'read');
const docs = p('docs', null, 'read');
/** A project's collection of `kind`: its list (read) or a new one (create). */
const collection = (kind: Kind, verb: Verb) => p('project', 'collection', verb, kind);

/** The policy table: one entry per route as Fastify registers it (HEAD twins follow their GET). */
export const POLICY: Readonly<Record<string, RoutePolicy>> = {
  'GET /healthz': open,
  'GET /readyz': open,
  'GET /v1/openapi.json': open,
  // The web UI's page and its assets (client-side routes get the page from the not-found handler).
  'GET /': open,
  'GET /assets/*': open,
  'GET /docs': docs,
  'GET /docs/': docs,
  'GET /docs/static/index.html': docs,
  'GET /docs/static/swagger-initializer.js': docs,
  'GET /docs/json': docs,
  'GET /docs/yaml': docs,
  'GET /docs/static/*': docs,

  'GET /v1/projects': p('project', null, 'read', 'project'),
  // Top-level projects: admins; sub-projects: owners of the parent (the service checks which).
  'POST /v1/projects': p('authenticated', null, 'create', 'project'),
  'GET /v1/projects/:id': p('project', 'project', 'read'),
  'PATCH /v1/projects/:id': p('project', 'project', 'update'),
  'DELETE /v1/projects/:id': p('admin', 'project', 'delete'),
  'GET /v1/projects/:id/usage': p('project', 'project', 'read'),
  'GET /v1/projects/:id/limits': p('project', 'project', 'read'),
  'GET /v1/projects/:id/history': p('project', 'project', 'read'),
  // A project's limits are its parent's to give: admins, or owners of the parent (the service checks).
  'PUT /v1/projects/:id/limits': p('authenticated', 'project', 'manage'),

  'GET /v1/tokens': p('tokens', null, 'manage', 'token'),
  'POST /v1/tokens': p('tokens', 'collection', 'manage', 'token'),
  'GET /v1/tokens/:id': p('tokens', 'token', 'manage'),
  'DELETE /v1/tokens/:id': p('tokens', 'token', 'manage'),

  // Logging in needs no token; logging out ends the session the request carries.
  'POST /v1/auth/login': p('public', null, 'create', 'token'),
  // The same login for browsers: the session goes into an HttpOnly cookie (changes then need X-CSRF-Token).
  'POST /v1/auth/session': p('public', null, 'create', 'token'),
  'POST /v1/auth/logout': p('authenticated', null, 'delete', 'token'),
  'POST /v1/users/me/totp': p('self', null, 'update', 'user'),
  'POST /v1/users/me/totp/confirm': p('self', null, 'update', 'user'),
  'DELETE /v1/users/me/totp': p('self', null, 'update', 'user'),
  'DELETE /v1/users/:id/totp': p('admin', 'user', 'update'),
  // OpenID logins: the poll secret and the confirmation code, not a bearer token, guard the session.
  'POST /v1/auth/oidc/:name/start': p('public', null, 'create', 'token'),
  'GET /v1/auth/oidc/callback': open,
  'POST /v1/auth/oidc/confirm': p('public', null, 'create', 'token'),
  'POST /v1/auth/oidc/poll': p('public', null, 'create', 'token'),
  'GET /v1/users': p('admin', null, 'read', 'user'),
  'POST /v1/users': p('admin', null, 'create', 'user'),
  'GET /v1/users/me': p('self', null, 'read', 'user'),
  'POST /v1/users/me/password': p('self', null, 'update', 'user'),
  'GET /v1/users/:id': p('admin', 'user', 'read'),
  'PATCH /v1/users/:id': p('admin', 'user', 'update'),
  'DELETE /v1/users/:id': p('admin', 'user', 'delete'),
  'GET /v1/projects/:id/members': p('project', 'project', 'read'),
  'GET /v1/projects/:id/metering': p('project', 'project', 'read'),
  'POST /v1/projects/:id/members': p('manage', 'project', 'manage'),
  'PATCH /v1/projects/:id/members/:user': p('manage', 'member', 'manage'),
  'DELETE /v1/projects/:id/members/:user': p('manage', 'member', 'manage'),

  'GET /v1/images': collection('image', 'read'),
  'POST /v1/images': collection('image', 'create'),
  'GET /v1/images/:id': p('project', 'image', 'read'),
  'PATCH /v1/images/:id': p('project', 'image', 'update'),
  'DELETE /v1/images/:id': p('project', 'image', 'delete'),
  'PUT /v1/images/:id/file': p('project', 'image', 'update'),
  'POST /v1/images/import': collection('image', 'create'),
  'GET /v1/agent/images/:id': p('agent', 'image', 'read'),

  'GET /v1/machine-types': p('authenticated', null, 'read', 'machine_type'),
  'POST /v1/machine-types': p('admin', null, 'create', 'machine_type'),
  'GET /v1/machine-types/:id': p('authenticated', 'machine_type', 'read'),
  'DELETE /v1/machine-types/:id': p('admin', 'machine_type', 'delete'),

  'GET /v1/instances': collection('instance', 'read'),
  'POST /v1/instances': collection('instance', 'create'),
  'GET /v1/instances/:id': p('project', 'instance', 'read'),
  'PATCH /v1/instances/:id': p('project', 'instance', 'update'),
  'DELETE /v1/instances/:id': p('project', 'instance', 'delete'),
  'POST /v1/instances/:id/start': p('project', 'instance', 'power'),
  'POST /v1/instances/:id/stop': p('project', 'instance', 'power'),
  'POST /v1/instances/:id/restart': p('project', 'instance', 'power'),
  'POST /v1/instances/:id/resize': p('project', 'instance', 'update'),
  'GET /v1/instances/:id/history': p('project', 'instance', 'read'),
  'GET /v1/instances/:id/nics': p('project', 'instance', 'read'),
  'POST /v1/instances/:id/nics': p('project', 'instance', 'create'),
  'PATCH /v1/instances/:id/nics/:nic': p('project', 'nic', 'update'),
  'DELETE /v1/instances/:id/nics/:nic': p('project', 'nic', 'delete'),
  'GET /v1/instances/:id/console': p('project', 'instance', 'console'),
  'GET /v1/instances/:id/logs': p('project', 'instance', 'read'),
  'GET /v1/instances/:id/stats': p('project', 'instance', 'read'),
  'GET /v1/instances/:id/stats/history': p('project', 'instance', 'read'),
  'GET /v1/instances/:id/vnc': p('project', 'instance', 'console'),

  'GET /v1/operations': collection('operation', 'read'),
  'GET /v1/operations/:id': p('project', 'operation', 'read'),
  'POST /v1/operations/:id/cancel': p('project', 'operation', 'update'),

  'GET /v1/hosts': p('admin', null, 'read', 'host'),
  'GET /v1/hosts/:id': p('admin', 'host', 'read'),
  'PATCH /v1/hosts/:id': p('admin', 'host', 'update'),
  'DELETE /v1/hosts/:id': p('admin', 'host', 'delete'),
  'POST /v1/hosts/join-tokens': p('admin', null, 'create', 'join_token'),
  'POST /v1/hosts/join': open,

  'GET /v1/networks': collection('network', 'read'),
  'POST /v1/networks': collection('network', 'create'),
  'GET /v1/networks/:id': p('project', 'network', 'read'),
  'PATCH /v1/networks/:id': p('project', 'network', 'update'),
  'DELETE /v1/networks/:id': p('project', 'network', 'delete'),

  'GET /v1/security-groups': collection('security_group', 'read'),
  'POST /v1/security-groups': collection('security_group', 'create'),
  'GET /v1/security-groups/:id': p('project', 'security_group', 'read'),
  'PATCH /v1/security-groups/:id': p('project', 'security_group', 'update'),
  'DELETE /v1/security-groups/:id': p('project', 'security_group', 'delete'),
  'POST /v1/security-groups/:id/rules': p('project', 'security_group', 'update'),
  'DELETE /v1/security-groups/:id/rules/:rule': p('project', 'security_group', 'update'),
  // VPN pools: operators set them up; every user sees them to pick one (without the gateway hosts).
  'GET /v1/vpn-pools': p('authenticated', null, 'read', 'vpn_pool'),
  'POST /v1/vpn-pools': p('admin', null, 'create', 'vpn_pool'),
  'GET /v1/vpn-pools/:id': p('authenticated', 'vpn_pool', 'read'),
  'DELETE /v1/vpn-pools/:id': p('admin', 'vpn_pool', 'delete'),
  'GET /v1/vpn-networks': collection('vpn_network', 'read'),
  'POST /v1/vpn-networks': collection('vpn_network', 'create'),
  'GET /v1/vpn-networks/:id': p('project', 'vpn_network', 'read'),
  'PATCH /v1/vpn-networks/:id': p('project', 'vpn_network', 'update'),
  'GET /v1/vpn-networks/:id/stats': p('project', 'vpn_network', 'read'),
  'DELETE /v1/vpn-networks/:id': p('project', 'vpn_network', 'delete'),
  'GET /v1/vpn-peers': collection('vpn_peer', 'read'),
  'POST /v1/vpn-peers': collection('vpn_peer', 'create'),
  'GET /v1/vpn-peers/:id': p('project', 'vpn_peer', 'read'),
  'DELETE /v1/vpn-peers/:id': p('project', 'vpn_peer', 'delete'),
  'GET /v1/vpn-peers/:id/config': p('project', 'vpn_peer', 'read'),
  'GET /v1/vpn-peers/:id/qr.png': p('project', 'vpn_peer', 'read'),
  'GET /v1/floating-ips': collection('floating_ip', 'read'),
  'POST /v1/floating-ips': collection('floating_ip', 'create'),
  'GET /v1/floating-ips/:id': p('project', 'floating_ip', 'read'),
  'POST /v1/floating-ips/:id/attach': p('project', 'floating_ip', 'update'),
  'POST /v1/floating-ips/:id/detach': p('project', 'floating_ip', 'update'),
  'DELETE /v1/floating-ips/:id': p('project', 'floating_ip', 'delete'),
  'GET /v1/floating-ips/:id/history': p('project', 'floating_ip', 'read'),
  'GET /v1/port-forwards': collection('port_forward', 'read'),
  'POST /v1/port-forwards': collection('port_forward', 'create'),
  'GET /v1/port-forwards/:id': p('project', 'port_forward', 'read'),
  'DELETE /v1/port-forwards/:id': p('project', 'port_forward', 'delete'),
  'GET /v1/port-forwards/:id/history': p('project', 'port_forward', 'read'),

  'GET /v1/events': collection('event', 'read'),
  'GET /v1/audit': p('admin', null, 'read', 'audit'),
  'GET /v1/agent': p('agent', null, 'read'),
};

/** The key of a route in the policy table: a HEAD twin has its GET's entry. */
export function policyKey(method: string, url: string): string {
  return `${method === 'HEAD' ? 'GET' : method} ${url}`;
}

/** The entry of a route, or an error naming the route: every route needs one. */
function policyOf(method: string, url: string): RoutePolicy {
  const entry = POLICY[policyKey(method, url)];
  if (entry === undefined)
    throw new Error(
      `route ${policyKey(method, url)} has no entry in the policy table (packages/server/src/http/policy.ts)`,
    );
  return entry;
}

/**
 * The policy of a route as it is registered. Throws, so that the app does not build, when the route has
 * no entry or when the route (`config.public`) and the table disagree on whether it needs a token.
 */
export function policyForRoute(methods: readonly string[], url: string, isPublic: boolean): RoutePolicy {
  for (const method of methods) {
    const entry = policyOf(method, url);
    const open = entry.access === 'public' || entry.access === 'agent';
    if (open !== isPublic)
      throw new Error(`route ${method} ${url}: public=${isPublic}, but the policy table says ${entry.access}`);
  }
  return policyOf(methods[0]!, url);
}

/** The kind a route's `:id` names, when a token limited to some resources may call it at all. */
export function idKindOf(policy: RoutePolicy): Kind | null {
  if (policy.target === 'member') return 'project';
  if (policy.target === 'nic') return 'instance';
  if (policy.target === null || policy.target === 'collection') return null;
  return policy.target;
}

/** The kind of resource a route is about, as a token's scope of kinds sees it (null: none in particular). */
export function kindOf(policy: RoutePolicy): Kind | null {
  if (policy.target === 'member') return 'project';
  if (policy.target === null || policy.target === 'collection') return policy.kind ?? null;
  return policy.target;
}
