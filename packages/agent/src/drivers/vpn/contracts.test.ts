import { randomBytes } from 'node:crypto';
import { vpnDriverContract } from '@floe/testkit/net-contracts';
import { run } from '../../host/exec.js';
import { hostExec } from '../net/host-exec.js';
import { netnsUnavailable } from '../net/testing.js';
import { FakeVpnDriver } from './fake.js';
import { detectWireguard, LinuxVpnDriver } from './linux.js';
import { describe, expect, it } from 'vitest';

// The VPN contract against the fake and the Linux driver, each case in a network namespace of its own.

vpnDriverContract('fake', () => Promise.resolve({ driver: new FakeVpnDriver(), cleanup: () => Promise.resolve() }));

const reason = await netnsUnavailable('VPN driver contract tests');
const mode = await detectWireguard();
if (reason === null && mode === null)
  console.log('skipping the Linux VPN contract: neither the wireguard module nor wireguard-go is here');
// Under CI the Linux contract must run: a machine without namespaces or WireGuard fails here instead of
// passing with the real driver's cases skipped.
it.runIf(process.env.CI)('runs the Linux VPN contract under CI', () => {
  expect(reason).toBeNull();
  expect(mode === 'kernel' || mode === 'wireguard-go', String(mode)).toBe(true);
});

describe.skipIf(reason !== null || mode === null)('Linux VPN driver', () => {
  vpnDriverContract(`linux (${mode})`, async () => {
    const ns = `floe-v-${randomBytes(4).toString('hex')}`;
    await run('ip', ['netns', 'add', ns]);
    // Loopback up: two interfaces of the namespace may dial each other on 127.0.0.1.
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return {
      driver: new LinuxVpnDriver(mode!, hostExec(ns)),
      cleanup: async () => {
        await run('ip', ['netns', 'del', ns], { allowFail: true });
      },
    };
  });
});
