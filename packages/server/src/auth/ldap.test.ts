import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticatorContract } from '@floe/testkit/auth-contract';
import { freePort } from '@floe/testkit';
import { LdapAuthenticator, type LdapOptions } from './ldap.js';
import { slapdMissing, startSlapd, type TestSlapd } from './slapd-testing.js';

const BASE = 'dc=floe,dc=test';
const PEOPLE = `ou=people,${BASE}`;
const GROUPS = `ou=groups,${BASE}`;
const SERVICE = { dn: `cn=reader,${BASE}`, password: 'reader pw' };

const person = (uid: string, password: string, cn: string): string =>
  [
    `dn: uid=${uid.replace(/,/g, '\\,')},${PEOPLE}`,
    'objectClass: inetOrgPerson',
    `uid: ${uid}`,
    `cn: ${cn}`,
    'sn: Test',
    `mail: ${uid.replace(/\W/g, '')}@example.org`,
    `userPassword: ${password}`,
    '',
  ].join('\n');

const SEED = [
  `dn: ${PEOPLE}\nobjectClass: organizationalUnit\nou: people\n`,
  `dn: ${GROUPS}\nobjectClass: organizationalUnit\nou: groups\n`,
  `dn: ${SERVICE.dn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: ${SERVICE.password}\n`,
  person('alice', 'alice pw', 'Alice Liddell'),
  person('bob', 'bob pw', 'Bob'),
  person('o,brien', 'comma pw', "Miles O'Brien"),
  `dn: cn=devs,${GROUPS}\nobjectClass: groupOfNames\ncn: devs\nmember: uid=alice,${PEOPLE}\n`,
  `dn: cn=ops,${GROUPS}\nobjectClass: groupOfNames\ncn: ops\nmember: uid=alice,${PEOPLE}\nmember: uid=bob,${PEOPLE}\n`,
].join('\n');

const missing = slapdMissing();
if (missing !== null) console.warn(`LDAP tests skipped: ${missing}`);

let slapd: Promise<TestSlapd> | undefined;
// One slapd for the whole file, started by whichever suite needs it first.
const directory = (): Promise<TestSlapd> =>
  (slapd ??= startSlapd(BASE).then(async (s) => {
    await s.add(SEED);
    return s;
  }));
afterAll(async () => {
  await (await slapd)?.stop();
});

const searchMode = (url: string, extra: Partial<LdapOptions> = {}): LdapOptions => ({
  url,
  timeoutMs: 2000,
  bind: {
    mode: 'search',
    serviceDn: SERVICE.dn,
    servicePassword: SERVICE.password,
    baseDn: PEOPLE,
    filter: '(&(objectClass=inetOrgPerson)(uid={username}))',
  },
  groups: { mode: 'memberOf' },
  ...extra,
});

const templateMode = (url: string): LdapOptions => ({
  url,
  timeoutMs: 2000,
  bind: { mode: 'template', dnTemplate: `uid={username},${PEOPLE}` },
  groups: { mode: 'search', baseDn: GROUPS, filter: '(&(objectClass=groupOfNames)(member={dn}))' },
});

const closedPort = async (): Promise<string> => `ldap://127.0.0.1:${await freePort()}`;

describe.skipIf(missing !== null)('LDAP against a real slapd', () => {
  authenticatorContract('ldap search-then-bind, memberOf', async () => {
    const s = await directory();
    return {
      authenticator: new LdapAuthenticator(searchMode(s.url)),
      user: {
        username: 'alice',
        password: 'alice pw',
        subject: 'alice',
        groups: [`cn=devs,${GROUPS}`, `cn=ops,${GROUPS}`],
      },
      unavailable: async () => new LdapAuthenticator(searchMode(await closedPort())),
      timing: false,
      cleanup: async () => {},
    };
  });

  authenticatorContract('ldap bind by DN template, group search', async () => {
    const s = await directory();
    return {
      authenticator: new LdapAuthenticator(templateMode(s.url)),
      user: { username: 'alice', password: 'alice pw', subject: 'alice', groups: ['devs', 'ops'] },
      unavailable: async () => new LdapAuthenticator(templateMode(await closedPort())),
      timing: false,
      cleanup: async () => {},
    };
  });

  describe('details', () => {
    let s: TestSlapd;
    beforeAll(async () => {
      s = await directory();
    });

    it('returns the display name and email, and escapes DN specials in the template', async () => {
      const a = new LdapAuthenticator(templateMode(s.url));
      expect(await a.verifyPassword('o,brien', 'comma pw')).toEqual({
        ok: true,
        authenticator: 'ldap',
        subject: 'o,brien',
        displayName: "Miles O'Brien",
        email: 'obrien@example.org',
        groups: [],
      });
      expect(await a.verifyPassword('bob', 'bob pw')).toMatchObject({ ok: true, groups: ['ops'] });
    });

    it('keeps filter injection literal: wildcards and closing parentheses match nobody', async () => {
      const a = new LdapAuthenticator(searchMode(s.url));
      for (const u of ['*', 'a*', '*)(uid=alice', 'alice)(|(uid=*', '*)(objectClass=*']) {
        expect(await a.verifyPassword(u, 'alice pw')).toMatchObject({ ok: false, reason: 'unknown_user' });
      }
    });

    it('is unavailable when the service account cannot bind, never ok', async () => {
      const opts = searchMode(s.url);
      const a = new LdapAuthenticator({
        ...opts,
        bind: { ...(opts.bind as Extract<LdapOptions['bind'], { mode: 'search' }>), servicePassword: 'wrong' },
      });
      const r = await a.verifyPassword('alice', 'alice pw');
      expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
      expect(JSON.stringify(r)).not.toContain('wrong');
      expect(JSON.stringify(r)).not.toContain('alice pw');
    });

    it('is unavailable when the user filter matches more than one entry', async () => {
      const a = new LdapAuthenticator(
        searchMode(s.url, {
          bind: {
            mode: 'search',
            serviceDn: SERVICE.dn,
            servicePassword: SERVICE.password,
            baseDn: PEOPLE,
            filter: '(|(uid={username})(uid=bob))',
          },
        }),
      );
      expect(await a.verifyPassword('alice', 'alice pw')).toMatchObject({ ok: false, reason: 'unavailable' });
    });

    it('is unavailable, within the timeout, when the server accepts but never answers', async () => {
      const silent = net.createServer(() => {});
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      try {
        const { port } = silent.address() as net.AddressInfo;
        const a = new LdapAuthenticator({ ...searchMode(`ldap://127.0.0.1:${port}`), timeoutMs: 300 });
        const t = Date.now();
        expect(await a.verifyPassword('alice', 'alice pw')).toMatchObject({ ok: false, reason: 'unavailable' });
        expect(Date.now() - t).toBeLessThan(3000);
      } finally {
        silent.close();
      }
    });
  });
});
