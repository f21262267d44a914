import { FloeError } from '@floe/api';
import { describe, expect, it } from 'vitest';
import { authorize, withVerb } from './authz.js';
import type { Principal } from './principal.js';
import { roleAllows, type Verb } from './verbs.js';

const VERBS: Verb[] = ['read', 'create', 'update', 'delete', 'power', 'console', 'manage'];

describe('what each project role allows', () => {
  it('lets owners do everything, members all but manage, viewers only read', () => {
    const table = Object.fromEntries(
      (['owner', 'member', 'viewer'] as const).map((role) => [role, VERBS.filter((v) => roleAllows(role, v))]),
    );
    expect(table).toEqual({
      owner: ['read', 'create', 'update', 'delete', 'power', 'console', 'manage'],
      member: ['read', 'create', 'update', 'delete', 'power', 'console'],
      viewer: ['read'],
    });
  });
});

describe('authorize', () => {
  const viewer: Principal = { actor: 't', admin: false, projects: new Set(['a']), roles: new Map([['a', 'viewer']]) };
  const grant: Principal = { actor: 't', admin: false, projects: new Set(['a']) };
  const admin: Principal = { actor: 't', admin: true, projects: new Set() };

  it('hides projects the principal does not see, whatever the verb', () => {
    expect(authorize(viewer, 'b', 'read')).toBe(false);
    expect(authorize(viewer, 'b', 'delete')).toBe(false);
  });

  it('refuses a verb the role does not allow with forbidden, on a project it sees', () => {
    expect(authorize(viewer, 'a', 'read')).toBe(true);
    for (const verb of ['create', 'update', 'delete', 'console', 'power', 'manage'] as const) {
      const err = (() => {
        try {
          return authorize(viewer, 'a', verb);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(FloeError);
      expect((err as FloeError).code).toBe('forbidden');
    }
  });

  it('takes the verb of the request, and an update when it has none', () => {
    expect(authorize(withVerb(viewer, 'read'), 'a')).toBe(true);
    expect(() => authorize(withVerb(viewer, 'create'), 'a')).toThrow(FloeError);
    expect(() => authorize(viewer, 'a')).toThrow(FloeError);
  });

  it('treats a project token’s grant as a member, and lets admins do everything', () => {
    expect(authorize(grant, 'a', 'console')).toBe(true);
    expect(() => authorize(grant, 'a', 'manage')).toThrow(FloeError);
    for (const verb of VERBS) expect(authorize(admin, 'anything', verb)).toBe(true);
  });
});
