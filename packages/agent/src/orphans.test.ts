import { describe, expect, it } from 'vitest';
import type { VmInfo } from '@floe/api';
import { OrphanReports } from './orphans.js';

const vm = (id: string, state: VmInfo['state'] = 'running'): VmInfo => ({
  id,
  state,
  reason: null,
  accelerator: 'fake',
  started_at: null,
  pid: null,
});

describe('OrphanReports', () => {
  it('reports a VM outside the desired state once, with its state', () => {
    const o = new OrphanReports();
    const wanted = new Set(['a']);
    expect(o.check([vm('a'), vm('b', 'stopped')], (id) => wanted.has(id))).toEqual([
      {
        id: 'b',
        message: 'VM b (stopped) exists on this host but not in the desired state; left alone',
        data: { state: 'stopped' },
      },
    ]);
    expect(o.check([vm('a'), vm('b')], (id) => wanted.has(id))).toEqual([]);
  });

  it('reports it again after it went away and came back, or was wanted in between', () => {
    const o = new OrphanReports();
    const none = () => false;
    expect(o.check([vm('b')], none).map((r) => r.id)).toEqual(['b']);
    expect(o.check([], none)).toEqual([]);
    expect(o.check([vm('b')], none).map((r) => r.id)).toEqual(['b']);
    o.wanted('b');
    expect(o.check([vm('b')], none).map((r) => r.id)).toEqual(['b']);
  });
});
