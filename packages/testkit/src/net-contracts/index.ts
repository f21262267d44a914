/*
 * Contract suites of the agent's host network areas (network, DHCP/DNS,
 * firewall), run against the fakes and the Linux drivers alike. They type
 * their drivers with @floe/agent's interfaces, so they are type-checked with
 * the tests (tsconfig.check.json) and not built into @floe/testkit, which
 * the agent still depends on.
 */
export { networkDriverContract, type NetworkContractSetup, type NetworkProbe, type ProbedLink } from './network.js';
export { dhcpDriverContract, type DhcpContractSetup } from './dhcp.js';
export { firewallDriverContract, type FirewallContractSetup } from './firewall.js';
export { rateLimitDriverContract, type RateLimitContractSetup } from './rate-limit.js';
export { nicOn, privateNet } from './samples.js';
export { vpnDriverContract, type VpnContractSetup } from './vpn.js';
