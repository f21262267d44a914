import { describe, expect, it } from 'vitest';
import { mapRoles, type RoleMapping } from './roles.js';

const mapping: RoleMapping = {
  operators: ['floe-admins', 'cn=Root,ou=groups,dc=x'],
  projects: [
    { project: 'web', owner: ['web-owners'], member: ['devs'], viewer: ['auditors', 'staff'] },
    { project: 'db', member: ['dbas'], viewer: ['devs'] },
  ],
};

describe('group → role mapping', () => {
  it('gives nothing for groups the mapping does not name', () => {
    expect(mapRoles({ groups: ['strangers'] }, mapping)).toEqual({ operator: false, projects: {} });
    expect(mapRoles({ groups: [] }, {})).toEqual({ operator: false, projects: {} });
  });

  it('makes operators of operator groups, matching case-insensitively', () => {
    expect(mapRoles({ groups: ['FLOE-ADMINS'] }, mapping).operator).toBe(true);
    expect(mapRoles({ groups: ['cn=root,ou=groups,dc=x'] }, mapping).operator).toBe(true);
  });

  it('gives the highest role per project over all groups', () => {
    expect(mapRoles({ groups: ['staff', 'devs'] }, mapping).projects).toEqual({ web: 'member', db: 'viewer' });
    expect(mapRoles({ groups: ['devs', 'web-owners', 'auditors'] }, mapping).projects).toEqual({
      web: 'owner',
      db: 'viewer',
    });
    expect(mapRoles({ groups: ['devs', 'dbas'] }, mapping).projects).toEqual({ web: 'member', db: 'member' });
  });

  it('adds roles a checker granted directly, without lowering a mapped one', () => {
    expect(
      mapRoles(
        {
          groups: ['web-owners'],
          roles: [{ role: 'viewer', project: 'web' }, { role: 'owner', project: 'new' }, { role: 'operator' }],
        },
        mapping,
      ),
    ).toEqual({ operator: true, projects: { web: 'owner', new: 'owner' } });
  });

  it('is not fooled by project names like __proto__', () => {
    const r = mapRoles({ groups: ['g'] }, { projects: [{ project: '__proto__', viewer: ['g'] }] });
    expect(Object.keys(r.projects)).toEqual(['__proto__']);
    expect(r.projects.__proto__).toBe('viewer');
  });
});
