import { NET, NIC } from './spec.fixtures.js';
import type { NicSpec, SecurityGroupSpec } from './types.js';

/*
 * Security groups shared by the builder's golden test and the tests that
 * apply them in namespaces: `web` lets ssh in from the `admin` group and HTTP
 * from one subnet; `default` lets its members reach each other, ssh and ICMP
 * in from anywhere.
 */

export const SG_WEB = 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D1';
export const SG_ADMIN = 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D2';
export const SG_DEFAULT = 'sg_01JB8X0Q3E6M2T9K4V7W5YB1D3';

/** Groups as the control plane sends them (members are NIC addresses on every host). */
export const GROUPS: SecurityGroupSpec[] = [
  {
    id: SG_WEB,
    ingressDefault: 'deny',
    egressDefault: 'allow',
    rules: [
      { direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: null, remoteGroup: SG_ADMIN },
      {
        direction: 'ingress',
        protocol: 'tcp',
        portMin: 80,
        portMax: 89,
        remoteCidr: '192.0.2.0/24',
        remoteGroup: null,
      },
      {
        direction: 'ingress',
        protocol: 'udp',
        portMin: null,
        portMax: null,
        remoteCidr: 'fd00:99::/48',
        remoteGroup: null,
      },
    ],
    members: ['10.10.0.5', 'fd00:10::5054:ff:fe12:3456'],
  },
  {
    id: SG_ADMIN,
    ingressDefault: 'deny',
    egressDefault: 'deny',
    rules: [
      { direction: 'egress', protocol: 'icmp', portMin: null, portMax: null, remoteCidr: null, remoteGroup: null },
    ],
    members: ['10.10.0.6', '10.10.0.9', 'fd00:10::6'],
  },
  {
    id: SG_DEFAULT,
    ingressDefault: 'deny',
    egressDefault: 'allow',
    rules: [
      {
        direction: 'ingress',
        protocol: 'any',
        portMin: null,
        portMax: null,
        remoteCidr: null,
        remoteGroup: SG_DEFAULT,
      },
      { direction: 'ingress', protocol: 'tcp', portMin: 22, portMax: 22, remoteCidr: null, remoteGroup: null },
      { direction: 'ingress', protocol: 'icmp', portMin: null, portMax: null, remoteCidr: null, remoteGroup: null },
      { direction: 'ingress', protocol: 'icmpv6', portMin: null, portMax: null, remoteCidr: null, remoteGroup: null },
    ],
    members: [],
  },
];

/** NIC (10.10.0.5) in `web`; a second NIC (10.10.0.6) in `admin` and `default`; a third unfiltered. */
export const SG_NICS: NicSpec[] = [
  { ...NIC, securityGroups: [SG_WEB] },
  {
    ...NIC,
    id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1D4',
    mac: '52:54:00:12:34:57',
    ipv4: '10.10.0.6',
    ipv6: 'fd00:10::6',
    hostname: 'admin-1',
    securityGroups: [SG_DEFAULT, SG_ADMIN],
  },
  {
    ...NIC,
    id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1D5',
    mac: '52:54:00:12:34:58',
    ipv4: '10.10.0.7',
    ipv6: null,
    hostname: 'fw-1',
    securityGroups: [SG_DEFAULT],
    filtering: false,
  },
];

export { NET };
