import type { AuditQuery, AuditRecord } from '@floe/api';
import type { FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { runWithClient } from '../testing.js';

const NOW = Date.parse('2026-12-07T01:00:00.000Z');

const RECORDS: AuditRecord[] = [
  {
    id: 'aud_01JB8X0Q3E6M2T9K4V7W5YB1C2',
    at: '2026-12-07T00:59:00.000Z',
    action: 'auth.failed',
    outcome: 'error',
    status: 401,
    error_code: 'unauthenticated',
    reason: 'revoked',
    token_id: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    user_id: null,
    user_name: null,
    authenticator: 'token',
    source_address: '192.0.2.7',
    method: 'POST',
    route: '/v1/instances',
    resource_kind: 'instance',
    resource_id: null,
    project: 'shop',
    request_id: 'req-9',
  },
  {
    id: 'aud_01JB8X0Q3E6M2T9K4V7W5YB1C1',
    at: '2026-12-07T00:58:00.000Z',
    action: 'instance.create',
    outcome: 'ok',
    status: 202,
    error_code: null,
    reason: null,
    token_id: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C4',
    user_id: 'usr_1',
    user_name: 'ada',
    authenticator: 'token',
    source_address: '192.0.2.8',
    method: 'POST',
    route: '/v1/instances',
    resource_kind: 'instance',
    resource_id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C5',
    project: 'shop',
    request_id: 'req-8',
  },
];

async function floe(argv: string[]) {
  const asked: AuditQuery[] = [];
  const client = {
    audit: {
      list: (q: AuditQuery) => {
        asked.push(q);
        return Promise.resolve({ items: RECORDS, next_cursor: null });
      },
    },
    close: () => Promise.resolve(),
  } as unknown as FloeClient;
  return { ...(await runWithClient(argv, client, { now: NOW })), asked };
}

describe('floe audit', () => {
  it('passes every filter to the API and prints a table', async () => {
    const r = await floe([
      'audit',
      '--token',
      'tok_x',
      '--user',
      'ada',
      '--action',
      'instance.',
      '--outcome',
      'error',
      '--resource',
      'inst_y',
      '--since',
      '2026-12-01T00:00:00Z',
      '--until',
      '2026-12-08T00:00:00Z',
      '-p',
      'shop',
      '--limit',
      '5',
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.asked).toEqual([
      {
        token: 'tok_x',
        user: 'ada',
        action: 'instance.',
        outcome: 'error',
        resource: 'inst_y',
        since: '2026-12-01T00:00:00Z',
        until: '2026-12-08T00:00:00Z',
        project: 'shop',
        limit: 5,
      },
    ]);
    const [head, ...rows] = r.out.trimEnd().split('\n');
    expect(head).toMatch(/^AT\s+ACTION\s+OUTCOME\s+TOKEN\s+USER\s+RESOURCE\s+PROJECT\s+FROM\s+AGE/);
    expect(rows[0]).toMatch(/auth\.failed\s+401 unauthenticated\s+tok_\w+\s+-\s+-\s+shop\s+192\.0\.2\.7\s+1m/);
    expect(rows[1]).toMatch(/instance\.create\s+202\s+tok_\w+\s+ada\s+instance\/inst_\w+\s+shop\s+192\.0\.2\.8/);
  });

  it('asks with no filters by default and prints JSON with --json', async () => {
    const r = await floe(['audit', '--json']);
    expect(r.code, r.err).toBe(0);
    expect(r.asked).toEqual([{}]);
    expect(JSON.parse(r.out)).toEqual({ items: RECORDS, next_cursor: null });
  });
});
