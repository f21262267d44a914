import { request as httpsRequest } from 'node:https';
import { randomBytes } from 'node:crypto';
import { ERROR_CODES, type Kind } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteRecord } from '../app.js';
import { storeTargets } from '../db/testing.js';
import { hashPassword } from '../auth/passwords.js';
import { newId } from '../ids.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// The authorization matrix: every route the control plane registers × every kind of caller × a
// resource of the caller's project, of another project, and one that does not exist. What each
// route allows comes from POLICY below, keyed by route; a route without an entry fails the test by
// name, so a new route cannot arrive without saying who may call it. Answers for a resource the
// caller may not see must be indistinguishable from the answers for a missing one.

const CALLERS = ['none', 'expired', 'revoked', 'other', 'own', 'viewer', 'member', 'owner', 'admin'] as const;
type Caller = (typeof CALLERS)[number];
/**
 * Callers of project A: the project tokens `own`, `expired` and `revoked`, and the personal tokens of users
 * who are `viewer`, `member` and `owner` of A. `other` is a project token of B; `admin` is the first admin
 * token, which belongs to the operator user `admin`.
 */
const OF_A = new Set<Caller>(['own', 'expired', 'revoked', 'viewer', 'member', 'owner']);
/** Callers whose token belongs to a user. */
const USERS = new Set<Caller>(['viewer', 'member', 'owner', 'admin']);
/** What a role may do to its project's resources, spelled out here rather than taken from the code under test. */
type Verb = 'read' | 'write' | 'console' | 'power' | 'manage';
const MAY: Record<'owner' | 'member' | 'viewer', readonly Verb[]> = {
  owner: ['read', 'write', 'console', 'power', 'manage'],
  member: ['read', 'write', 'console', 'power'],
  viewer: ['read'],
};
/** The role of a caller in the project it may see: a project token's grant is a member's. */
const roleOf = (caller: Caller) => (caller === 'viewer' ? 'viewer' : caller === 'owner' ? 'owner' : 'member');
/** The password of every user of the matrix. */
const PASSWORD = 'matrix password 1';
/** Relative to project A: `own` lives in A, `foreign` in B. */
const RESOURCES = ['own', 'foreign', 'missing'] as const;
type Resource = (typeof RESOURCES)[number];

/**
 * Who may call a route. public: no token needed, and the token changes nothing; docs: the API
 * documentation; agent: a host's client certificate, never a bearer token; admin: admin tokens only;
 * authenticated: any valid token; project: tokens of the resource's project (and admins), as far as
 * their role allows the route's verb; manage: owners of the project (and admins); self: tokens of users.
 */
type Access = 'public' | 'docs' | 'agent' | 'admin' | 'authenticated' | 'project' | 'manage' | 'self';

/**
 * What a request is about: a resource kind (`:id` names one), a project (collections), a member of a
 * project (`:id` the project, `:user` the user), or nothing.
 */
type Target = Kind | 'collection' | 'member' | null;

interface Policy {
  access: Access;
  target: Target;
  /** Body of the request, given the project and a name unique to the request. */
  body?: (project: string, name: string) => unknown;
  /** Collections: the project goes into the query (lists) rather than the body (creates). */
  query?: boolean;
  /** Extra path segments after `:id` are filled from the fixture (nics). */
  contentType?: string;
  /** What the route does when its method does not say (GET and HEAD read, the others write). */
  verb?: Verb;
  /** A user named as the request's unique name exists before the request (bodies that name a user). */
  user?: boolean;
}

const admin = (target: Target = null, body?: Policy['body']): Policy => ({ access: 'admin', target, body });
const scoped = (target: Target, body?: Policy['body']): Policy => ({ access: 'project', target, body });
const list: Policy = { access: 'project', target: 'collection', query: true };
const labels = () => ({ labels: { matrix: 'yes' } });
const docs: Policy = { access: 'docs', target: null };
const self: Policy = { access: 'self', target: null };
const manage = (target: Target, body?: Policy['body']): Policy => ({ access: 'manage', target, body });

