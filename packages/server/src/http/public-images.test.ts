import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// An operator publishes distribution images from a library project; every project lists them beside its
// own and boots from them, while other projects' private images stay out of sight.

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`public images on ${t.name}`, () => {
    let cp: TestControlPlane;
    let member = '';
    const make = async (url: string, body: object) => {
      const res = await injectJson(cp, 'POST', url, body);
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
      return res.body;
    };
    const names = (res: { body: { items: Array<{ name: string; project: string }> } }) =>
      res.body.items.map((i) => `${i.project}/${i.name}`).sort();

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open(), { FLOE_LOG_LEVEL: 'silent' });
      await onlineTestHost(cp.app, 'pub-node');
      for (const project of ['library', 'tenant', 'other']) await make('/v1/projects', { name: project });
      await make('/v1/images', { name: 'debian-12', project: 'library', public: true });
      await make('/v1/images', { name: 'draft', project: 'library' });
      await make('/v1/images', { name: 'own', project: 'tenant' });
      await make('/v1/images', { name: 'secret', project: 'other' });
      member = (await make('/v1/tokens', { name: 'tenant', projects: ['tenant'] })).secret;
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
    });

    it("lists a project's own images and every project's public ones, not others' private ones", async () => {
      const scoped = await injectJson(cp, 'GET', '/v1/images?project=tenant', undefined, member);
      expect(scoped.status).toBe(200);
      expect(names(scoped)).toEqual(['library/debian-12', 'tenant/own']);
      const all = await injectJson(cp, 'GET', '/v1/images', undefined, member);
      expect(names(all)).toEqual(['library/debian-12', 'tenant/own']);
      // A project the token has no part in shows nothing, public images included.
      const foreign = await injectJson(cp, 'GET', '/v1/images?project=other', undefined, member);
      expect(names(foreign)).toEqual([]);
    });

    it("unpublishing takes an image out of other projects' lists; labels still filter", async () => {
      const lib = await injectJson(cp, 'GET', '/v1/images/draft?project=library');
      await injectJson(cp, 'PATCH', `/v1/images/${lib.body.id}`, { spec: { public: true }, labels: { os: 'x' } });
      const listed = await injectJson(cp, 'GET', '/v1/images?project=tenant&label=os=x', undefined, member);
      expect(names(listed)).toEqual(['library/draft']);
      await injectJson(cp, 'PATCH', `/v1/images/${lib.body.id}`, { spec: { public: false } });
      const after = await injectJson(cp, 'GET', '/v1/images?project=tenant', undefined, member);
      expect(names(after)).toEqual(['library/debian-12', 'tenant/own']);
    });

    it('creates an instance in the tenant from the public image by name', async () => {
      const res = await injectJson(
        cp,
        'POST',
        '/v1/instances',
        { name: 'vm', project: 'tenant', image: 'debian-12', vcpus: 1, memory_mib: 128 },
        member,
      );
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
      const secret = await injectJson(
        cp,
        'POST',
        '/v1/instances',
        { name: 'vm2', project: 'tenant', image: 'secret', vcpus: 1, memory_mib: 128 },
        member,
      );
      expect(secret.body.error?.code).toBe('image_not_found');
    });
  });
}
