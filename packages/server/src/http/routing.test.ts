import { describe, expect, it } from 'vitest';
import { openapiDocument } from '../docs.js';

// Every route checks what it reads: its path parameters, and the body of writes, have schemas
// (the validator compiler enforces them at runtime and the type provider types the handlers from them).

interface Parameter {
  name: string;
  in: string;
  schema?: { maxLength?: number };
}
interface Operation {
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: { additionalProperties?: unknown } }> };
}

/** POST actions that take no body: nothing in it is read. */
const BODILESS = new Set([
  'POST /v1/instances/{id}/start',
  'POST /v1/instances/{id}/restart',
  'POST /v1/operations/{id}/cancel',
  'POST /v1/auth/logout',
  'POST /v1/users/me/totp',
  'POST /v1/floating-ips/{id}/detach',
]);

async function operations(): Promise<[string, Operation][]> {
  const doc = (await openapiDocument()) as { paths: Record<string, Record<string, Operation>> };
  return Object.entries(doc.paths).flatMap(([p, ops]) =>
    Object.entries(ops).map(([method, op]): [string, Operation] => [`${method.toUpperCase()} ${p}`, op]),
  );
}

describe('route schemas', () => {
  it('bound every path parameter and refuse unknown fields in every JSON body', async () => {
    const all = await operations();
    expect(all.length).toBeGreaterThan(40);
    for (const [route, op] of all) {
      const inPath = [...route.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      const declared = (op.parameters ?? []).filter((p) => p.in === 'path');
      expect(declared.map((p) => p.name).sort(), route).toEqual([...inPath].sort());
      for (const p of declared) expect(p.schema?.maxLength, `${route} ${p.name}`).toBeLessThanOrEqual(100);
      const method = route.split(' ')[0]!;
      if (['POST', 'PUT', 'PATCH'].includes(method) && !BODILESS.has(route)) {
        expect(op.requestBody, `${route} has no body schema`).toBeDefined();
        const json = op.requestBody?.content['application/json'];
        if (json !== undefined) expect(json.schema.additionalProperties, route).toBe(false);
      }
    }
  });
});
