import { Type, type Static } from 'typebox';
import { CommonCreateFields, Name, Nullable, ProjectScopedFields } from './common.js';

// ---------------------------------------------------------------- floating IPs and port forwards

/** An IPv4 address in dotted form. */
const Ipv4 = Type.String({ pattern: '^[0-9]{1,3}(\\.[0-9]{1,3}){3}$', maxLength: 15 });
/** A reference to a resource by id or name. */
const Ref = Type.String({ minLength: 1, maxLength: 100 });

/**
 * A public IPv4 address taken from a public network's pool, held by a project
 * until deleted. Attached to a NIC, it is that NIC's address one to one: the
 * host of the instance answers for it, sends what arrives for it to the NIC's
 * private address, and what the NIC sends out leaves from it. Moving it to
 * another instance is one attach.
 *
 * @example
 * { "id": "fip_01J…", "name": "web", "network": "net_01J…", "address": "198.51.100.50", "instance": "inst_01J…", "nic": "nic_01J…" }
 */
export const FloatingIp = Type.Object({
  ...ProjectScopedFields,
  network: Type.String({ description: 'id of the public network whose pool the address is from' }),
  address: Ipv4,
  instance: Nullable(Type.String({ description: 'id of the instance it is attached to; null when detached' })),
  nic: Nullable(Type.String({ description: 'id of the NIC it is attached to; null when detached' })),
});
export type FloatingIp = Static<typeof FloatingIp>;

/** Body of `POST /v1/floating-ips`: the public network, optionally the address and where to attach it. */
export const FloatingIpCreate = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  network: Type.Optional(Ref),
  address: Type.Optional(Ipv4),
  instance: Type.Optional(Ref),
  nic: Type.Optional(
    Type.String({ minLength: 1, maxLength: 100, description: 'NIC id; default the instance’s first NIC with IPv4' }),
  ),
});
export type FloatingIpCreate = Static<typeof FloatingIpCreate>;

/** Body of `POST /v1/floating-ips/{id}/attach`: the instance (and NIC) to move the address to. */
export const FloatingIpAttach = Type.Object({
  instance: Ref,
  nic: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
});
export type FloatingIpAttach = Static<typeof FloatingIpAttach>;

/** `tcp` or `udp`. */
export const ForwardProtocol = Type.Union([Type.Literal('tcp'), Type.Literal('udp')]);
export type ForwardProtocol = Static<typeof ForwardProtocol>;

const Port = Type.Integer({ minimum: 1, maximum: 65535 });

/**
 * A port of a floating IP, or of the host the instance runs on, forwarded to a
 * port of an instance's NIC (destination NAT): `198.51.100.50:2222/tcp` to
 * `10.10.0.5:22`. A floating IP that carries forwards is not attached one to one.
 */
export const PortForward = Type.Object({
  ...ProjectScopedFields,
  protocol: ForwardProtocol,
  floating_ip: Nullable(
    Type.String({ description: 'id of the floating IP listened on; null: the host’s own addresses' }),
  ),
  address: Nullable(Type.String({ description: 'the floating IP’s address; null for the host’s' })),
  port: Port,
  instance: Type.String({ description: 'id of the instance forwarded to' }),
  nic: Type.String({ description: 'id of its NIC forwarded to' }),
  target_address: Type.String({ description: 'the NIC’s private IPv4 address' }),
  target_port: Port,
});
export type PortForward = Static<typeof PortForward>;

/** Body of `POST /v1/port-forwards`. */
export const PortForwardCreate = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  protocol: Type.Optional(ForwardProtocol),
  floating_ip: Type.Optional(Ref),
  port: Port,
  instance: Ref,
  nic: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  target_port: Type.Optional(Port),
});
export type PortForwardCreate = Static<typeof PortForwardCreate>;