/** The policy table: one entry per route (HEAD twins follow their GET). */
const POLICY: Record<string, Policy> = {
  'GET /healthz': { access: 'public', target: null },
  'GET /readyz': { access: 'public', target: null },
  'GET /v1/openapi.json': { access: 'public', target: null },
  'GET /docs': docs,
  'GET /docs/': docs,
  'GET /docs/static/index.html': docs,
  'GET /docs/static/swagger-initializer.js': docs,
  'GET /docs/json': docs,
  'GET /docs/yaml': docs,
  'GET /docs/static/*': docs,

  'GET /v1/projects': { access: 'project', target: null },
  'POST /v1/projects': admin(null, (_p, name) => ({ name })),
  'GET /v1/projects/:id': scoped('project'),
  'PATCH /v1/projects/:id': scoped('project', labels),
  'DELETE /v1/projects/:id': admin('project'),

  'GET /v1/tokens': admin(),
  'POST /v1/tokens': admin('collection', (project, name) => ({ name, projects: [project] })),
  'GET /v1/tokens/:id': admin('token'),
  'DELETE /v1/tokens/:id': admin('token'),

  'GET /v1/users': admin(),
  'POST /v1/users': admin(null, (_p, name) => ({ name })),
  'GET /v1/users/me': self,
  'POST /v1/users/me/password': { ...self, body: () => ({ old_password: PASSWORD, new_password: PASSWORD }) },
  'GET /v1/users/:id': admin('user'),
  'PATCH /v1/users/:id': admin('user', () => ({ display_name: 'matrix' })),
  'DELETE /v1/users/:id': admin('user'),
  'GET /v1/projects/:id/members': scoped('project'),
  'POST /v1/projects/:id/members': { ...manage('project', (_p, name) => ({ user: name, role: 'viewer' })), user: true },
  'PATCH /v1/projects/:id/members/:user': manage('member', () => ({ role: 'member' })),
  'DELETE /v1/projects/:id/members/:user': manage('member'),

  'GET /v1/images': list,
  'POST /v1/images': scoped('collection', (project, name) => ({ name, project })),
  'GET /v1/images/:id': scoped('image'),
  'PATCH /v1/images/:id': scoped('image', labels),
  'DELETE /v1/images/:id': scoped('image'),
  'PUT /v1/images/:id/file': { access: 'project', target: 'image', contentType: 'application/octet-stream' },
  'POST /v1/images/import': scoped('collection', (project, name) => ({
    name,
    project,
    source: { url: 'http://127.0.0.1:9/disk.img' },
  })),
  'GET /v1/agent/images/:id': { access: 'agent', target: 'image' },

  'GET /v1/machine-types': { access: 'authenticated', target: null },
  'POST /v1/machine-types': admin(null, (_p, name) => ({ name, vcpus: 1, memory_mib: 128 })),
  'GET /v1/machine-types/:id': { access: 'authenticated', target: 'machine_type' },
  'DELETE /v1/machine-types/:id': admin('machine_type'),

  'GET /v1/instances': list,
  'POST /v1/instances': scoped('collection', (project, name) => ({
    name,
    project,
    image: 'img',
    vcpus: 1,
    memory_mib: 128,
  })),
  'GET /v1/instances/:id': scoped('instance'),
  'PATCH /v1/instances/:id': scoped('instance', labels),
  'DELETE /v1/instances/:id': scoped('instance'),
  'POST /v1/instances/:id/start': { ...scoped('instance'), verb: 'power' },
  'POST /v1/instances/:id/stop': { ...scoped('instance'), verb: 'power' },
  'POST /v1/instances/:id/restart': { ...scoped('instance'), verb: 'power' },
  'GET /v1/instances/:id/history': scoped('instance'),
  'GET /v1/instances/:id/nics': scoped('instance'),
  'POST /v1/instances/:id/nics': scoped('instance', () => ({ network: 'lan' })),
  'DELETE /v1/instances/:id/nics/:nic': scoped('nic'),
  'GET /v1/instances/:id/console': { ...scoped('instance'), verb: 'console' },
  'GET /v1/instances/:id/logs': scoped('instance'),
  'GET /v1/instances/:id/stats': scoped('instance'),

  'GET /v1/operations': list,
  'GET /v1/operations/:id': scoped('operation'),
  'POST /v1/operations/:id/cancel': scoped('operation'),

  'GET /v1/hosts': admin(),
  'GET /v1/hosts/:id': admin('host'),
  'PATCH /v1/hosts/:id': admin('host', labels),
  'DELETE /v1/hosts/:id': admin('host'),
  'POST /v1/hosts/join-tokens': admin(null, () => ({})),
  'POST /v1/hosts/join': {
    access: 'public',
    target: null,
    body: (_p, name) => ({ token: 'floe_join_not-a-real-one', name, csr: 'x'.repeat(200) }),
  },

  'GET /v1/networks': list,
  'POST /v1/networks': scoped('collection', (project, name) => ({ name, project, gateway: 'none' })),
  'GET /v1/networks/:id': scoped('network'),
  'PATCH /v1/networks/:id': scoped('network', labels),
  'DELETE /v1/networks/:id': scoped('network'),

  'GET /v1/events': list,
  'GET /v1/audit': admin(),
  'GET /v1/agent': { access: 'agent', target: null },

  // OpenID logins: public; the poll secret, not a bearer token, guards the session (asked with a malformed login id).
  'POST /v1/auth/oidc/:name/start': { access: 'public', target: null, body: () => ({}) },
  'GET /v1/auth/oidc/callback': { access: 'public', target: null },
  'POST /v1/auth/oidc/confirm': { access: 'public', target: null, body: () => ({ confirm: 'x', code: 'y' }) },
  'POST /v1/auth/oidc/poll': {
    access: 'public',
    target: null,
    body: () => ({ login_id: 'not-a-login', poll_secret: 'not the secret' }),
  },
};

