import { Type, type Static } from 'typebox';
import { Id, ListQuery, Name, Nullable, ProjectQuery, Timestamp } from './common.js';
import { ErrorBody } from './errors.js';
import { FloatingIp } from './floating-ips.js';
import { Image } from './images.js';
import { Nic } from './networks.js';
import { Instance } from './resources.js';

// ---------------------------------------------------------------- operations

/** Operation states; only `pending` can be cancelled. */
export const OperationStatus = Type.Union([
  Type.Literal('pending'),
  Type.Literal('running'),
  Type.Literal('succeeded'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);
export type OperationStatus = Static<typeof OperationStatus>;

/** A reference to a resource an operation touches. */
export const ResourceRef = Type.Object({ kind: Type.String(), id: Type.String(), name: Type.Optional(Type.String()) });
export type ResourceRef = Static<typeof ResourceRef>;

/** Work on a host, tracked until it ends. */
export const Operation = Type.Object({
  id: Id,
  project: Nullable(Name),
  kind: Type.String({ description: 'e.g. instance.create, instance.stop' }),
  status: OperationStatus,
  progress: Type.Integer({ minimum: 0, maximum: 100 }),
  message: Type.String(),
  resources: Type.Array(ResourceRef),
  error: Nullable(ErrorBody),
  transfer: Type.Optional(
    Type.Object(
      {
        done_bytes: Type.Integer({ minimum: 0 }),
        total_bytes: Nullable(Type.Integer({ minimum: 0, description: 'null when the server sent no Content-Length' })),
      },
      { description: 'operations that move a file (image.import): bytes so far' },
    ),
  ),
  created_by: Type.String(),
  created_at: Timestamp,
  updated_at: Timestamp,
  finished_at: Nullable(Timestamp),
});
export type Operation = Static<typeof Operation>;

/** Answer of `POST /v1/images/import`: the image (importing) and the operation that downloads its file. */
export const ImageImported = Type.Object({ image: Image, operation: Operation });
export type ImageImported = Static<typeof ImageImported>;

/** Query of `GET /v1/operations/{id}`. */
export const OperationWaitQuery = Type.Object({
  wait: Type.Optional(
    Type.Number({ minimum: 0, maximum: 3600, description: 'block up to this many seconds until the operation ends' }),
  ),
});

export type OperationWaitQuery = Static<typeof OperationWaitQuery>;

// ---------------------------------------------------------------- events

/** Event types on `/v1/events`. */
export const EVENT_TYPES = [
  'resource.created',
  'resource.updated',
  'resource.deleted',
  'instance.state',
  'instance.event',
  'operation.created',
  'operation.updated',
  'host.online',
  'host.offline',
  'log',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** One event. `seq` orders events and resumes a stream (`?since=` or `Last-Event-ID`). */
export const Event = Type.Object({
  seq: Type.Integer(),
  id: Id,
  time: Timestamp,
  type: Type.String(),
  project: Nullable(Name),
  kind: Type.String({ description: 'resource kind: instance, operation, host, ...' }),
  resource_id: Type.String(),
  data: Type.Record(Type.String(), Type.Unknown()),
  actor: Nullable(
    Type.String({
      description:
        'who caused the event: the id of the requesting token (or `checker:<authenticator>:<subject>`), as the ' +
        'audit log and history name it; null when nobody asked (agent reports, heartbeats, background work)',
    }),
  ),
});
export type Event = Static<typeof Event>;

/** Query of `GET /v1/events`. */
export const EventsQuery = Type.Object({
  project: Type.Optional(Name),
  kind: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  type: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  resource: Type.Optional(Type.String({ maxLength: 100 })),
  since: Type.Optional(Type.Integer({ minimum: 0, description: 'replay events after this seq' })),
});
export type EventsQuery = Static<typeof EventsQuery>;

/** Query of routes that resolve a name in a project and answer with an operation (`?project=&wait=`). */
export const ProjectWaitQuery = Type.Object({ ...ProjectQuery.properties, ...OperationWaitQuery.properties });
export type ProjectWaitQuery = Static<typeof ProjectWaitQuery>;

/** Query of `GET /v1/operations`: a list, optionally of one status. */
export const OperationListQuery = Type.Object({
  ...ListQuery.properties,
  status: Type.Optional(Type.String({ maxLength: 20 })),
});
export type OperationListQuery = Static<typeof OperationListQuery>;

/** Answer of `POST /v1/instances`: the new instance and the operation creating it. */
export const InstanceCreated = Type.Object({ instance: Instance, operation: Operation });
export type InstanceCreated = Static<typeof InstanceCreated>;

/** Answer of `POST /v1/instances/{id}/nics` and `PATCH .../nics/{nic}`: the NIC and the operation applying it. */
export const NicAdded = Type.Object({ nic: Nic, operation: Operation });
export type NicAdded = Static<typeof NicAdded>;

/**
 * Answer of `POST /v1/floating-ips/{id}/attach` and `.../detach`: the floating IP as it now is, and the
 * operation on the instance it goes to (attach) or leaves (detach), done once that instance's host has it.
 */
export const FloatingIpChanged = Type.Object({ floating_ip: FloatingIp, operation: Operation });
export type FloatingIpChanged = Static<typeof FloatingIpChanged>;
