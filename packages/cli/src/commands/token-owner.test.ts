import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../../../server/src/db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../../../server/src/testing.js';
import { run } from '../program.js';
import { OutputBuffer as Buf } from '../testing.js';

// An owner issues a project token from the CLI against a real control plane, and lists it by project.

describe.skipIf(storeTargets()[0]!.skip !== null)('floe token as a project owner', () => {
  let cp: TestControlPlane;
  let dir: string;
  let env: Record<string, string>;
  const secrets: Record<string, string> = {};

  async function floe(as: string, argv: string[]) {
    const out = new Buf();
    const err = new Buf();
    const code = await run(argv, {
      stdout: out,
      stderr: err,
      env: { ...env, FLOE_TOKEN: secrets[as]! },
      stdinIsTTY: false,
    });
    return { code, out: out.text, err: err.text };
  }

  beforeAll(async () => {
    cp = await startTestControlPlane(await storeTargets()[0]!.open());
    dir = await mkdtemp(join(tmpdir(), 'floe-cli-owner-'));
    await writeFile(join(dir, 'ca.pem'), cp.ca.certPem);
    env = { FLOE_CONFIG: join(dir, 'config.json'), FLOE_URL: cp.url, FLOE_CA: join(dir, 'ca.pem'), NO_COLOR: '1' };
    expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'shop' })).status).toBe(201);
    for (const [user, role] of [
      ['olga', 'owner'],
      ['mia', 'member'],
    ] as const) {
      expect((await injectJson(cp, 'POST', '/v1/users', { name: user })).status).toBe(201);
      expect((await injectJson(cp, 'POST', '/v1/projects/shop/members', { user, role })).status).toBe(201);
      secrets[user] = (await injectJson(cp, 'POST', '/v1/tokens', { name: user, user })).body.secret;
    }
  });
  afterAll(async () => {
    await cp?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('creates a project token of a project the owner owns, lists it by project; a member is refused', async () => {
    const made = await floe('olga', [
      '-o',
      'json',
      'token',
      'create',
      'deploy',
      '--project',
      'shop',
      '--project-token',
    ]);
    expect(made.code, made.err).toBe(0);
    const created = JSON.parse(made.out) as { token: { id: string; user: string | null; projects: string[] } };
    expect(created.token).toMatchObject({ user: null, projects: ['shop'] });

    const listed = await floe('olga', ['token', 'ls', '--project', 'shop']);
    expect(listed.code, listed.err).toBe(0);
    const rows = listed.out.trimEnd().split('\n').slice(1);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(new RegExp(`^${created.token.id}\\s+deploy\\s+active\\s+no\\s+-\\s+shop\\s`));

    const refused = await floe('mia', ['token', 'create', 'sneaky', '--project', 'shop', '--project-token']);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain('forbidden');
    const hidden = await floe('mia', ['token', 'show', created.token.id]);
    expect(hidden.code).not.toBe(0);
    expect(hidden.err).toContain('token_not_found');

    const revoked = await floe('olga', ['token', 'rm', created.token.id]);
    expect(revoked.code, revoked.err).toBe(0);
    expect((await floe('olga', ['token', 'ls', '--project', 'shop'])).out.trimEnd().split('\n')).toHaveLength(1);
  });
});
