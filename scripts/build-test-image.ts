// Builds floe's test guest image (or finds it in the cache) and prints where
// it is, its size and its sha256. `npm run test-image` runs it.
import { stat } from 'node:fs/promises';
import { ensureTestImage } from '@floe/testkit/guest-image';

async function main(): Promise<void> {
  const started = Date.now();
  const image = await ensureTestImage({ log: (line) => console.error(`test-image: ${line}`) });
  const size = (await stat(image.path)).size;
  console.log(`path:    ${image.path}`);
  console.log(`size:    ${size} bytes (${(size / 1024 / 1024).toFixed(1)} MiB)`);
  console.log(`sha256:  ${image.sha256}`);
  console.log(`kernel:  ${image.kernelVersion}`);
  console.error(`test-image: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
