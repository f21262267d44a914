import { describe, expect, it } from 'vitest';
import { authenticatorContract } from '@floe/testkit/auth-contract';
import { LocalAuthenticator, type LocalUserRecord, type LocalUserStore } from './local.js';
import { hashPassword, needsRehash, verifyPassword, type Argon2Params } from './passwords.js';

// Small costs keep the suite quick; production uses DEFAULT_ARGON2_PARAMS.
const FAST: Argon2Params = { memoryCost: 4096, timeCost: 2, parallelism: 1 };

class MapStore implements LocalUserStore {
  readonly users = new Map<string, LocalUserRecord>();
  readonly updates: string[] = [];
  async find(username: string): Promise<LocalUserRecord | null> {
    return this.users.get(username) ?? null;
  }
  async updatePasswordHash(subject: string, passwordHash: string): Promise<void> {
    this.updates.push(subject);
    this.users.set(subject, { ...this.users.get(subject)!, passwordHash });
  }
}

authenticatorContract('local (argon2id)', async () => {
  const store = new MapStore();
  store.users.set('alice', {
    subject: 'alice',
    passwordHash: await hashPassword('correct horse', FAST),
    groups: ['devs'],
  });
  return {
    authenticator: new LocalAuthenticator(store, 'local', FAST),
    user: { username: 'alice', password: 'correct horse', subject: 'alice', groups: ['devs'] },
    unavailable: async () =>
      new LocalAuthenticator(
        {
          find: () => Promise.reject(new Error('database is down')),
        },
        'local',
        FAST,
      ),
    timing: true,
    cleanup: async () => {},
  };
});

describe('argon2id helpers', () => {
  it('hashes with argon2id, a fresh salt each time, and verifies', async () => {
    const a = await hashPassword('pw', FAST);
    const b = await hashPassword('pw', FAST);
    expect(a).toMatch(/^\$argon2id\$v=19\$m=4096,t=2,p=1\$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword(a, 'pw')).toBe(true);
    expect(await verifyPassword(a, 'pW')).toBe(false);
  });

  it('treats a malformed stored hash or an over-long password as a mismatch', async () => {
    expect(await verifyPassword('$argon2id$garbage', 'pw')).toBe(false);
    expect(await verifyPassword('plain', 'plain')).toBe(false);
    const h = await hashPassword('pw', FAST);
    expect(await verifyPassword(h, 'p'.repeat(5000))).toBe(false);
  });

  it('needs a rehash when the costs or the algorithm differ', async () => {
    const h = await hashPassword('pw', FAST);
    expect(needsRehash(h, FAST)).toBe(false);
    expect(needsRehash(h, { ...FAST, memoryCost: 8192 })).toBe(true);
    expect(needsRehash(h, { ...FAST, timeCost: 3 })).toBe(true);
    expect(needsRehash(h.replace('$argon2id$', '$argon2i$'), FAST)).toBe(true);
    expect(needsRehash('$2b$10$abcdefghijklmnopqrstuv', FAST)).toBe(true);
  });

  it('upgrades an old hash after a successful login, and keeps it on a failed one', async () => {
    const store = new MapStore();
    store.users.set('bob', { subject: 'bob', passwordHash: await hashPassword('pw', { ...FAST, timeCost: 1 }) });
    const auth = new LocalAuthenticator(store, 'local', FAST);
    expect((await auth.verifyPassword('bob', 'wrong')).ok).toBe(false);
    expect(store.updates).toEqual([]);
    expect((await auth.verifyPassword('bob', 'pw')).ok).toBe(true);
    expect(store.updates).toEqual(['bob']);
    expect(needsRehash(store.users.get('bob')!.passwordHash, FAST)).toBe(false);
    expect((await auth.verifyPassword('bob', 'pw')).ok).toBe(true);
  });
});
