import { run } from '@floe/process';
import { detectWireguard } from '../../packages/agent/src/drivers/vpn/linux.js';
import type { WireguardMode } from '../../packages/agent/src/drivers/vpn/types.js';

/**
 * How WireGuard runs here, and what a WireGuard end-to-end test with stock wg-quick clients misses (null
 * when nothing): root for the namespaces, the kernel module or wireguard-go, and wg-quick. Outside CI a
 * missing piece skips the test with this reason; under CI the test runs and fails, so a missing install
 * step is seen.
 */
export async function wireguardForTests(what: string): Promise<{ mode: WireguardMode | null; missing: string | null }> {
  const mode = await detectWireguard();
  const missing =
    process.getuid?.() !== 0
      ? 'needs root'
      : mode === null
        ? 'neither the wireguard module nor wireguard-go is installed'
        : (await run('sh', ['-c', 'command -v wg-quick'], { allowFail: true })).code !== 0
          ? 'wg-quick (wireguard-tools) is not installed'
          : null;
  if (missing !== null && !process.env.CI) console.log(`skipping ${what}: ${missing}`);
  return { mode, missing: process.env.CI ? null : missing };
}
