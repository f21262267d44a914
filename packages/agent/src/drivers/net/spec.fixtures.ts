import type { NetSpec, NicSpec } from './types.js';

/** A dual-stack host-gateway network with two peers, shared by the builders' golden tests. */
export const NET: NetSpec = {
  id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  vni: 100,
  ipv4: { cidr: '10.10.0.0/24', gateway: '10.10.0.1' },
  ipv6: { cidr: 'fd00:10::/64', gateway: 'fd00:10::1' },
  mtu: 1450,
  gatewayMode: 'host',
  dns: true,
  peers: ['192.0.2.2', '192.0.2.3'],
  natInterface: 'eth0',
};

/** A NIC on NET. */
export const NIC: NicSpec = {
  id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C4',
  instanceId: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C5',
  networkId: NET.id,
  mac: '52:54:00:12:34:56',
  ipv4: '10.10.0.5',
  ipv6: 'fd00:10::5054:ff:fe12:3456',
  hostname: 'web-1',
};
