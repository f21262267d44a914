import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';

// An operator creates a user of an external authenticator before its first login and gives it a
// project; the first login there finds that user (same id, the membership kept) instead of making one.

const PASSWORD = 'mia’s htpasswd password';
const sha = (pw: string) => `{SHA}${createHash('sha1').update(pw).digest('base64')}`;

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`users created for an external authenticator on ${t.name}`, () => {
    let cp: TestControlPlane;
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'floe-external-users-'));
      await writeFile(path.join(dir, 'users.htpasswd'), `mia:${sha(PASSWORD)}\nnoor:${sha(PASSWORD)}\n`);
      const file = path.join(dir, 'auth.json');
      await writeFile(
        file,
        JSON.stringify({ chain: [{ kind: 'local' }, { kind: 'htpasswd', name: 'files', file: 'users.htpasswd' }] }),
      );
      cp = await startTestControlPlane(await t.open(), { FLOE_AUTH_CONFIG: file, FLOE_LOG_LEVEL: 'silent' });
      expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'web' })).status).toBe(201);
    }, 60_000);
    afterAll(async () => {
      await cp?.close();
      await rm(dir, { recursive: true, force: true });
    });

    const login = async (username: string) => {
      const res = await cp.app.http.inject({
        method: 'POST',
        url: '/v1/auth/login',
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ username, password: PASSWORD }),
      });
      return { status: res.statusCode, body: JSON.parse(res.body) as Record<string, any> };
    };

    it('links the first login to the user the operator made, with the membership given meanwhile', async () => {
      const created = await injectJson(cp, 'POST', '/v1/users', { name: 'mia', authenticator: 'files' });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(created.body).toMatchObject({ name: 'mia', source: 'files', has_password: false });
      expect((await injectJson(cp, 'POST', '/v1/projects/web/members', { user: 'mia', role: 'viewer' })).status).toBe(
        201,
      );

      const first = await login('mia');
      expect(first.status, JSON.stringify(first.body)).toBe(200);
      expect(first.body.user.id).toBe(created.body.id);
      const token = first.body.token as string;
      expect((await injectJson(cp, 'GET', '/v1/projects/web', undefined, token)).status).toBe(200);
      // A viewer, as the operator made it: the login did not touch a membership given by hand.
      const write = await injectJson(cp, 'PATCH', '/v1/projects/web', { labels: { a: 'b' } }, token);
      expect([write.status, write.body.error.code]).toEqual([403, 'forbidden']);
      const members = await injectJson(cp, 'GET', '/v1/projects/web/members');
      expect(members.body.items).toEqual([expect.objectContaining({ user: 'mia', role: 'viewer' })]);
    });

    it('refuses an authenticator the chain does not have, a local one, a password, and a subject taken', async () => {
      const refuse = async (body: Record<string, unknown>, code: string, field: string) => {
        const res = await injectJson(cp, 'POST', '/v1/users', body);
        expect([res.status, res.body.error.code, res.body.error.details?.field], JSON.stringify(res.body)).toEqual([
          code === 'name_conflict' ? 409 : 400,
          code,
          field,
        ]);
        return res.body.error.message as string;
      };
      expect(await refuse({ name: 'x1', authenticator: 'ldap' }, 'validation_failed', 'authenticator')).toContain(
        'the chain has: files',
      );
      await refuse({ name: 'x2', authenticator: 'local' }, 'validation_failed', 'authenticator');
      await refuse({ name: 'x3', authenticator: 'files', password: PASSWORD }, 'validation_failed', 'password');
      await refuse({ name: 'x4', subject: 'noor' }, 'validation_failed', 'subject');
      expect(
        (await injectJson(cp, 'POST', '/v1/users', { name: 'noor-1', authenticator: 'files', subject: 'noor' })).status,
      ).toBe(201);
      await refuse({ name: 'noor-2', authenticator: 'files', subject: 'noor' }, 'name_conflict', 'subject');
      // The user named differently from its subject is the one its login finds.
      const noor = await login('noor');
      expect(noor.status, JSON.stringify(noor.body)).toBe(200);
      expect(noor.body.user.name).toBe('noor-1');
    });
  });
}
