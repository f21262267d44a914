// Writes a gzip and a brotli copy beside each built text asset (JS, CSS, HTML, SVG, JSON) of at least
// 1 KiB, so floed can send the compressed bytes to browsers that accept them without compressing on
// every request. Files that would not shrink get no copy.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const TEXT = /\.(js|mjs|css|html|svg|json)$/;

async function* files(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else if (TEXT.test(entry.name)) yield path;
  }
}

let raw = 0;
let gz = 0;
for await (const path of files(dist)) {
  const data = await readFile(path);
  if (data.length < 1024) continue;
  const gzip = gzipSync(data, { level: 9 });
  const br = brotliCompressSync(data, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length },
  });
  if (gzip.length < data.length) await writeFile(`${path}.gz`, gzip);
  if (br.length < data.length) await writeFile(`${path}.br`, br);
  raw += data.length;
  gz += gzip.length;
}
console.log(
  `web: compressed copies written (${Math.round(raw / 1024)} KiB of assets, ${Math.round(gz / 1024)} KiB gzipped)`,
);