/** Kinds whose names resolve inside `?project=`; the query names the resource's project for them. */
const PROJECT_QUERY = new Set<Target>(['image', 'instance', 'network', 'nic']);

type Outcome = 'allowed' | 'hidden' | 'forbidden' | 'unauthenticated' | 'agent-only' | 'same-for-all';

/** What the policy says a caller gets for a resource. */
function expected(policy: Policy, method: string, caller: Caller, resource: Resource): Outcome {
  if (policy.access === 'public' || policy.access === 'docs') return 'same-for-all';
  if (policy.access === 'agent') return 'agent-only';
  if (caller === 'none' || caller === 'expired' || caller === 'revoked') return 'unauthenticated';
  if (policy.access === 'admin' && caller !== 'admin') return 'forbidden';
  // A token of nobody has no user to show.
  if (policy.access === 'self') return USERS.has(caller) ? 'allowed' : 'hidden';
  if (resource === 'missing') return 'hidden';
  const scopedAccess = policy.access === 'project' || policy.access === 'manage';
  if (!scopedAccess || caller === 'admin' || policy.target === null) return 'allowed';
  if (OF_A.has(caller) !== (resource === 'own')) return 'hidden';
  const verb: Verb =
    policy.access === 'manage' ? 'manage' : (policy.verb ?? (method === 'GET' || method === 'HEAD' ? 'read' : 'write'));
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
    const unique = (prefix: string) => `${prefix}-${(seq++).toString(36)}`;
    const A = 'mx-a';
    const B = 'mx-b';

    const ok = async (method: 'POST' | 'DELETE', url: string, body?: unknown) => {
      const res = await injectJson(cp, method, url, body);
      if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' });
      await onlineTestHost(cp.app, 'mx-node');
      for (const p of [A, B]) {
        await ok('POST', '/v1/projects', { name: p });
        await ok('POST', '/v1/images', { name: 'img', project: p });
        await ok('POST', '/v1/networks', { name: 'lan', project: p, ipv4: p === A ? '10.91.0.0/24' : '10.92.0.0/24' });
        await ok('POST', '/v1/instances', { name: 'vm', project: p, image: 'img', vcpus: 1, memory_mib: 128 });
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
    async function fixture(kind: Kind, project: string): Promise<{ id: string; parent?: string }> {
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
        case 'machine_type':
          return { id: (await ok('POST', '/v1/machine-types', { name, vcpus: 1, memory_mib: 128 })).id };
        case 'host':
          return { id: await onlineTestHost(cp.app, name) };
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
        const found =
          resource === 'missing'
            ? { id: newId(target === 'nic' ? 'nic' : target), parent: newId('instance') }
            : await fixture(target, project);
        names.push(found.id);
        if (found.parent !== undefined) names.push(found.parent);
        url = url.replace(':id', target === 'nic' ? found.parent! : found.id).replace(':nic', found.id);
        if (PROJECT_QUERY.has(target)) query.set('project', project);
      }
      if (route.url.includes('*')) url = url.replace('*', 'index.css');
      if (policy.user === true) await ok('POST', '/v1/users', { name });
      const body =
        policy.body === undefined
          ? undefined
          : policy.body(target === 'collection' && resource === 'missing' ? 'mx-missing' : project, name);
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
      const keyOf = (r: RouteRecord) => `${r.method === 'HEAD' ? 'GET' : r.method} ${r.url}`;
      const unlisted = routes.map(keyOf).filter((key) => POLICY[key] === undefined);
      expect([...new Set(unlisted)], 'routes without an entry in the policy table').toEqual([]);
      const stale = Object.keys(POLICY).filter((k) => !routes.some((r) => keyOf(r) === k));
      expect(stale, 'policy entries without a route').toEqual([]);

      let requests = 0;
      const failures: string[] = [];
      for (const route of routes) {
        const policy = POLICY[keyOf(route)]!;
        // What the route itself says (config.public) and what the table says agree.
        if (route.public !== (policy.access === 'public' || policy.access === 'agent'))
          failures.push(
            `${keyOf(route)}: the route says public=${route.public}, the policy table says ${policy.access}`,
          );
        const resources: readonly Resource[] = policy.target === null ? ['own'] : RESOURCES;
        const variants = route.websocket && route.method === 'GET' ? (['http', 'ws'] as const) : (['http'] as const);
        for (const variant of variants) {
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
              const want = expected(policy, route.method, caller, resource);
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
              const want = expected(policy, route.method, caller, resource);
              if (
                want !== 'allowed' &&
                want === expected(policy, route.method, caller, 'missing') &&
                a.shape !== missing.shape
              )
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
      expect(failures).toEqual([]);
    }, 300_000);
  });
}
