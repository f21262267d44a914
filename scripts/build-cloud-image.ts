// Builds floe's real cloud image (Debian 12, the cloud kernel, Debian's
// cloud-init) or finds it in the cache, and prints where it is, its size and
// how long its build took. `npm run cloud-image` runs it.
import { ensureCloudImage } from '@floe/testkit/cloud-image';

async function main(): Promise<void> {
  const started = Date.now();
  const image = await ensureCloudImage({ log: (line) => console.error(`cloud-image: ${line}`) });
  console.log(`path:    ${image.path}`);
  console.log(`size:    ${image.sizeBytes} bytes (${(image.sizeBytes / 1024 / 1024).toFixed(1)} MiB)`);
  console.log(`sha256:  ${image.sha256}`);
  console.log(`kernel:  ${image.kernelVersion}`);
  console.log(`built:   in ${image.buildSeconds} s`);
  console.error(`cloud-image: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
