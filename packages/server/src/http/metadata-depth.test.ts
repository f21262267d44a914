import { METADATA_MAX_DEPTH } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { jsonDepth } from '../services/resource-rows.js';
import { injectJson, startTestControlPlane, type TestControlPlane } from '../testing.js';

/** `{ a: { a: ... { a: 1 } } }`, `levels` objects deep, built without recursion. */
function nested(levels: number): Record<string, unknown> {
  let v: Record<string, unknown> = { a: 1 };
  for (let i = 1; i < levels; i++) v = { a: v };
  return v;
}

describe('jsonDepth', () => {
  it('counts objects and arrays, not scalars, and stops past the limit', () => {
    expect(jsonDepth(1, 5)).toBe(0);
    expect(jsonDepth({}, 5)).toBe(1);
    expect(jsonDepth({ a: [1, { b: [] }] }, 5)).toBe(4);
    expect(jsonDepth(nested(100_000), 32)).toBe(33);
  });
});

/** The JSON text of `nested(levels)`, written out directly (too deep for JSON.stringify past a few thousand). */
const nestedText = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

describe('metadata nesting', () => {
  let cp: TestControlPlane;
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open());
  });
  afterAll(async () => {
    await cp?.close();
  });

  /** `method url` with a body whose `metadata` is `levels` deep, sent as text. */
  async function send(method: 'POST' | 'PATCH', url: string, fields: string, levels: number) {
    const res = await cp.app.http.inject({
      method,
      url,
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
      payload: `{${fields}"metadata":${nestedText(levels)}}`,
    });
    return { status: res.statusCode, body: res.json<{ error: { code: string; details: unknown } }>() };
  }

  it(`stores ${METADATA_MAX_DEPTH} levels and refuses more, however deep, with validation_failed (never a 500)`, async () => {
    expect((await injectJson(cp, 'POST', '/v1/projects', { name: 'deep', metadata: nested(32) })).status).toBe(201);
    for (const levels of [33, 5_000, 20_000]) {
      const res = await send('POST', '/v1/projects', `"name":"deep${levels}",`, levels);
      expect(res.status, `${levels} levels`).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'validation_failed', details: { field: 'metadata' } });
    }
  });

  it('refuses a merge patch that nests too deep before merging it', async () => {
    for (const levels of [33, 20_000]) {
      const res = await send('PATCH', '/v1/projects/deep', '', levels);
      expect(res.status, `${levels} levels`).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'validation_failed', details: { field: 'metadata' } });
    }
    const ok = await injectJson(cp, 'PATCH', '/v1/projects/deep', { metadata: { b: nested(3) } });
    expect(ok.status).toBe(200);
    expect(ok.body.metadata.b).toEqual(nested(3));
  });
});
