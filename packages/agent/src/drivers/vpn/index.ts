export type { VpnDriver, VpnInterfaceSpec, VpnPeerSpec, VpnPeerStats, WireguardMode } from './types.js';
export { vpnIfName, vpnRuleset, nftScript, parseDump, peerCommand } from './commands.js';
export { LinuxVpnDriver, detectWireguard, publicKeyOf } from './linux.js';
export { FakeVpnDriver } from './fake.js';
