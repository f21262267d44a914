import { describe, expect, it } from 'vitest';
import { membershipChanges, operatorAfter } from './login-provision.js';

const ids = new Map([
  ['web', 'prj_web'],
  ['db', 'prj_db'],
  ['ops', 'prj_ops'],
]);

describe('role sync decisions', () => {
  it('adds, changes and removes only the memberships the mapping gave; hand-made ones stay as they are', () => {
    const changes = membershipChanges(
      { operator: false, projects: { web: 'member', db: 'viewer', ops: 'owner', gone: 'member' } },
      [
        { projectId: 'prj_web', role: 'viewer', via: 'mapping' },
        { projectId: 'prj_ops', role: 'viewer', via: null },
        { projectId: 'prj_old', role: 'member', via: 'mapping' },
        { projectId: 'prj_mine', role: 'owner', via: null },
      ],
      ids,
    );
    expect(changes).toEqual([
      { op: 'set', projectId: 'prj_web', role: 'member' },
      { op: 'add', projectId: 'prj_db', role: 'viewer' },
      { op: 'remove', projectId: 'prj_old' },
    ]);
  });

  it('changes nothing when the mapping gives what the user has', () => {
    expect(
      membershipChanges(
        { operator: false, projects: { web: 'member' } },
        [{ projectId: 'prj_web', role: 'member', via: 'mapping' }],
        ids,
      ),
    ).toEqual([]);
  });

  it('the operator flag follows the mapping when it names operator groups; else only grants add it', () => {
    const yes = { operator: true, projects: {} };
    const no = { operator: false, projects: {} };
    expect(operatorAfter(true, no, { operators: ['admins'] })).toBe(false);
    expect(operatorAfter(false, yes, { operators: ['admins'] })).toBe(true);
    expect(operatorAfter(true, no, {})).toBe(true);
    expect(operatorAfter(false, no, {})).toBe(false);
    expect(operatorAfter(false, yes, {})).toBe(true);
  });
});
