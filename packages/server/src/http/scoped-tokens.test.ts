import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// The CI token of the issue: limited to project P, the kind instance, the instance web-1 and the verb
// power, it restarts (starts, stops) web-1 and is refused everything else; other instances answer as
// if they did not exist, and a scope never lifts a personal token above its user.

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`a token scoped to one instance and power on ${t.name}`, () => {
    let cp: TestControlPlane;
    let ci = '';
    let web1 = '';
    const as = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown, token = ci) =>
      injectJson(cp, method, url, body, token);
    const make = async (url: string, body: object) => {
      const res = await injectJson(cp, 'POST', url, body);
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
      return res.body;
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' });
      await onlineTestHost(cp.app, 'scope-node');
      for (const project of ['ci-p', 'ci-q']) {
        await make('/v1/projects', { name: project });
        await make('/v1/images', { name: 'img', project });
        await make('/v1/networks', { name: 'lan', project, gateway: 'none' });
        for (const name of ['web-1', 'web-2'])
          await make('/v1/instances', { name, project, image: 'img', vcpus: 1, memory_mib: 128 });
      }
      web1 = (await injectJson(cp, 'GET', '/v1/instances/web-1?project=ci-p')).body.id;
      const created = await make('/v1/tokens', {
        name: 'ci',
        projects: ['ci-p'],
        scope: { kinds: ['instance'], resources: ['web-1'], verbs: ['power'] },
      });
      expect(created.token.scope).toEqual({ kinds: ['instance'], resources: [web1], verbs: ['power'] });
      ci = created.secret;
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
    });

    it('restarts, stops and starts web-1, by name or id', async () => {
      for (const url of [
        '/v1/instances/web-1/restart?project=ci-p',
        '/v1/instances/web-1/stop?project=ci-p',
        `/v1/instances/${web1}/start`,
        `/v1/instances/${web1}/restart`,
      ]) {
        const res = await as('POST', url);
        expect([200, 202], `${url}: ${JSON.stringify(res.body)}`).toContain(res.status);
      }
    });

    it('follows the operations it started, and no others', async () => {
      const restart = await as('POST', `/v1/instances/${web1}/restart`);
      const own = restart.body.operation?.id ?? restart.body.id;
      expect(typeof own, JSON.stringify(restart.body)).toBe('string');
      const read = await as('GET', `/v1/operations/${own}`);
      expect([read.status, read.body.id], JSON.stringify(read.body)).toEqual([200, own]);
      expect((await as('GET', `/v1/operations/${own}?wait=1`)).status).toBe(200);
      const cancel = await as('POST', `/v1/operations/${own}/cancel`);
      expect([cancel.status, cancel.body.error?.code]).toEqual([403, 'forbidden']);
      // The same restart by the admin token: an operation on the same instance, but not this token's.
      const other = await injectJson(cp, 'POST', `/v1/instances/${web1}/restart`);
      const theirs = other.body.operation?.id ?? other.body.id;
      const refused = await as('GET', `/v1/operations/${theirs}`);
      expect([refused.status, refused.body.error?.code]).toEqual([403, 'forbidden']);
    });

    it('is refused every other verb, kind and collection with forbidden', async () => {
      const refusals: Array<[method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown]> = [
        ['GET', '/v1/instances/web-1?project=ci-p'],
        ['GET', `/v1/instances/${web1}`],
        ['PATCH', `/v1/instances/${web1}`, { labels: { a: 'b' } }],
        ['DELETE', `/v1/instances/${web1}`],
        ['GET', `/v1/instances/${web1}/console`],
        ['GET', `/v1/instances/${web1}/logs`],
        ['POST', `/v1/instances/${web1}/nics`, { network: 'lan' }],
        ['GET', '/v1/instances?project=ci-p'],
        ['POST', '/v1/instances', { name: 'web-3', project: 'ci-p', image: 'img', vcpus: 1, memory_mib: 128 }],
        ['GET', '/v1/images?project=ci-p'],
        ['GET', '/v1/images/img?project=ci-p'],
        ['GET', '/v1/networks?project=ci-p'],
        ['GET', '/v1/projects'],
        ['GET', '/v1/projects/ci-p'],
        ['GET', '/v1/operations?project=ci-p'],
        ['GET', '/v1/tokens'],
        ['POST', '/v1/tokens', { name: 'more' }],
        ['GET', '/v1/users/me'],
        ['GET', '/v1/machine-types'],
      ];
      for (const [method, url, body] of refusals) {
        const res = await as(method, url, body);
        expect([res.status, res.body.error?.code], `${method} ${url}`).toEqual([403, 'forbidden']);
        expect(res.body.error.message).toMatch(/^this token (may not|is limited)/);
      }
      const verb = await as('DELETE', `/v1/instances/${web1}`);
      expect(verb.body.error.message).toBe('this token may not delete: its scope allows only power');
    });

    it('answers for other instances, here or in another project, exactly as for one that does not exist', async () => {
      const web2 = (await injectJson(cp, 'GET', '/v1/instances/web-2?project=ci-p')).body.id;
      const elsewhere = (await injectJson(cp, 'GET', '/v1/instances/web-1?project=ci-q')).body.id;
      const missing = 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3';
      const answer = async (ref: string, project = 'ci-p') => {
        const res = await as('POST', `/v1/instances/${ref}/restart?project=${project}`);
        expect([res.status, res.body.error?.code]).toEqual([404, 'instance_not_found']);
        return JSON.stringify(res.body).split(ref).join('<ref>');
      };
      const shape = await answer(missing);
      for (const [ref, project] of [
        [web2, 'ci-p'],
        ['web-2', 'ci-p'],
        [elsewhere, 'ci-q'],
        ['web-1', 'ci-q'],
        ['nothing', 'ci-p'],
      ] as const)
        expect(await answer(ref, project), ref).toBe(shape);
      // Without a scope, the same project token would restart web-2.
      const plain = (await make('/v1/tokens', { name: 'plain', projects: ['ci-p'] })).secret;
      expect([200, 202]).toContain((await as('POST', `/v1/instances/${web2}/restart`, undefined, plain)).status);
    });

    it('only narrows: a viewer’s token scoped to power still may not restart', async () => {
      await make('/v1/users', { name: 'scope-viewer' });
      await make('/v1/projects/ci-p/members', { user: 'scope-viewer', role: 'viewer' });
      const token = (
        await make('/v1/tokens', {
          name: 'viewer-ci',
          user: 'scope-viewer',
          projects: ['ci-p'],
          scope: { kinds: ['instance'], resources: ['web-1'], verbs: ['power', 'read'] },
        })
      ).secret;
      const restart = await as('POST', `/v1/instances/${web1}/restart`, undefined, token);
      expect([restart.status, restart.body.error.code]).toEqual([403, 'forbidden']);
      expect(restart.body.error.message).toMatch(/viewer/);
      expect((await as('GET', `/v1/instances/${web1}`, undefined, token)).status).toBe(200);
    });
  });

  describe.skipIf(t.skip)(`a token scoped to one security group on ${t.name}`, () => {
    let cp: TestControlPlane;
    const make = async (url: string, body: object) => {
      const res = await injectJson(cp, 'POST', url, body);
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
      return res.body;
    };
    const groupId = async (name: string, project = 'sg-p') =>
      (await injectJson(cp, 'GET', `/v1/security-groups/${name}?project=${project}`)).body.id as string;

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' });
      for (const project of ['sg-p', 'sg-q']) {
        await make('/v1/projects', { name: project });
        for (const name of ['web', 'db']) await make('/v1/security-groups', { name, project });
      }
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
    });

    it('names the group by name or id at creation, stored by id, and changes only that group', async () => {
      const web = await groupId('web');
      const byName = await make('/v1/tokens', {
        name: 'fw-web',
        projects: ['sg-p'],
        scope: { kinds: ['security_group'], resources: ['web'], verbs: ['read', 'update'] },
      });
      expect(byName.token.scope).toEqual({ kinds: ['security_group'], resources: [web], verbs: ['read', 'update'] });
      const byId = await make('/v1/tokens', { name: 'fw-web-id', projects: ['sg-p'], scope: { resources: [web] } });
      expect(byId.token.scope).toEqual({ resources: [web] });

      const as = (method: 'GET' | 'POST', url: string, body?: unknown) =>
        injectJson(cp, method, url, body, byName.secret);
      for (const ref of ['web?project=sg-p', web]) {
        const res = await as('GET', `/v1/security-groups/${ref}`);
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.body.id).toBe(web);
      }
      const rule = await as('POST', '/v1/security-groups/web/rules?project=sg-p', {
        direction: 'ingress',
        protocol: 'tcp',
        port: '443',
      });
      expect(rule.status, JSON.stringify(rule.body)).toBeLessThan(300);
      // The other group of its project, and the one of the same name elsewhere, are not there for it.
      for (const [ref, project] of [
        ['db', 'sg-p'],
        [await groupId('db'), 'sg-p'],
        [await groupId('web', 'sg-q'), 'sg-q'],
      ] as const) {
        const res = await as('GET', `/v1/security-groups/${ref}?project=${project}`);
        expect([res.status, res.body.error?.code], ref).toEqual([404, 'security_group_not_found']);
      }
    });

    it('refuses an unknown group by its not-found error, creating nothing', async () => {
      const before = (await injectJson(cp, 'GET', '/v1/tokens')).body.items.length as number;
      const res = await injectJson(cp, 'POST', '/v1/tokens', {
        name: 'fw-none',
        projects: ['sg-p'],
        scope: { kinds: ['security_group'], resources: ['nope'] },
      });
      expect([res.status, res.body.error?.code]).toEqual([404, 'security_group_not_found']);
      expect((await injectJson(cp, 'GET', '/v1/tokens')).body.items.length).toBe(before);
    });
  });
}
