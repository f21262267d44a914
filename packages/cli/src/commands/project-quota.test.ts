import type { HistoryEntry, ProjectUsage, QuotaLimitsChange } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { runWithClient } from '../testing.js';

const USAGE: ProjectUsage = {
  project: 'team',
  parent: 'org',
  subprojects: ['dev'],
  dimensions: [
    { dimension: 'vcpus', limit: 8, used: 2, used_subtree: 4, delegated: 4, available: 4 },
    { dimension: 'instances', limit: null, used: 1, used_subtree: 2, delegated: 0, available: null },
  ],
};

const HISTORY: HistoryEntry[] = [
  {
    id: 'hist_1',
    kind: 'project',
    resource_id: 'prj_1',
    revision: 1,
    action: 'create',
    actor: 'tok_admin',
    time: '2026-01-01T00:00:00.000Z',
    before: null,
    after: { name: 'team' },
  },
  {
    id: 'hist_2',
    kind: 'project',
    resource_id: 'prj_1',
    revision: 2,
    action: 'set-limits',
    actor: 'tok_owner',
    time: '2026-01-01T00:00:00.000Z',
    before: { name: 'team', limits: { vcpus: 4, instances: 2 } },
    after: { name: 'team', limits: { vcpus: 8, memory_mib: 4096 } },
  },
];

function fake() {
  const sent: { id: string; change: QuotaLimitsChange }[] = [];
  const client = {
    close: () => undefined,
    projects: {
      usage: () => Promise.resolve(USAGE),
      history: () => Promise.resolve({ items: HISTORY, next_cursor: null }),
      setLimits: (id: string, change: QuotaLimitsChange) => {
        sent.push({ id, change });
        return Promise.resolve({ project: id, limits: { vcpus: 16 } });
      },
    },
  } as unknown as FloeClient;
  return { client, sent };
}

describe('floe project usage and limits', () => {
  it('shows usage as a table with a bar against the limit', async () => {
    const { client } = fake();
    const run = await runWithClient(['project', 'usage', 'team'], client);
    expect(run.code).toBe(0);
    expect(run.out).toContain('project team (in org), sub-projects: dev');
    expect(run.out).toMatch(/vcpus\s+2\s+4\s+8\s+4\s+4\s+\[##########\.{10}\] 50%/);
    expect(run.out).toMatch(/instances\s+1\s+2\s+-\s+0\s+-/);
  });

  it('sets limits from flags, "none" removing one, and refuses what is not a number', async () => {
    const { client, sent } = fake();
    const run = await runWithClient(
      ['project', 'limits', 'set', 'dev', '--vcpus', '16', '--memory-mib', 'none'],
      client,
    );
    expect(run.code, run.err).toBe(0);
    expect(sent).toEqual([{ id: 'dev', change: { vcpus: 16, memory_mib: null } }]);
    expect(run.out).toBe('project dev: vcpus=16\n');
    const bad = await runWithClient(['project', 'limits', 'set', 'dev', '--vcpus', 'many'], client);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--vcpus must be a whole number');
    expect((await runWithClient(['project', 'limits', 'set', 'dev'], client)).code).toBe(2);
  });

  it('shows the history with what each change did to the limits', async () => {
    const { client } = fake();
    const run = await runWithClient(['project', 'history', 'team'], client);
    expect(run.code, run.err).toBe(0);
    expect(run.out).toMatch(/1\s+create\s+tok_admin/);
    expect(run.out).toMatch(/2\s+set-limits\s+tok_owner\s+.*instances 2->-, vcpus 4->8, memory_mib -->4096/);
  });
});
