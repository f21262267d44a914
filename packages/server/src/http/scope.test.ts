import type { Kind, Verb } from '@floe/api';
import { describe, expect, it } from 'vitest';
import { POLICY, policyForRoute } from './policy.js';
import { scopeDecision } from './scope.js';

const scope = (s: { kinds?: Kind[]; verbs?: Verb[]; resources?: string[] }) => ({
  ...(s.kinds ? { kinds: new Set(s.kinds) } : {}),
  ...(s.verbs ? { verbs: new Set(s.verbs) } : {}),
  ...(s.resources ? { resources: new Set(s.resources) } : {}),
});
const decide = (s: Parameters<typeof scope>[0], route: string) => {
  const d = scopeDecision(scope(s), POLICY[route]!);
  return 'refuse' in d ? d.refuse.message : d;
};

describe('what a token’s scope says of a route', () => {
  it('lets everything through when the scope limits nothing', () => {
    for (const route of Object.keys(POLICY)) expect(decide({}, route)).toEqual({ allow: true });
  });

  it('refuses verbs and kinds outside the scope with a message that says so', () => {
    expect(decide({ verbs: ['power'] }, 'GET /v1/instances/:id')).toBe(
      'this token may not read: its scope allows only power',
    );
    expect(decide({ verbs: ['power'] }, 'POST /v1/instances/:id/restart')).toEqual({ allow: true });
    expect(decide({ kinds: ['instance'] }, 'GET /v1/images')).toBe(
      'this token may not use image resources: its scope allows only instance',
    );
    expect(decide({ kinds: ['instance'] }, 'GET /v1/instances')).toEqual({ allow: true });
    // A NIC is a kind of its own, though its route names its instance.
    expect(decide({ kinds: ['instance'] }, 'DELETE /v1/instances/:id/nics/:nic')).toMatch(/nic resources/);
    expect(decide({ kinds: ['project'] }, 'PATCH /v1/projects/:id/members/:user')).toEqual({ allow: true });
  });

  it('asks for the resource of a route with `:id`, and refuses lists and creates to a token of single resources', () => {
    const one = { resources: ['inst_1'] };
    expect(decide(one, 'POST /v1/instances/:id/restart')).toEqual({ checkId: 'instance' });
    expect(decide(one, 'DELETE /v1/instances/:id/nics/:nic')).toEqual({ checkId: 'instance' });
    expect(decide(one, 'GET /v1/projects/:id/members')).toEqual({ checkId: 'project' });
    expect(decide(one, 'GET /v1/instances')).toMatch(/limited to single resources/);
    expect(decide(one, 'POST /v1/instances')).toMatch(/limited to single resources/);
    expect(decide(one, 'GET /v1/projects')).toMatch(/limited to single resources/);
  });
});

describe('the policy table at registration', () => {
  it('gives a route its entry, HEAD twins their GET’s', () => {
    expect(policyForRoute(['GET', 'HEAD'], '/v1/instances', false)).toBe(POLICY['GET /v1/instances']);
    expect(policyForRoute(['POST'], '/v1/instances/:id/restart', false).verb).toBe('power');
  });

  it('refuses a route without an entry, so that the app does not build', () => {
    expect(() => policyForRoute(['GET'], '/v1/unheard-of', false)).toThrow(
      'route GET /v1/unheard-of has no entry in the policy table',
    );
    expect(() => policyForRoute(['GET', 'DELETE'], '/v1/instances', false)).toThrow(/DELETE \/v1\/instances/);
  });

  it('refuses a route that says otherwise than the table about needing a token', () => {
    expect(() => policyForRoute(['GET'], '/healthz', false)).toThrow(/policy table says public/);
    expect(() => policyForRoute(['GET'], '/v1/projects', true)).toThrow(/policy table says project/);
  });
});
