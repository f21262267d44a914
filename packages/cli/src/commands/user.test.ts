import type { FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { runWithClient, sampleUser } from '../testing.js';

const NOW = Date.parse('2025-01-02T00:00:00.000Z');

const ada = sampleUser();

/** Runs the CLI against a client that records what it is asked. */
async function floe(argv: string[], env: Record<string, string> = {}) {
  const calls: unknown[][] = [];
  const record =
    (name: string, answer: unknown = ada) =>
    (...args: unknown[]) => {
      calls.push([name, ...args]);
      return Promise.resolve(answer);
    };
  const member = { user: 'ada', user_id: ada.id, role: 'viewer', created_at: ada.created_at };
  const client = {
    users: {
      list: record('users.list', { items: [ada], next_cursor: null }),
      get: record('users.get'),
      me: record('users.me'),
      create: record('users.create'),
      update: record('users.update'),
      delete: record('users.delete', undefined),
      changePassword: record('users.changePassword', undefined),
    },
    members: {
      list: record('members.list', [member]),
      add: record('members.add', member),
      update: record('members.update', { ...member, role: 'member' }),
      remove: record('members.remove', undefined),
    },
    close: () => Promise.resolve(),
  } as unknown as FloeClient;
  return { ...(await runWithClient(argv, client, { now: NOW, env })), calls };
}

describe('floe user', () => {
  it('creates a user with a password taken from the environment, never from the command line', async () => {
    const r = await floe(['user', 'create', 'ada', '--email', 'ada@example.org', '--password-env', 'PW'], {
      PW: 'a long secret 1',
    });
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([['users.create', { name: 'ada', email: 'ada@example.org', password: 'a long secret 1' }]]);
    const missing = await floe(['user', 'create', 'ada', '--password-env', 'UNSET']);
    expect(missing.code).not.toBe(0);
    expect(missing.err).toContain('UNSET');
    expect(missing.calls).toEqual([]);
  });

  it('lists users, shows one or itself, disables, demotes and deletes', async () => {
    const ls = await floe(['user', 'ls']);
    expect(ls.out).toMatch(/^NAME\s+DISPLAY NAME\s+EMAIL\s+OPERATOR\s+DISABLED\s+TOTP\s+SOURCE/);
    expect(ls.out).toMatch(/\n\s*ada\s+Ada L\.\s+ada@example\.org\s+no\s+no\s+off\s+local\s/);
    expect(ls.out).toContain('ada@example.org');
    expect((await floe(['user', 'show', 'me'])).calls).toEqual([['users.me']]);
    expect((await floe(['user', 'show', 'ada'])).calls).toEqual([['users.get', 'ada']]);
    expect((await floe(['user', 'update', 'ada', '--disable', '--no-operator', '--email', ''])).calls).toEqual([
      ['users.update', 'ada', { email: null, disabled: true, operator: false }],
    ]);
    expect((await floe(['user', 'update', 'ada', '--disable', '--enable'])).code).not.toBe(0);
    expect((await floe(['user', 'rm', 'ada'])).calls).toEqual([['users.delete', 'ada']]);
  });

  it('changes its own password from two environment variables', async () => {
    const r = await floe(['user', 'passwd', '--old-env', 'OLD', '--new-env', 'NEW'], {
      OLD: 'old secret 12',
      NEW: 'new secret 12',
    });
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([['users.changePassword', 'old secret 12', 'new secret 12']]);
  });
});

describe('floe project member', () => {
  it('adds, lists, changes and removes members, and checks the role', async () => {
    expect((await floe(['project', 'member', 'add', 'shop', 'ada', '--role', 'viewer'])).calls).toEqual([
      ['members.add', 'shop', { user: 'ada', role: 'viewer' }],
    ]);
    const bad = await floe(['project', 'member', 'add', 'shop', 'ada', '--role', 'admin']);
    expect(bad.code).not.toBe(0);
    expect(bad.calls).toEqual([]);
    const ls = await floe(['project', 'member', 'ls', 'shop']);
    expect(ls.out).toMatch(/^USER\s+ROLE\s+AGE\nada\s+viewer/);
    expect((await floe(['project', 'member', 'update', 'shop', 'ada', '--role', 'member'])).calls).toEqual([
      ['members.update', 'shop', 'ada', 'member'],
    ]);
    expect((await floe(['project', 'member', 'rm', 'shop', 'ada'])).calls).toEqual([['members.remove', 'shop', 'ada']]);
  });
});
