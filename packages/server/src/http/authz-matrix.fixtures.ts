import type { Kind, Verb } from '@floe/api';
import type { RouteRecord } from '../app.js';
import type { RoutePolicy } from './policy.js';

// The authorization matrix's callers, request fixtures and expectations (authz-matrix.test.ts walks
// them): what each role and scope allows is spelled out here, not taken from the code under test.

export const CALLERS = [
  'none',
  'expired',
  'revoked',
  'other',
  'own',
  'viewer',
  'member',
  'owner',
  'admin',
  'ci',
  'reader',
] as const;
export type Caller = (typeof CALLERS)[number];
/**
 * Callers of project A: the project tokens `own`, `expired` and `revoked`, and the personal tokens of users
 * who are `viewer`, `member` and `owner` of A. `other` is a project token of B; `admin` is the first admin
 * token, which belongs to the operator user `admin`. `ci` is a project token of A limited by its scope to
 * the instance `vm` of A and the verb power; `reader` a personal token of A's member limited to reading
 * instances.
 */
export const OF_A = new Set<Caller>(['own', 'expired', 'revoked', 'viewer', 'member', 'owner', 'ci', 'reader']);
/** The user each personal token belongs to. */
export const USER_OF: Partial<Record<Caller, string>> = {
  viewer: 'mx-viewer',
  member: 'mx-member',
  owner: 'mx-owner',
  admin: 'admin',
  reader: 'mx-member',
};
/** What a role may do to its project's resources, spelled out here rather than taken from the code under test. */
const MAY: Record<'owner' | 'member' | 'viewer', readonly Verb[]> = {
  owner: ['read', 'create', 'update', 'delete', 'power', 'console', 'manage'],
  member: ['read', 'create', 'update', 'delete', 'power', 'console'],
  viewer: ['read'],
};
/** The scopes of the scoped callers, as created (resources: the instance of A they are limited to). */
export const SCOPES: Partial<Record<Caller, { kinds: Kind[]; verbs: Verb[]; resource?: string }>> = {
  ci: { kinds: ['instance'], verbs: ['power'], resource: 'vm' },
  reader: { kinds: ['instance'], verbs: ['read'] },
};
/**
 * Callers whose `POST /v1/tokens` asks for a project token (`project_token`) rather than a personal one:
 * only owners may have one; the owner's `own` token in the token cells is a project token of A too.
 */
export const ASKS_PROJECT_TOKEN = new Set<Caller>(['owner', 'member']);
/** The role of a caller in the project it may see: a project token's grant is a member's. */
const roleOf = (caller: Caller) => (caller === 'viewer' ? 'viewer' : caller === 'owner' ? 'owner' : 'member');
/** The password of every user of the matrix. */
export const PASSWORD = 'matrix password 1';
/** Relative to project A: `own` lives in A, `foreign` in B. */
export const RESOURCES = ['own', 'foreign', 'missing'] as const;
export type Resource = (typeof RESOURCES)[number];

/** How to make a route's request: what the policy table does not say. */
export interface Fixture {
  /** Body of the request, given the project and a name unique to the request. */
  body?: (project: string, name: string) => unknown;
  /** Collections: the project goes into the query (lists) rather than the body (creates). */
  query?: boolean;
  contentType?: string;
  /** A user named as the request's unique name exists before the request (bodies that name a user). */
  user?: boolean;
  /** Query parameters the route requires. */
  params?: Record<string, string>;
  /**
   * Routes the table opens to every token whose service decides further (`authenticated`): what a caller
   * gets where the table alone would allow it.
   */
  narrow?: (caller: Caller, resource: Resource) => Outcome;
}
/** A route's entry in the policy table with the test's fixture for it. */
export type Policy = RoutePolicy & Fixture;

const labels = () => ({ labels: { matrix: 'yes' } });
const list: Fixture = { query: true };

