import { request as httpsRequest } from 'node:https';
import { randomBytes } from 'node:crypto';
import { ERROR_CODES, type Kind, type Verb } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteRecord } from '../app.js';
import { storeTargets } from '../db/testing.js';
import { hashPassword } from '../auth/passwords.js';
import { newId } from '../ids.js';
import { POLICY as ROUTE_POLICY, policyKey, type RoutePolicy } from './policy.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// The authorization matrix: every route the control plane registers × every kind of caller × a
// resource of the caller's project, of another project, and one that does not exist. Who may call each
// route, its verb and what it is about come from the policy table of the source (policy.ts), which the
// app itself enforces; what each role and scope allows is spelled out here, so the test can fail.
// Answers for a resource the caller may not see must be indistinguishable from those for a missing one.

const CALLERS = [
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
type Caller = (typeof CALLERS)[number];
/**
 * Callers of project A: the project tokens `own`, `expired` and `revoked`, and the personal tokens of users
 * who are `viewer`, `member` and `owner` of A. `other` is a project token of B; `admin` is the first admin
 * token, which belongs to the operator user `admin`. `ci` is a project token of A limited by its scope to
 * the instance `vm` of A and the verb power; `reader` a personal token of A's member limited to reading
 * instances.
 */
const OF_A = new Set<Caller>(['own', 'expired', 'revoked', 'viewer', 'member', 'owner', 'ci', 'reader']);
/** The user each personal token belongs to. */
const USER_OF: Partial<Record<Caller, string>> = {
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
const SCOPES: Partial<Record<Caller, { kinds: Kind[]; verbs: Verb[]; resource?: string }>> = {
  ci: { kinds: ['instance'], verbs: ['power'], resource: 'vm' },
  reader: { kinds: ['instance'], verbs: ['read'] },
};
/**
 * Callers whose `POST /v1/tokens` asks for a project token (`project_token`) rather than a personal one:
 * only owners may have one; the owner's `own` token in the token cells is a project token of A too.
 */
const ASKS_PROJECT_TOKEN = new Set<Caller>(['owner', 'member']);
/** The role of a caller in the project it may see: a project token's grant is a member's. */
const roleOf = (caller: Caller) => (caller === 'viewer' ? 'viewer' : caller === 'owner' ? 'owner' : 'member');
/** The password of every user of the matrix. */
const PASSWORD = 'matrix password 1';
/** Relative to project A: `own` lives in A, `foreign` in B. */
const RESOURCES = ['own', 'foreign', 'missing'] as const;
type Resource = (typeof RESOURCES)[number];

/** How to make a route's request: what the policy table does not say. */
interface Fixture {
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
type Policy = RoutePolicy & Fixture;

const labels = () => ({ labels: { matrix: 'yes' } });
const list: Fixture = { query: true };

/** Request fixtures of the routes that need one (bodies, content types), keyed as the policy table. */
const FIXTURES: Record<string, Fixture> = {
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
const PROJECT_QUERY = new Set<RoutePolicy['target']>([
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

type Outcome = 'allowed' | 'hidden' | 'forbidden' | 'unauthenticated' | 'agent-only' | 'same-for-all';

/** The kind a route is about as a scope sees it: what its `:id` names, else what the table says. */
function aboutKind(policy: Policy): Kind | null {
  if (policy.target === 'member') return 'project';
  if (policy.target === null || policy.target === 'collection') return policy.kind ?? null;
  return policy.target;
}

/** What the policy says a caller gets for a resource. */
function expected(policy: Policy, caller: Caller, resource: Resource): Outcome {
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
function matchesWant(got: Outcome, want: Outcome, route: RouteRecord, policy: Policy, status: number): boolean {
  if (got === want) return true;
  // A list's HEAD says 200 whether or not the page is empty; an event stream opens (101) and stays quiet.
  return policy.query === true && want === 'hidden' && got === 'allowed' && (route.method === 'HEAD' || status === 101);
}

interface Answer {
  status: number;
  code: string | null;
  /** The body with the ids and names of the request replaced, for comparing like with like. */
  shape: string;
  items: number | null;
}

/** What an answer means for the matrix. */
function outcomeOf(a: Answer, head: boolean, policy: Policy): Outcome {
  // HEAD answers carry no body: their status is all there is to judge.
  if (policy.access === 'agent' && (a.code === 'client_certificate_required' || (head && a.status === AGENT_STATUS)))
    return 'agent-only';
  if (a.status === 401 && (a.code === 'unauthenticated' || head)) return 'unauthenticated';
  if (a.status === 403 && (a.code === 'forbidden' || head)) return 'forbidden';
  if (a.status === 404 && (a.code?.endsWith('_not_found') === true || head)) return 'hidden';
  // A list of a project the caller may not use is empty, as the list of a project that does not exist.
  if (policy.query === true && a.status === 200 && a.items === 0) return 'hidden';
  return 'allowed';
}

const AGENT_STATUS = ERROR_CODES.client_certificate_required.status;

for (const t of storeTargets().filter((x) => x.name === 'sqlite')) {
  describe(`authorization matrix on ${t.name}`, () => {
    let cp: TestControlPlane;
    const secret: Partial<Record<Caller, string>> = {};
    let seq = 0;
    /** The id of the one instance `ci` may use. */
    let scopedId = '';
    const unique = (prefix: string) => `${prefix}-${(seq++).toString(36)}`;
    const A = 'mx-a';
    const B = 'mx-b';

    const ok = async (method: 'POST' | 'DELETE', url: string, body?: unknown) => {
      const res = await injectJson(cp, method, url, body);
      if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open(), {
        FLOE_LOG_LEVEL: 'silent',
        // The walk takes minutes on a loaded machine; the test host must not go offline meanwhile.
        FLOE_HOST_OFFLINE_AFTER_MS: '3600000',
        // Both login routes (token and browser session) fail once per caller, all from this one address.
        FLOE_LOGIN_MAX_FAILURES_PER_ADDRESS: '1000',
      });
      // Room for every instance the cells create.
      await onlineTestHost(cp.app, 'mx-node', { cpus: 4096, memory_mib: 8_388_608 });
      await ok('POST', '/v1/vpn-pools', {
        name: 'mx-pool',
        ipv6: 'fd90::/40',
        hosts: ['mx-node'],
        endpoint: 'vpn.example.org',
      });
      for (const p of [A, B]) {
        await ok('POST', '/v1/projects', { name: p });
        await ok('POST', '/v1/vpn-networks', { name: 'vpn', project: p, pool: 'mx-pool' });
        await ok('POST', '/v1/vpn-peers', { name: 'peer', project: p, vpn_network: 'vpn' });
        await ok('POST', '/v1/images', { name: 'img', project: p });
        await ok('POST', '/v1/networks', {
          name: 'lan',
          project: p,
          ipv4: p === A ? '10.91.0.0/24' : '10.92.0.0/24',
          labels: { matrix: 'lan' },
        });
        await ok('POST', '/v1/instances', { name: 'vm', project: p, image: 'img', vcpus: 1, memory_mib: 128 });
      }
      // Floating IPs come from the one public network.
      await ok('POST', '/v1/networks', {
        name: 'pub',
        project: A,
        kind: 'public',
        ipv4: '100.64.0.0/16',
        gateway: '100.64.0.1',
        pool: { start: '100.64.0.10', end: '100.64.250.250' },
        uplink: 'eth9',
      });
      for (const p of [A, B]) {
        await ok('POST', '/v1/floating-ips', { name: 'fip', project: p });
        await ok('POST', '/v1/instances', {
          name: 'fwd',
          project: p,
          image: 'img',
          vcpus: 1,
          memory_mib: 128,
          networks: ['lan'],
        });
        await ok('POST', '/v1/port-forwards', { name: 'pf', project: p, port: p === A ? 2201 : 2202, instance: 'fwd' });
      }
      secret.admin = cp.adminToken;
      secret.own = (await ok('POST', '/v1/tokens', { name: 'own', projects: [A] })).secret;
      secret.other = (await ok('POST', '/v1/tokens', { name: 'other', projects: [B] })).secret;
      const expired = await ok('POST', '/v1/tokens', { name: 'expired', projects: [A] });
      await cp.store.db
        .updateTable('tokens')
        .set({ expires_at: '2020-01-01T00:00:00.000Z' })
        .where('id', '=', expired.token.id)
        .execute();
      secret.expired = expired.secret;
      const revoked = await ok('POST', '/v1/tokens', { name: 'revoked', projects: [A] });
      await ok('DELETE', `/v1/tokens/${revoked.token.id}`);
      secret.revoked = revoked.secret;
      for (const role of ['viewer', 'member', 'owner'] as const) {
        const user = `mx-${role}`;
        await ok('POST', '/v1/users', { name: user, password: PASSWORD });
        await ok('POST', `/v1/projects/${A}/members`, { user, role });
        secret[role] = (await ok('POST', '/v1/tokens', { name: user, user })).secret;
      }
      const ci = SCOPES.ci!;
      secret.ci = (
        await ok('POST', '/v1/tokens', {
          name: 'ci',
          projects: [A],
          scope: { kinds: ci.kinds, verbs: ci.verbs, resources: [ci.resource] },
        })
      ).secret;
      scopedId = (await injectJson(cp, 'GET', `/v1/instances/${ci.resource}?project=${A}`)).body.id;
      const reader = SCOPES.reader!;
      secret.reader = (
        await ok('POST', '/v1/tokens', {
          name: 'reader',
          user: USER_OF.reader,
          scope: { kinds: reader.kinds, verbs: reader.verbs },
        })
      ).secret;
      await cp.store.db
        .updateTable('users')
        .set({ password_hash: await hashPassword(PASSWORD) })
        .where('name', '=', 'admin')
        .execute();
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
    });

    /** A fresh resource of `kind` in `project` (global kinds ignore it): its id and, for NICs, its instance. */
    async function fixture(kind: Kind, project: string): Promise<{ id: string; parent?: string; rule?: string }> {
      const name = unique('fx');
      switch (kind) {
        case 'project':
          return { id: (await injectJson(cp, 'GET', `/v1/projects/${project}`)).body.id };
        case 'token':
          return { id: (await ok('POST', '/v1/tokens', { name, projects: [project] })).token.id };
        case 'user':
          return { id: (await ok('POST', '/v1/users', { name })).id };
        case 'image':
          return { id: (await ok('POST', '/v1/images', { name, project })).id };
        case 'network':
          return { id: (await ok('POST', '/v1/networks', { name, project, gateway: 'none' })).id };
        case 'security_group': {
          const g = await ok('POST', '/v1/security-groups', {
            name,
            project,
            rules: [{ direction: 'ingress', protocol: 'tcp', port: '22' }],
          });
          return { id: g.id, rule: g.spec.rules[0].id };
        }
        case 'machine_type':
          return { id: (await ok('POST', '/v1/machine-types', { name, vcpus: 1, memory_mib: 128 })).id };
        case 'host':
          return { id: await onlineTestHost(cp.app, name) };
        case 'vpn_pool':
          return {
            id: (
              await ok('POST', '/v1/vpn-pools', {
                name,
                ipv6: `fda0:${(seq++).toString(16)}::/48`,
                hosts: ['mx-node'],
                endpoint: 'vpn.example.org',
              })
            ).id,
          };
        case 'vpn_network':
          return { id: (await ok('POST', '/v1/vpn-networks', { name, project, pool: 'mx-pool' })).id };
        case 'vpn_peer':
          return { id: (await ok('POST', '/v1/vpn-peers', { name, project, vpn_network: 'vpn' })).peer.id };
        case 'instance':
        case 'operation':
        case 'nic': {
          const created = await ok('POST', '/v1/instances', { name, project, image: 'img', vcpus: 1, memory_mib: 128 });
          if (kind === 'instance') return { id: created.instance.id };
          if (kind === 'operation') return { id: created.operation.id };
          const nic = await ok('POST', `/v1/instances/${created.instance.id}/nics?project=${project}`, {
            network: 'lan',
          });
          return { id: nic.nic.id, parent: created.instance.id };
        }
        case 'floating_ip':
          return { id: (await ok('POST', '/v1/floating-ips', { name, project })).id };
        case 'port_forward': {
          const created = await ok('POST', '/v1/instances', {
            name,
            project,
            image: 'img',
            vcpus: 1,
            memory_mib: 128,
            networks: ['lan'],
          });
          const port = 10_000 + seq;
          return {
            id: (await ok('POST', '/v1/port-forwards', { name, project, port, instance: created.instance.id })).id,
          };
        }
        default:
          throw new Error(`no fixture for ${kind}`);
      }
    }

    /** The request of one cell: its URL, body, and the strings that name the resource (to compare shapes). */
    async function cell(route: RouteRecord, policy: Policy, caller: Caller, resource: Resource) {
      const name = unique('mx');
      const names = [name];
      // The project a missing resource is asked for in: the one the hidden counterpart lives in.
      const hiddenProject = OF_A.has(caller) ? B : A;
      const project = resource === 'own' ? A : resource === 'foreign' ? B : hiddenProject;
      let url = route.url;
      const query = new URLSearchParams();
      const target = policy.target;
      if (target === 'collection') {
        const p = resource === 'missing' ? 'mx-missing' : project;
        names.push(p);
        if (policy.query) query.set('project', p);
      } else if (target === 'member') {
        // A viewer of the project, by name; a missing member is asked for in a project that does not exist.
        const projectId =
          resource === 'missing' ? newId('project') : (await injectJson(cp, 'GET', `/v1/projects/${project}`)).body.id;
        const user = unique('mxu');
        if (resource !== 'missing') {
          await ok('POST', '/v1/users', { name: user });
          await ok('POST', `/v1/projects/${project}/members`, { user, role: 'viewer' });
        }
        names.push(projectId, user);
        url = url.replace(':id', projectId).replace(':user', user);
      } else if (target !== null) {
        const user = USER_OF[caller];
        const found: { id: string; parent?: string; rule?: string } =
          resource === 'missing'
            ? { id: newId(target === 'nic' ? 'nic' : target), parent: newId('instance') }
            : SCOPES[caller]?.resource !== undefined && resource === 'own' && target === 'instance'
              ? { id: scopedId }
              : target === 'token' && resource === 'own' && user !== undefined && caller !== 'owner'
                ? { id: (await ok('POST', '/v1/tokens', { name, user })).token.id }
                : await fixture(target, project);
        names.push(found.id);
        if (found.parent !== undefined) names.push(found.parent);
        url = url
          .replace(':id', target === 'nic' ? found.parent! : found.id)
          .replace(':nic', found.id)
          .replace(':rule', found.rule ?? 'r0');
        if (PROJECT_QUERY.has(target)) query.set('project', project);
      }
      for (const [k, v] of Object.entries(policy.params ?? {})) query.set(k, v);
      if (route.url.includes('*')) url = url.replace('*', 'index.css');
      if (policy.user === true) await ok('POST', '/v1/users', { name });
      const asked =
        policy.body === undefined
          ? undefined
          : policy.body(target === 'collection' && resource === 'missing' ? 'mx-missing' : project, name);
      const projectToken = route.method === 'POST' && route.url === '/v1/tokens' && ASKS_PROJECT_TOKEN.has(caller);
      const body = projectToken ? { ...(asked as object), project_token: true } : asked;
      const qs = query.toString();
      return { url: qs === '' ? url : `${url}?${qs}`, body, names };
    }

    async function send(
      route: RouteRecord,
      policy: Policy,
      url: string,
      body: unknown,
      caller: Caller,
      names: string[],
    ): Promise<Answer> {
      const headers: Record<string, string> = {};
      if (caller !== 'none') headers.authorization = `Bearer ${secret[caller]}`;
      let payload: string | Buffer | undefined;
      if (policy.contentType !== undefined) {
        headers['content-type'] = policy.contentType;
        payload = Buffer.from('not a disk image');
      } else if (body !== undefined) {
        headers['content-type'] = route.method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
        payload = JSON.stringify(body);
      }
      const res = await cp.app.http.inject({
        method: route.method as 'GET',
        url,
        headers,
        ...(payload === undefined ? {} : { payload }),
      });
      return answer(res.statusCode, route.method === 'HEAD' ? '' : res.body, names);
    }

    /** The HTTP step of a WebSocket upgrade on the real listener: 101, or the answer that refused it. */
    function upgrade(url: string, caller: Caller, names: string[]): Promise<Answer> {
      return new Promise((resolve) => {
        const req = httpsRequest(`${cp.url}${url}`, {
          ca: cp.ca.certPem,
          agent: false,
          headers: {
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-version': '13',
            'sec-websocket-key': randomBytes(16).toString('base64'),
            ...(caller === 'none' ? {} : { authorization: `Bearer ${secret[caller]}` }),
          },
        });
        req.on('upgrade', (res, socket) => {
          socket.destroy();
          resolve(answer(res.statusCode ?? 0, '', names));
        });
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve(answer(res.statusCode ?? 0, text, names)));
        });
        // A connection dropped without an answer is a result too (and never a proper refusal).
        req.on('error', (err) => resolve(answer(0, `connection closed: ${err.message}`, names)));
        req.end();
      });
    }

    function answer(status: number, text: string, names: string[]): Answer {
      let parsed: unknown = null;
      try {
        parsed = text === '' ? null : JSON.parse(text);
      } catch {
        parsed = null;
      }
      const error = (parsed as { error?: { code?: string } } | null)?.error;
      const items = (parsed as { items?: unknown[] } | null)?.items;
      let shape = `${status} ${text}`;
      for (const n of names) shape = shape.split(n).join('<ref>');
      return { status, code: error?.code ?? null, shape, items: Array.isArray(items) ? items.length : null };
    }

    it('gives every route, caller and resource what its policy says, and hides foreign resources as missing', async () => {
      const routes = cp.app.routes;
      const keyOf = (r: RouteRecord) => policyKey(r.method, r.url);
      const unlisted = routes.map(keyOf).filter((key) => ROUTE_POLICY[key] === undefined);
      expect([...new Set(unlisted)], 'routes without an entry in the policy table').toEqual([]);
      const stale = Object.keys(ROUTE_POLICY).filter((k) => !routes.some((r) => keyOf(r) === k));
      expect(stale, 'policy entries without a route').toEqual([]);
      const strayFixtures = Object.keys(FIXTURES).filter((k) => ROUTE_POLICY[k] === undefined);
      expect(strayFixtures, 'fixtures of routes the policy table does not have').toEqual([]);
      const policyOf = (r: RouteRecord): Policy => ({ ...ROUTE_POLICY[keyOf(r)]!, ...FIXTURES[keyOf(r)] });
      const resourcesOf = (policy: Policy): readonly Resource[] => (policy.target === null ? ['own'] : RESOURCES);
      const variantsOf = (r: RouteRecord) =>
        r.websocket && r.method === 'GET' ? (['http', 'ws'] as const) : (['http'] as const);
      const size = routes.reduce(
        (n, r) => n + variantsOf(r).length * CALLERS.length * resourcesOf(policyOf(r)).length,
        0,
      );

      let requests = 0;
      const failures: string[] = [];
      for (const route of routes) {
        const policy = policyOf(route);
        // What the route itself says (config.public) and what the table says agree.
        if (route.public !== (policy.access === 'public' || policy.access === 'agent'))
          failures.push(
            `${keyOf(route)}: the route says public=${route.public}, the policy table says ${policy.access}`,
          );
        const resources = resourcesOf(policy);
        for (const variant of variantsOf(route)) {
          const perCaller = new Map<Caller, Map<Resource, Answer>>();
          for (const caller of CALLERS) {
            const answers = new Map<Resource, Answer>();
            perCaller.set(caller, answers);
            for (const resource of resources) {
              const { url, body, names } = await cell(route, policy, caller, resource);
              const got =
                variant === 'ws'
                  ? await upgrade(url, caller, names)
                  : await send(route, policy, url, body, caller, names);
              requests++;
              answers.set(resource, got);
              const want = expected(policy, caller, resource);
              const label = `${route.method} ${route.url}${variant === 'ws' ? ' (upgrade)' : ''} as ${caller} on ${resource}`;
              // The test hosts have no agent connected: reading from one is host_offline (a HEAD shows only the 503).
              const offline = got.status === 503 && (got.code === 'host_offline' || route.method === 'HEAD');
              if (got.status >= 500 && !offline) failures.push(`${label}: ${got.shape.slice(0, 300)}`);
              else if (
                want !== 'same-for-all' &&
                !matchesWant(outcomeOf(got, route.method === 'HEAD', policy), want, route, policy, got.status)
              )
                failures.push(`${label}: expected ${want}, got ${got.shape.slice(0, 300)}`);
              else if (want === 'same-for-all' && (got.code === 'unauthenticated' || got.code === 'forbidden'))
                failures.push(`${label}: a public route refused the caller: ${got.shape.slice(0, 300)}`);
            }
            // Whatever the caller may not see answers exactly as what does not exist.
            const missing = answers.get('missing');
            for (const resource of ['own', 'foreign'] as const) {
              const a = answers.get(resource);
              if (missing === undefined || a === undefined) continue;
              // (A viewer's write to its own project is forbidden, not hidden: it sees what it may not change.)
              const want = expected(policy, caller, resource);
              if (want !== 'allowed' && want === expected(policy, caller, 'missing') && a.shape !== missing.shape)
                failures.push(
                  `${route.method} ${route.url} as ${caller}: ${resource} answers ${a.shape.slice(0, 200)} but missing answers ${missing.shape.slice(0, 200)}`,
                );
            }
          }
          if (policy.access === 'public' || policy.access === 'docs' || policy.access === 'agent') {
            const first = perCaller.get('none')!.get('own')!;
            for (const caller of CALLERS) {
              const a = perCaller.get(caller)!.get('own')!;
              if (a.status !== first.status || a.code !== first.code)
                failures.push(`${route.method} ${route.url}: the bearer token of ${caller} changed the answer`);
            }
          }
        }
      }
      console.log(
        `authorization matrix: ${routes.length} routes × ${CALLERS.length} callers × up to ${RESOURCES.length} resources = ${requests} requests`,
      );
      expect(requests, 'every cell of the matrix was asked').toBe(size);
      expect(CALLERS.length * RESOURCES.length).toBe(33);
      expect(routes.length).toBeGreaterThanOrEqual(Object.keys(ROUTE_POLICY).length);
      expect(failures).toEqual([]);
    }, 300_000);
  });
}
