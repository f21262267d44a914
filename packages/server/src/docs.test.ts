import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES } from '@floe/api';
import { describe, expect, it } from 'vitest';
import { DOC_FILES, normalizeOpenapi, openapiDocument, renderErrorsMarkdown, renderOpenapiJson } from './docs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const STALE = 'is stale: run `npm run openapi` and commit the result';

async function committed(rel: string): Promise<string> {
  try {
    return await readFile(path.join(root, rel), 'utf8');
  } catch {
    return '';
  }
}

/** Every non-test .ts file under packages/<pkg>/src. */
async function sourceFiles(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== 'dist') await walk(full);
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) {
        out.push(full);
      }
    }
  };
  for (const pkg of await readdir(path.join(root, 'packages'), { withFileTypes: true })) {
    if (!pkg.isDirectory()) continue;
    const src = path.join(root, 'packages', pkg.name, 'src');
    if (
      await readdir(src).then(
        () => true,
        () => false,
      )
    )
      await walk(src);
  }
  return out;
}

describe('generated API documents', () => {
  it('docs/api/openapi.json matches the routes', async () => {
    const expected = await renderOpenapiJson();
    const actual = await committed(DOC_FILES.openapi);
    expect(actual === expected, `${DOC_FILES.openapi} ${STALE}`).toBe(true);
  });

  it('docs/api/errors.md matches ERROR_CODES', async () => {
    const actual = await committed(DOC_FILES.errors);
    expect(actual === renderErrorsMarkdown(), `${DOC_FILES.errors} ${STALE}`).toBe(true);
  });

  it('errors.md lists every error code with its status', async () => {
    const md = await committed(DOC_FILES.errors);
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      expect(md, `${code} missing from ${DOC_FILES.errors}; run \`npm run openapi\``).toContain(
        `| \`${code}\` | ${status} |`,
      );
    }
  });

  it('every FloeError thrown in the sources uses a code of ERROR_CODES', async () => {
    const files = await sourceFiles();
    expect(files.length).toBeGreaterThan(10);
    const unknown: string[] = [];
    let found = 0;
    for (const file of files) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/new\s+FloeError\(\s*(['"`])([^'"`]*)\1/g)) {
        found++;
        if (!Object.prototype.hasOwnProperty.call(ERROR_CODES, m[2]!))
          unknown.push(`${path.relative(root, file)}: ${m[2]}`);
      }
    }
    expect(found).toBeGreaterThan(20);
    expect(unknown, 'codes thrown but not listed in ERROR_CODES (packages/api/src/errors.ts)').toEqual([]);
  });

  it('the document is deterministic and has no servers', async () => {
    const [a, b] = [await openapiDocument(), await openapiDocument()];
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(a).not.toHaveProperty('servers');
    expect(Object.keys(a).slice(0, 2)).toEqual(['openapi', 'info']);
    const paths = Object.keys(a.paths as object);
    expect(paths).toEqual([...paths].sort());
    expect(paths).toContain('/v1/instances/{id}');
  });

  it('normalizeOpenapi sorts keys, drops servers and orders methods', () => {
    const doc = normalizeOpenapi({
      paths: { '/b': { delete: {}, get: { z: 1, a: [{ y: 1, x: 2 }] } }, '/a': { post: {} } },
      servers: [{ url: 'https://example.invalid' }],
      info: { version: '1', title: 't' },
      openapi: '3.1.0',
    });
    expect(JSON.stringify(doc)).toBe(
      '{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{"/a":{"post":{}},"/b":{"get":{"a":[{"x":2,"y":1}],"z":1},"delete":{}}}}',
    );
  });
});
