import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AuditRecord } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { slapdMissing, startSlapd, type TestSlapd } from '../../packages/server/src/auth/slapd-testing.js';
import { storeTargets } from '../../packages/server/src/db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../../packages/server/src/testing.js';
import { clientFor, eventually, kill, prepareAgent, startAgent } from './helpers.js';
import { runCli, type CliRun } from './cli.js';
import { BASE, GROUPS, PEOPLE, writeLdapAuthConfig } from './ldap.js';
import { awayFromStepEnd, totpAt } from './totp.js';

// The walk of issue "people, not just tokens", each person with the CLI and its own configuration:
// the operator creates a user of the LDAP directory (a real slapd) and makes it a member of a project;
// the user logs in over LDAP, turns TOTP on and logs in again with a code; creates a VM in its project
// (a real agent with the fake VM driver) and cannot see another project; a viewer (by its LDAP group)
// reads the VM but may not open its console or stop it; a token scoped to that one instance and the
// power verb restarts it and is refused everything else; the audit log shows each step with who did it.

const person = (uid: string, cn: string) =>
  `dn: uid=${uid},${PEOPLE}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${cn}\nsn: ${cn}\nmail: ${uid}@example.org\nuserPassword: ${uid} pw\n`;

describe.skipIf(slapdMissing() !== null)('people: an operator, LDAP users with TOTP, a viewer, a CI token', () => {
  let slapd: TestSlapd;
  let cp: TestControlPlane;
  let agent: ReturnType<typeof startAgent> | undefined;
  let agentDir = '';
  let dir: string;
  let ca: string;

  /** The CLI as `who` runs it: its own configuration file, environment and answers to prompts. */
  const floe = (who: string, argv: string[], opts: Parameters<typeof runCli>[2] = {}): Promise<CliRun> =>
    runCli(path.join(dir, `${who}.json`), argv, { answers: {}, ...opts });
  const ok = async (who: string, argv: string[], opts?: Parameters<typeof floe>[2]): Promise<CliRun> => {
    const r = await floe(who, argv, opts);
    expect(r.code, `${who}: floe ${argv.join(' ')}\n${r.err}`).toBe(0);
    return r;
  };
  const refused = async (who: string, argv: string[], code: string, opts?: Parameters<typeof floe>[2]) => {
    const r = await floe(who, argv, opts);
    expect(r.code, `${who}: floe ${argv.join(' ')} should fail with ${code}`).not.toBe(0);
    expect(r.err, `${who}: floe ${argv.join(' ')}`).toContain(code);
  };

  beforeAll(async () => {
    slapd = await startSlapd(BASE);
    await slapd.add(
      [
        `dn: ${PEOPLE}\nobjectClass: organizationalUnit\nou: people\n`,
        `dn: ${GROUPS}\nobjectClass: organizationalUnit\nou: groups\n`,
        person('alice', 'Alice'),
        person('vera', 'Vera'),
        `dn: cn=web-viewers,${GROUPS}\nobjectClass: groupOfNames\ncn: web-viewers\nmember: uid=vera,${PEOPLE}\n`,
      ].join('\n'),
    );
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-e2e-people-'));
    ca = path.join(dir, 'ca.pem');
    const auth = path.join(dir, 'auth.json');
    await writeLdapAuthConfig(auth, slapd.url, { projects: [{ project: 'web', viewer: ['web-viewers'] }] });
    const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;
    cp = await startTestControlPlane(await sqlite.open(), { FLOE_AUTH_CONFIG: auth });
    await writeFile(ca, cp.ca.certPem);
    const prepared = await prepareAgent(cp, 'node-1');
    agentDir = prepared.dataDir;
    agent = startAgent(cp.url, agentDir);
    const admin = clientFor(cp);
    await eventually(async () => (await admin.hosts.get(prepared.hostId)).status.state === 'online', 'host online');
    await admin.close();
  }, 90_000);
  afterAll(async () => {
    if (agent) await kill(agent);
    await cp?.close();
    await slapd?.stop();
    await rm(dir, { recursive: true, force: true });
    if (agentDir) await rm(agentDir, { recursive: true, force: true });
  });

  it('walks from the operator creating a user to a CI token that may only restart one VM', async () => {
    // The operator, with the first admin token.
    await ok('ops', ['login', cp.url, '--token', cp.adminToken, '--ca', ca]);
    await ok('ops', ['project', 'create', 'web']);
    await ok('ops', ['project', 'create', 'other']);
    await ok('ops', ['user', 'create', 'alice', '--authenticator', 'corp']);
    await ok('ops', ['project', 'member', 'add', 'web', 'alice', '--role', 'member']);
    const admin = clientFor(cp);
    await admin.images.create({ name: 'img', project: 'web' });
    await admin.images.create({ name: 'img', project: 'other' });
    await admin.close();

    // Alice logs in over LDAP, turns TOTP on, and from then on is asked for a code.
    const first = await ok('alice', ['login', cp.url, '--ca', ca, '--project', 'web'], {
      answers: { Username: 'alice', Password: 'alice pw' },
    });
    expect(first.asked).toEqual(['Username', 'Password']);
    const me = JSON.parse((await ok('alice', ['user', 'show', 'me', '-o', 'json'])).out) as Record<string, unknown>;
    expect(me).toMatchObject({ name: 'alice', source: 'corp', display_name: 'Alice', email: 'alice@example.org' });
    const enrolment = JSON.parse((await ok('alice', ['user', 'totp', 'enrol', '-o', 'json'])).out) as {
      secret: string;
      uri: string;
    };
    expect(enrolment.uri).toMatch(/^otpauth:\/\/totp\//);
    await awayFromStepEnd();
    const now = Date.now();
    await ok('alice', ['user', 'totp', 'confirm', totpAt(enrolment.secret, now - 30_000)]);
    await ok('alice', ['logout']);
    await refused('alice', ['vm', 'ls'], `hint: you are not logged in: floe login ${cp.url}`);
    const withCode = await ok('alice', ['login', cp.url, '--ca', ca, '--project', 'web'], {
      answers: {
        Username: 'alice',
        Password: 'alice pw',
        'TOTP code (or a recovery code)': totpAt(enrolment.secret, now),
      },
    });
    expect(withCode.asked).toEqual(['Username', 'Password', 'TOTP code (or a recovery code)']);

    // Alice creates a VM in her project, and sees nothing of another.
    await ok('alice', ['vm', 'create', 'web-1', '--image', 'img', '--type', 'nano', '--wait']);
    const vm = JSON.parse((await ok('alice', ['vm', 'show', 'web-1', '-o', 'json'])).out) as {
      id: string;
      status: { state: string };
    };
    expect(vm.status.state).toBe('running');
    await refused('alice', ['project', 'show', 'other'], 'project_not_found');
    await refused(
      'alice',
      ['vm', 'create', 'x-1', '--image', 'img', '--type', 'nano', '--project', 'other'],
      'project_not_found',
    );

    // Vera is a viewer of web through her LDAP group: she reads, but no console and no power.
    await ok('vera', ['login', cp.url, '--ca', ca, '--project', 'web', '--username', 'vera'], {
      env: { FLOE_PASSWORD: 'vera pw' },
    });
    expect(JSON.parse((await ok('vera', ['vm', 'show', 'web-1', '-o', 'json'])).out)).toMatchObject({ id: vm.id });
    await refused('vera', ['vm', 'console', 'web-1'], 'forbidden');
    await refused('vera', ['vm', 'stop', 'web-1'], 'forbidden');
    await refused('vera', ['vm', 'create', 'v-1', '--image', 'img', '--type', 'nano'], 'forbidden');

    // Alice gives CI a token for restarting web-1 and nothing else.
    const created = JSON.parse(
      (
        await ok('alice', [
          'token',
          'create',
          'ci-restart',
          '--project',
          'web',
          '--kind',
          'instance',
          '--resource',
          'web-1',
          '--verb',
          'power',
          '-o',
          'json',
        ])
      ).out,
    ) as { token: { id: string }; secret: string };
    const ci = { env: { FLOE_URL: cp.url, FLOE_TOKEN: created.secret, FLOE_CA: ca, FLOE_PROJECT: 'web' } };
    expect((await ok('ci', ['vm', 'restart', 'web-1'], ci)).out).toContain('restart of web-1 requested');
    await refused('ci', ['vm', 'show', 'web-1'], 'forbidden', ci);
    await refused('ci', ['vm', 'ls'], 'forbidden', ci);
    await refused('ci', ['vm', 'rm', 'web-1', '--yes'], 'forbidden', ci);
    await refused('ci', ['vm', 'console', 'web-1'], 'forbidden', ci);
    await refused('ci', ['vm', 'create', 'c-1', '--image', 'img', '--type', 'nano'], 'forbidden', ci);
    await refused('ci', ['image', 'ls'], 'forbidden', ci);
    await refused('ci', ['vm', 'restart', 'web-1', '--project', 'other'], 'instance_not_found', ci);
    await refused('ci', ['token', 'create', 'more'], 'forbidden', ci);

    // The audit log, as the operator reads it: each step with its requestor.
    await cp.app.services.audit.flush();
    const { items: records } = JSON.parse((await ok('ops', ['audit', '--limit', '500', '-o', 'json'])).out) as {
      items: AuditRecord[];
    };
    const step = (action: string, user: string, extra: (r: AuditRecord) => boolean = () => true) =>
      records.find((r) => r.action === action && r.user_name === user && extra(r));
    expect(step('user.create', 'admin'), 'the operator created alice').toBeDefined();
    expect(
      step('auth.login', 'alice', (r) => r.authenticator === 'corp'),
      'alice logged in over LDAP',
    ).toBeDefined();
    expect(step('auth.logout', 'alice'), 'alice logged out').toBeDefined();
    expect(
      step('instance.create', 'alice', (r) => r.status === 201 || r.status === 202),
      'alice created web-1',
    ).toBeDefined();
    expect(
      step('auth.login', 'vera', (r) => r.authenticator === 'corp'),
      'vera logged in',
    ).toBeDefined();
    expect(
      step('instance.stop', 'vera', (r) => r.status === 403),
      'vera was refused a stop',
    ).toBeDefined();
    expect(step('token.create', 'alice'), 'alice created the CI token').toBeDefined();
    const restart = step('instance.restart', 'alice', (r) => r.token_id === created.token.id && r.outcome === 'ok');
    expect(restart, 'the CI token restarted web-1, recorded as alice’s token').toBeDefined();
    expect(restart!.source_address).toMatch(/127\.0\.0\.1/);
    expect(
      step('instance.delete', 'alice', (r) => r.token_id === created.token.id && r.status === 403),
      'the CI token was refused a delete',
    ).toBeDefined();
  }, 180_000);
});
