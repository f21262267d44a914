/** The host network areas of the agent (links, DHCP/DNS, firewall): interfaces, Linux drivers and fakes. */
export type { DhcpDriver, DhcpState, FirewallDriver, NetworkDriver, NatDriver, RateLimitDriver } from './areas.js';
export { HostNetworkDriver, type HostNetworkOptions } from './driver.js';
export { FakeHostNetwork, type FakeHostNetworkOptions } from './fake-host-network.js';
export { FakeDhcpDriver, FakeFirewall, FakeHost, FakeNetworkDriver, type FakeDnsmasq, type FakeLink } from './fake.js';
export { FakeRateLimiter } from './fake-rate-limit.js';
export { FakeNat } from './fake-nat.js';
export type { NatNic } from './nat-rules.js';
export { bridgeName, ifbName, tapName, vxlanName } from './names.js';
export type {
  GatewayMode,
  NetFamily,
  NetKind,
  NetSpec,
  NicSpec,
  ObservedLink,
  SecurityGroupSpec,
  SgProtocol,
  SgRule,
} from './types.js';
