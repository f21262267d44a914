// Writes the generated API documents: docs/api/openapi.json (from the routes'
// schemas) and docs/api/errors.md (from ERROR_CODES). `npm run openapi` runs it;
// packages/server/src/docs.test.ts fails when the committed copies are stale.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DOC_FILES, renderErrorsMarkdown, renderOpenapiJson } from '../packages/server/src/docs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function main(): Promise<void> {
  const files: Array<[string, string]> = [
    [DOC_FILES.openapi, await renderOpenapiJson()],
    [DOC_FILES.errors, renderErrorsMarkdown()],
  ];
  for (const [rel, text] of files) {
    const file = path.join(root, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text);
    console.log(`wrote ${rel}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
