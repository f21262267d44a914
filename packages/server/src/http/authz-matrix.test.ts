import { request as httpsRequest } from 'node:https';
import { randomBytes } from 'node:crypto';
import { ERROR_CODES, type Kind } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteRecord } from '../app.js';
import { storeTargets } from '../db/testing.js';
import { hashPassword } from '../auth/passwords.js';
import { newId } from '../ids.js';
import { POLICY as ROUTE_POLICY, policyKey } from './policy.js';
import {
  ASKS_PROJECT_TOKEN,
  CALLERS,
  expected,
  FIXTURES,
  matchesWant,
  OF_A,
  PASSWORD,
  PROJECT_QUERY,
  RESOURCES,
  SCOPES,
  USER_OF,
  type Caller,
  type Outcome,
  type Policy,
  type Resource,
} from './authz-matrix.fixtures.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// The authorization matrix: every route the control plane registers × every kind of caller × a
// resource of the caller's project, of another project, and one that does not exist. Who may call each
// route, its verb and what it is about come from the policy table of the source (policy.ts), which the
// app itself enforces; what each role and scope allows is spelled out here, so the test can fail.
// Answers for a resource the caller may not see must be indistinguishable from those for a missing one.
// The callers, fixtures and expectations are in authz-matrix.fixtures.ts.

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
