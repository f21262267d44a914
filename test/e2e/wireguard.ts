import { run } from '@floe/process';
import type { GuestShell } from './netns.js';
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

/**
 * Ask floe's DHCP server from a test guest as a client that applies option 121 does (systemd-networkd,
 * dhclient): the test image's boot-time hook sets no classless routes. Returns the routes the answer
 * carried (`ROUTES <prefix> <router> ...`) once they include `want`, after they were applied.
 */
export async function routesByDhcp(shell: GuestShell, want: string): Promise<string> {
  const hook = [
    '#!/bin/sh',
    '[ "$1" = bound ] || exit 0',
    'echo "ROUTES $staticroutes"',
    'set -- $staticroutes',
    'while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done',
  ];
  await shell.sh(`printf '%s\\n' ${hook.map((l) => `'${l}'`).join(' ')} > /tmp/routes.sh && chmod +x /tmp/routes.sh`);
  return shell.until(
    `udhcpc -i eth0 -n -q -f -O staticroutes -s /tmp/routes.sh -t 5 -T 2 2>/dev/null | grep ROUTES | grep '${want}'`,
    `${want} in the DHCP answer`,
    60_000,
  );
}
