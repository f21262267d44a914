import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FloeError } from '@floe/api';
import { freePort } from '@floe/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuthChain, parseAuthConfig } from './config.js';
import { hashPassword } from './passwords.js';

const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

const refusal = (raw: unknown): FloeError => {
  try {
    parseAuthConfig(raw, 'auth.json');
  } catch (err) {
    expect(err).toBeInstanceOf(FloeError);
    return err as FloeError;
  }
  throw new Error('the configuration was accepted');
};

describe('auth configuration', () => {
  it('accepts a chain of every kind with a role mapping, frozen', () => {
    const c = parseAuthConfig({
      chain: [
        { kind: 'local', argon2: FAST },
        { kind: 'htpasswd', file: 'users.htpasswd', groups: ['staff'] },
        {
          kind: 'ldap',
          name: 'corp',
          url: 'ldaps://ldap.example.org',
          bind: {
            mode: 'search',
            serviceDn: 'cn=floe,dc=example,dc=org',
            servicePasswordFile: 'ldap.secret',
            baseDn: 'ou=people,dc=example,dc=org',
            filter: '(uid={username})',
          },
          groups: { mode: 'memberOf' },
        },
        {
          kind: 'ldap',
          name: 'lab',
          url: 'ldap://127.0.0.1:389',
          bind: { mode: 'template', dnTemplate: 'uid={username},dc=lab' },
        },
        { kind: 'checker', url: 'https://auth.example.org/check', timeoutMs: 1000, cacheEntries: 100 },
      ],
      roles: { operators: ['admins'], projects: [{ project: 'web', owner: ['web-owners'] }] },
    });
    expect(c.chain.map((e) => e.name ?? e.kind)).toEqual(['local', 'htpasswd', 'corp', 'lab', 'checker']);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.chain[0])).toBe(true);
  });

  it.each([
    [{}, 'auth.json/chain'],
    [{ chain: [] }, 'auth.json/chain'],
    [{ chain: [{ kind: 'kerberos' }] }, 'auth.json/chain/0/kind'],
    [{ chain: [{ kind: 'htpasswd' }] }, 'auth.json/chain/0'],
    [{ chain: [{ kind: 'htpasswd', file: 'f', extra: 1 }] }, 'auth.json/chain/0'],
    [{ chain: [{ kind: 'local' }, { kind: 'local' }] }, 'auth.json/chain/1/name'],
    [
      { chain: [{ kind: 'local', argon2: { memoryCost: 1, timeCost: 1, parallelism: 1 } }] },
      'auth.json/chain/0/argon2/memoryCost',
    ],
    [{ chain: [{ kind: 'checker', url: 'ftp://x' }] }, 'auth.json/chain/0/url'],
    [
      { chain: [{ kind: 'ldap', url: 'http://x', bind: { mode: 'template', dnTemplate: 'uid={username}' } }] },
      'auth.json/chain/0/url',
    ],
    [
      { chain: [{ kind: 'ldap', url: 'ldap://x', bind: { mode: 'template', dnTemplate: 'uid=fixed' } }] },
      'auth.json/chain/0/bind',
    ],
    [
      {
        chain: [
          {
            kind: 'ldap',
            url: 'ldap://x',
            bind: { mode: 'search', serviceDn: 'cn=a', baseDn: 'dc=x', filter: '(uid={username})' },
          },
        ],
      },
      'auth.json/chain/0/bind',
    ],
    [
      { chain: [{ kind: 'local' }], roles: { projects: [{ project: 'web', admin: ['x'] }] } },
      'auth.json/roles/projects/0',
    ],
  ])('refuses %j, naming %s', (raw, field) => {
    const err = refusal(raw);
    expect(err.code).toBe('validation_failed');
    expect(err.details?.field).toMatch(new RegExp(`^${field.replace(/\//g, '\\/')}`));
    expect(err.message).toContain('auth.json');
  });

  it('never repeats a configured secret in its error', () => {
    const err = refusal({
      chain: [
        {
          kind: 'ldap',
          url: 'ldap://x',
          bind: {
            mode: 'search',
            serviceDn: 'cn=a',
            servicePassword: 'hunter2-secret',
            baseDn: 'dc=x',
            filter: 'no placeholder',
          },
        },
      ],
    });
    expect(JSON.stringify({ m: err.message, d: err.details })).not.toContain('hunter2');
  });
});

describe('building the chain', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'floe-authcfg-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('asks the configured authenticators in order, passing an unreachable directory by', async () => {
    await writeFile(path.join(dir, 'users'), `carol:{SHA}${Buffer.from('x').toString('base64')}\n`);
    const { createHash } = await import('node:crypto');
    await writeFile(path.join(dir, 'users'), `carol:{SHA}${createHash('sha1').update('carol pw').digest('base64')}\n`);
    await writeFile(path.join(dir, 'ldap.secret'), 'service pw\n');
    const alice = await hashPassword('alice pw', FAST);
    const warnings: string[] = [];
    const log: string[] = [];
    const config = parseAuthConfig({
      chain: [
        {
          kind: 'ldap',
          url: `ldap://127.0.0.1:${await freePort()}`,
          timeoutMs: 500,
          bind: {
            mode: 'search',
            serviceDn: 'cn=floe',
            servicePasswordFile: 'ldap.secret',
            baseDn: 'dc=x',
            filter: '(uid={username})',
          },
        },
        { kind: 'local', argon2: FAST },
        { kind: 'htpasswd', file: 'users', groups: ['staff'] },
      ],
    });
    const chain = buildAuthChain(config, {
      baseDir: dir,
      localStore: {
        find: (u) => Promise.resolve(u === 'alice' ? { subject: 'alice', passwordHash: alice } : null),
      },
      warn: (m) => warnings.push(m),
      log: (e) => log.push(`${e.authenticator}:${e.outcome}`),
    });
    expect(await chain.verifyPassword('alice', 'alice pw')).toMatchObject({ ok: true, authenticator: 'local' });
    expect(await chain.verifyPassword('carol', 'carol pw')).toMatchObject({
      ok: true,
      authenticator: 'htpasswd',
      groups: ['staff'],
    });
    expect(await chain.verifyPassword('alice', 'wrong')).toMatchObject({ ok: false, reason: 'bad_credentials' });
    expect(await chain.verifyPassword('nobody', 'x')).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(log.slice(0, 2)).toEqual(['ldap:unavailable', 'local:ok']);
    await chain.close();
  });

  it('fails at start on a missing secret file or a local entry without a user store', () => {
    const ldap = parseAuthConfig({
      chain: [
        {
          kind: 'ldap',
          url: 'ldap://127.0.0.1',
          bind: {
            mode: 'search',
            serviceDn: 'cn=a',
            servicePasswordFile: 'nope',
            baseDn: 'dc=x',
            filter: '(uid={username})',
          },
        },
      ],
    });
    expect(() => buildAuthChain(ldap, { baseDir: dir })).toThrow(/servicePasswordFile cannot be read: ENOENT/);
    expect(() => buildAuthChain(parseAuthConfig({ chain: [{ kind: 'local' }] }))).toThrow(/user store/);
  });
});
