import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slapdMissing, startSlapd, type TestSlapd } from '../../packages/server/src/auth/slapd-testing.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { runCli } from './cli.js';
import { BASE, GROUPS, PEOPLE, writeLdapAuthConfig } from './ldap.js';
import { awayFromStepEnd, totpAt } from './totp.js';

const PASSWORD = 'ada’s long password';

// The CLI with the real client against a real control plane over HTTPS: password login, TOTP
// enrolment, a login that is asked for the code, and logout.
describe('floe login, floe user totp and floe logout against a control plane', () => {
  let cp: TestControlPlane;
  let dir: string;
  let caFile: string;
  const floe = (argv: string[], opts?: Parameters<typeof runCli>[2]) =>
    runCli(path.join(dir, 'config.json'), argv, opts);

  const savedToken = async () =>
    (
      JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as {
        contexts: Record<string, { token?: string }>;
      }
    ).contexts.lab?.token;

  beforeAll(async () => {
    cp = await startTestControlPlane(
      await storeTargets()
        .find((t) => t.name === 'sqlite')!
        .open(),
    );
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-e2e-login-'));
    caFile = path.join(dir, 'ca.pem');
    await writeFile(caFile, cp.ca.certPem);
    expect((await injectJson(cp, 'POST', '/v1/users', { name: 'ada', password: PASSWORD })).status).toBe(201);
  }, 60_000);
  afterAll(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs in with a password, turns TOTP on, is asked for the code next time, and logs out', async () => {
    const first = await floe(['login', cp.url, '--ca', caFile, '--context', 'lab', '--username', 'ada'], {
      env: { FLOE_PASSWORD: PASSWORD },
    });
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    expect(first.out).toContain('as ada');
    const session1 = (await savedToken())!;
    expect(session1).toMatch(/^floe_/);

    const enrol = await floe(['user', 'totp', 'enrol', '-o', 'json']);
    expect(enrol.code).toBe(0);
    const e = JSON.parse(enrol.out) as { secret: string; recovery_codes: string[] };
    await awayFromStepEnd();
    const now = Date.now();
    const codeAt = (ms: number) => Promise.resolve(totpAt(e.secret, ms));
    expect((await floe(['user', 'totp', 'confirm', await codeAt(now - 30_000)])).code).toBe(0);

    expect((await floe(['logout'])).code).toBe(0);
    expect(await savedToken()).toBeUndefined();
    expect((await injectJson(cp, 'GET', '/v1/users/me', undefined, session1)).status).toBe(401);

    const code = await codeAt(now);
    const second = await floe(['login', cp.url, '--ca', caFile, '--context', 'lab'], {
      answers: { Username: 'ada', Password: PASSWORD, 'TOTP code (or a recovery code)': code },
    });
    expect(second.err).toBe('');
    expect(second.code).toBe(0);
    expect(second.asked).toEqual(['Username', 'Password', 'TOTP code (or a recovery code)']);

    const wrong = await floe(
      ['login', cp.url, '--ca', caFile, '--context', 'other', '--username', 'ada', '--totp', '000000'],
      {
        env: { FLOE_PASSWORD: PASSWORD },
      },
    );
    expect(wrong.code).not.toBe(0);
    expect(wrong.err).toContain('invalid_credentials');

    expect((await floe(['user', 'totp', 'disable', e.recovery_codes[0]!])).code).toBe(0);
    const session2 = (await savedToken())!;
    expect((await floe(['logout'])).code).toBe(0);
    expect((await injectJson(cp, 'GET', '/v1/users/me', undefined, session2)).status).toBe(401);
  }, 60_000);
});

// The same with a user of a real slapd: created on its first login, its group giving it a project.
describe.skipIf(slapdMissing() !== null)('floe login over LDAP (a real slapd) with TOTP', () => {
  let slapd: TestSlapd;
  let cp: TestControlPlane;
  let dir: string;
  const floe = (argv: string[], opts?: Parameters<typeof runCli>[2]) =>
    runCli(path.join(dir, 'config.json'), argv, opts);

  beforeAll(async () => {
    slapd = await startSlapd(BASE);
    await slapd.add(
      [
        `dn: ${PEOPLE}\nobjectClass: organizationalUnit\nou: people\n`,
        `dn: ${GROUPS}\nobjectClass: organizationalUnit\nou: groups\n`,
        `dn: uid=lena,${PEOPLE}\nobjectClass: inetOrgPerson\nuid: lena\ncn: Lena\nsn: L\nuserPassword: lena pw\n`,
        `dn: cn=web-devs,${GROUPS}\nobjectClass: groupOfNames\ncn: web-devs\nmember: uid=lena,${PEOPLE}\n`,
      ].join('\n'),
    );
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-e2e-ldap-'));
    const auth = path.join(dir, 'auth.json');
    await writeLdapAuthConfig(auth, slapd.url, { projects: [{ project: 'web', member: ['web-devs'] }] });
    cp = await startTestControlPlane(
      await storeTargets()
        .find((t) => t.name === 'sqlite')!
        .open(),
      {
        FLOE_AUTH_CONFIG: auth,
      },
    );
    await writeFile(path.join(dir, 'ca.pem'), cp.ca.certPem);
    await injectJson(cp, 'POST', '/v1/projects', { name: 'web' });
    await injectJson(cp, 'POST', '/v1/projects', { name: 'other' });
  }, 60_000);
  afterAll(async () => {
    await cp?.close();
    await slapd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the user on its first login, gives it its project, and asks for TOTP once it is on', async () => {
    const ca = path.join(dir, 'ca.pem');
    const first = await floe(['login', cp.url, '--ca', ca, '--username', 'lena', '--project', 'web'], {
      env: { FLOE_PASSWORD: 'lena pw' },
    });
    expect(first.err).toBe('');
    expect(first.code).toBe(0);
    const me = JSON.parse((await floe(['user', 'show', 'me', '-o', 'json'])).out) as { source: string; totp: boolean };
    expect(me).toMatchObject({ source: 'corp', totp: false });
    expect((await floe(['vm', 'ls'])).code).toBe(0);
    expect((await floe(['project', 'show', 'web'])).code).toBe(0);
    const other = await floe(['project', 'show', 'other']);
    expect(other.code).not.toBe(0);
    expect(other.err).toContain('project_not_found');

    const e = JSON.parse((await floe(['user', 'totp', 'enrol', '-o', 'json'])).out) as { secret: string };
    await awayFromStepEnd();
    const now = Date.now();
    expect((await floe(['user', 'totp', 'confirm', totpAt(e.secret, now - 30_000)])).code).toBe(0);
    expect((await floe(['logout'])).code).toBe(0);

    const again = await floe(['login', cp.url, '--ca', ca, '--project', 'web'], {
      answers: { Username: 'lena', Password: 'lena pw', 'TOTP code (or a recovery code)': totpAt(e.secret, now) },
    });
    expect(again.err).toBe('');
    expect(again.code).toBe(0);
    expect(JSON.parse((await floe(['user', 'show', 'me', '-o', 'json'])).out)).toMatchObject({ totp: true });

    await cp.app.services.audit.flush();
    const actions = await cp.store.db
      .selectFrom('audit_log')
      .select(['action', 'authenticator'])
      .where('user_name', '=', 'lena')
      .where('action', 'like', 'auth.%')
      .orderBy('id')
      .execute();
    expect(actions.map((a) => `${a.action}:${a.authenticator}`)).toEqual([
      'auth.login:corp',
      'auth.logout:token',
      'auth.login_failed:corp',
      'auth.login:corp',
    ]);
  }, 60_000);
});