/** Request fixtures of the routes that need one (bodies, content types), keyed as the policy table. */
export const FIXTURES: Record<string, Fixture> = {
  // Top-level projects: admins only (sub-projects: owners of the parent, see quota.test.ts).
  'POST /v1/projects': {
    body: (_p, name) => ({ name }),
    narrow: (caller) => (caller === 'admin' ? 'allowed' : 'forbidden'),
  },
  // Limits of a top-level project: admins only; others see it (forbidden) or not (hidden).
  'PUT /v1/projects/:id/limits': {
    body: () => ({ networks: null }),
    narrow: (caller, resource) =>
      caller === 'admin' ? 'allowed' : OF_A.has(caller) === (resource === 'own') ? 'forbidden' : 'hidden',
  },
  'PATCH /v1/projects/:id': { body: labels },
  'POST /v1/tokens': { body: (project, name) => ({ name, projects: [project] }) },
  'POST /v1/users': { body: (_p, name) => ({ name }) },
  'POST /v1/users/me/password': { body: () => ({ old_password: PASSWORD, new_password: PASSWORD }) },
  'PATCH /v1/users/:id': { body: () => ({ display_name: 'matrix' }) },
  'POST /v1/projects/:id/members': { body: (_p, name) => ({ user: name, role: 'viewer' }), user: true },
  'PATCH /v1/projects/:id/members/:user': { body: () => ({ role: 'member' }) },
  'GET /v1/projects/:id/metering': { params: { from: '2026-01-01T00:00:00Z', to: '2027-01-01T00:00:00Z' } },
  'GET /v1/images': list,
  'POST /v1/images': { body: (project, name) => ({ name, project }) },
  'PATCH /v1/images/:id': { body: labels },
  'PUT /v1/images/:id/file': { contentType: 'application/octet-stream' },
  'POST /v1/images/import': {
    body: (project, name) => ({ name, project, source: { url: 'http://127.0.0.1:9/disk.img' } }),
  },
  'POST /v1/machine-types': { body: (_p, name) => ({ name, vcpus: 1, memory_mib: 128 }) },
  'GET /v1/instances': list,
  'POST /v1/instances': { body: (project, name) => ({ name, project, image: 'img', vcpus: 1, memory_mib: 128 }) },
  'PATCH /v1/instances/:id': { body: labels },
  'POST /v1/instances/:id/nics': { body: () => ({ network: 'lan' }) },
  'POST /v1/instances/:id/resize': { body: () => ({ vcpus: 2 }) },
  'GET /v1/floating-ips': list,
  'POST /v1/floating-ips': { body: (project, name) => ({ name, project }) },
  'POST /v1/floating-ips/:id/attach': { body: () => ({ instance: 'vm' }) },
  'GET /v1/port-forwards': list,
  'POST /v1/port-forwards': { body: (project, name) => ({ name, project, port: 2222, instance: 'vm' }) },
  'GET /v1/operations': list,
  'PATCH /v1/hosts/:id': { body: labels },
  'POST /v1/hosts/join-tokens': { body: () => ({}) },
  'POST /v1/hosts/join': { body: (_p, name) => ({ token: 'floe_join_not-a-real-one', name, csr: 'x'.repeat(200) }) },
  // Public networks are listed in every project: the list asks for the projects' own by label.
  'GET /v1/networks': { query: true, params: { label: 'matrix=lan' } },
  'POST /v1/networks': { body: (project, name) => ({ name, project, gateway: 'none' }) },
  'PATCH /v1/networks/:id': { body: labels },
  'GET /v1/security-groups': list,
  'POST /v1/security-groups': { body: (project, name) => ({ name, project }) },
  'PATCH /v1/security-groups/:id': { body: labels },
  'POST /v1/security-groups/:id/rules': { body: () => ({ direction: 'ingress', protocol: 'tcp', port: '80' }) },
  'PATCH /v1/instances/:id/nics/:nic': { body: () => ({ filtering: false }) },
  'POST /v1/auth/login': { body: (_p, name) => ({ username: name, password: 'not the password' }) },
  // Other usernames than the login's, so the two routes' failures do not lock each other's users out.
  'POST /v1/auth/session': { body: (_p, name) => ({ username: `browser-${name}`, password: 'not the password' }) },
  'POST /v1/users/me/totp/confirm': { body: () => ({ code: '000000' }) },
  'DELETE /v1/users/me/totp': { body: () => ({ code: '000000' }) },
  'GET /v1/events': list,
  'POST /v1/vpn-pools': {
    body: (_p, name) => ({ name, ipv6: 'fdb0::/40', hosts: ['mx-node'], endpoint: 'vpn.example.org' }),
  },
  'GET /v1/vpn-networks': list,
  'POST /v1/vpn-networks': { body: (project, name) => ({ name, project, pool: 'mx-pool' }) },
  'PATCH /v1/vpn-networks/:id': { body: labels },
  'GET /v1/vpn-peers': list,
  'POST /v1/vpn-peers': { body: (project, name) => ({ name, project, vpn_network: 'vpn' }) },
  // OpenID logins: public; the poll secret, not a bearer token, guards the session (asked with a malformed login id).
  'POST /v1/auth/oidc/:name/start': { body: () => ({}) },
  'POST /v1/auth/oidc/confirm': { body: () => ({ confirm: 'x', code: 'y' }) },
  'POST /v1/auth/oidc/poll': { body: () => ({ login_id: 'not-a-login', poll_secret: 'not the secret' }) },
};

