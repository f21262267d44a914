import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { chainOf, subtreeOf } from './quota-rules.js';

describe('quota rules', () => {
  it('FLOE_DEFAULT_LIMITS gives the limits of new top-level projects, and refuses what is not one', () => {
    expect(loadConfig({}).defaultLimits).toEqual({});
    expect(loadConfig({ FLOE_DEFAULT_LIMITS: 'vcpus=64, memory_mib=131072,ipv4_public=0' }).defaultLimits).toEqual({
      vcpus: 64,
      memory_mib: 131072,
      ipv4_public: 0,
    });
    for (const bad of ['cpus=4', 'vcpus=-1', 'vcpus=', 'vcpus=1.5', 'vcpus'])
      expect(() => loadConfig({ FLOE_DEFAULT_LIMITS: bad }), bad).toThrow(/FLOE_DEFAULT_LIMITS/);
  });

  it('walks a tree up to its root and down to every descendant', () => {
    const tree = [
      { id: 'a', name: 'org', parent_id: null },
      { id: 'b', name: 'team', parent_id: 'a' },
      { id: 'c', name: 'dev', parent_id: 'b' },
      { id: 'd', name: 'ops', parent_id: 'a' },
    ];
    expect(chainOf(tree, 'c').map((n) => n.name)).toEqual(['org', 'team', 'dev']);
    expect(subtreeOf(tree, 'a').map((n) => n.name)).toEqual(['org', 'team', 'dev', 'ops']);
    expect(subtreeOf(tree, 'b').map((n) => n.name)).toEqual(['team', 'dev']);
  });
});