/** Kinds whose names resolve inside `?project=`; the query names the resource's project for them. */
export const PROJECT_QUERY = new Set<RoutePolicy['target']>([
  'image',
  'instance',
  'network',
  'nic',
  'security_group',
  'vpn_network',
  'vpn_peer',
  'floating_ip',
  'port_forward',
]);

export type Outcome = 'allowed' | 'hidden' | 'forbidden' | 'unauthenticated' | 'agent-only' | 'same-for-all';

/** The kind a route is about as a scope sees it: what its `:id` names, else what the table says. */
function aboutKind(policy: Policy): Kind | null {
  if (policy.target === 'member') return 'project';
  if (policy.target === null || policy.target === 'collection') return policy.kind ?? null;
  return policy.target;
}

/** What the policy says a caller gets for a resource. */
export function expected(policy: Policy, caller: Caller, resource: Resource): Outcome {
  if (policy.access === 'public' || policy.access === 'docs') return 'same-for-all';
  if (policy.access === 'agent') return 'agent-only';
  if (caller === 'none' || caller === 'expired' || caller === 'revoked') return 'unauthenticated';
  // A scope is checked before anything else the token may do: outside it, the answer is the same for every resource.
  const scope = SCOPES[caller];
  if (scope !== undefined) {
    if (!scope.verbs.includes(policy.verb)) return 'forbidden';
    const kind = aboutKind(policy);
    if (kind === null || !scope.kinds.includes(kind)) return 'forbidden';
    if (scope.resource !== undefined && (policy.target === null || policy.target === 'collection')) return 'forbidden';
  }
  if (policy.access === 'admin' && caller !== 'admin') return 'forbidden';
  // A token of nobody has no user to show.
  if (policy.access === 'self') return USER_OF[caller] !== undefined ? 'allowed' : 'hidden';
  if (policy.access === 'tokens') {
    // Users manage their own personal tokens, in the projects they are members of; owners also the
    // project tokens of their projects (B's are foreign to them); admins every token.
    if (USER_OF[caller] === undefined) return 'forbidden';
    if (policy.target === null) return 'allowed';
    if (resource === 'missing') return 'hidden';
    if (caller === 'admin') return 'allowed';
    if (resource !== 'own') return 'hidden';
    // A project token of A is the owners' to issue: a member sees A, so it is told no rather than 404.
    if (policy.target === 'collection' && ASKS_PROJECT_TOKEN.has(caller))
      return MAY[roleOf(caller)].includes('manage') ? 'allowed' : 'forbidden';
    return 'allowed';
  }
  if (resource === 'missing') return 'hidden';
  const scopedAccess = policy.access === 'project' || policy.access === 'manage';
  if (!scopedAccess || caller === 'admin' || policy.target === null)
    return policy.narrow?.(caller, resource) ?? 'allowed';
  if (OF_A.has(caller) !== (resource === 'own')) return 'hidden';
  // A token limited to one resource sees only it: the cells of its own project use it where its kind fits.
  if (scope?.resource !== undefined && policy.target !== 'instance') return 'hidden';
  const verb: Verb = policy.access === 'manage' ? 'manage' : policy.verb;
  return MAY[roleOf(caller)].includes(verb) ? 'allowed' : 'forbidden';
}

/** True when the outcome is what was wanted. */
export function matchesWant(got: Outcome, want: Outcome, route: RouteRecord, policy: Policy, status: number): boolean {
  if (got === want) return true;
  // A list's HEAD says 200 whether or not the page is empty; an event stream opens (101) and stays quiet.
  return policy.query === true && want === 'hidden' && got === 'allowed' && (route.method === 'HEAD' || status === 101);
}
