import { Type, type Static, type TSchema } from 'typebox';

/** A schema that also admits null. */
export const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** A DNS label: lower-case letters, digits and hyphens, 1-63 chars, no leading or trailing hyphen. */
export const NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';

/** Resource name (a DNS label, unique per project and kind). @example "web-1" */
export const Name = Type.String({
  pattern: NAME_PATTERN,
  minLength: 1,
  maxLength: 63,
  description: 'DNS label: a-z, 0-9 and "-", 1-63 characters',
});

/** A prefixed, sortable id such as `inst_01JB8X0Q3E6M2T9K4V7W5YB1C3`. */
export const Id = Type.String({ pattern: '^[a-z]{2,5}_[0-9A-HJKMNP-TV-Z]{26}$', description: 'prefixed, sortable id' });

/** Label keys: `[prefix/]name`, Kubernetes style; values up to 63 characters. */
export const LABEL_KEY_PATTERN =
  '^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$';
/** Label values: empty or up to 63 characters of `[A-Za-z0-9_.-]`. */
export const LABEL_VALUE_PATTERN = '^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$';

/** String map for filtering and grouping: `?label=env=prod`. At most 64 labels. */
export const Labels = Type.Record(
  Type.String({ pattern: LABEL_KEY_PATTERN }),
  Type.String({ pattern: LABEL_VALUE_PATTERN }),
  {
    maxProperties: 64,
    propertyNames: { pattern: LABEL_KEY_PATTERN },
    description: 'string map, filterable with ?label=key=value',
  },
);
export type Labels = Static<typeof Labels>;

/** Labels in a merge patch: `null` removes a label. */
export const LabelsPatch = Type.Record(
  Type.String({ pattern: LABEL_KEY_PATTERN }),
  Type.Union([Type.Null(), Type.String({ pattern: LABEL_VALUE_PATTERN })]),
  {
    maxProperties: 64,
    propertyNames: { pattern: LABEL_KEY_PATTERN },
    description: 'labels to set; null removes one',
  },
);
export type LabelsPatch = Static<typeof LabelsPatch>;

/** Opaque customer JSON, at most 64 KiB when serialized and 32 levels deep (checked by the server). */
export const Metadata = Type.Record(Type.String(), Type.Unknown(), {
  description: 'opaque JSON object, at most 64 KiB and 32 levels of nested objects and arrays',
});
export type Metadata = Static<typeof Metadata>;

/** Largest serialized size of `metadata`, in bytes. */
export const METADATA_MAX_BYTES = 64 * 1024;

/** Deepest nesting of objects and arrays in `metadata` (the metadata object itself is level 1). */
export const METADATA_MAX_DEPTH = 32;

/** ISO 8601 timestamp in UTC. */
export const Timestamp = Type.String({ format: 'date-time' });

/** Fields every resource carries. */
export const ResourceFields = {
  id: Id,
  name: Name,
  labels: Labels,
  metadata: Metadata,
  revision: Type.Integer({ minimum: 1, description: 'bumped on every change; also the ETag' }),
  created_at: Timestamp,
  updated_at: Timestamp,
};

/** Fields of resources that belong to a project. */
export const ProjectScopedFields = {
  ...ResourceFields,
  project: Name,
};

/** A page of a list: `next_cursor` is null on the last page. */
export function Page<T extends TSchema>(item: T) {
  return Type.Object({
    items: Type.Array(item),
    next_cursor: Type.Union([Type.String(), Type.Null()]),
  });
}
/** A page of items of type T. */
export interface PageOf<T> {
  items: T[];
  next_cursor: string | null;
}

/** Query parameters every list accepts. */
export const ListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  cursor: Type.Optional(Type.String({ maxLength: 200 })),
  label: Type.Optional(
    Type.Union([Type.String(), Type.Array(Type.String())], {
      description: 'key=value or key; repeatable (all must match)',
    }),
  ),
  project: Type.Optional(Name),
});
export type ListQuery = Static<typeof ListQuery>;

/** Path parameter naming a resource by id or by name (names resolve inside `?project=`). */
export const IdOrNameParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });
export type IdOrNameParams = Static<typeof IdOrNameParams>;

/** Query parameter selecting the project a name resolves in. */
export const ProjectQuery = Type.Object({ project: Type.Optional(Name) });
export type ProjectQuery = Static<typeof ProjectQuery>;

/** Body of the labels/metadata part shared by create requests. */
export const CommonCreateFields = {
  name: Name,
  labels: Type.Optional(Labels),
  metadata: Type.Optional(Metadata),
};

/** Id prefixes per kind. */
export const ID_PREFIX = {
  project: 'prj',
  token: 'tok',
  host: 'host',
  join_token: 'join',
  image: 'img',
  machine_type: 'mt',
  instance: 'inst',
  operation: 'op',
  event: 'evt',
  history: 'hist',
  network: 'net',
  nic: 'nic',
  security_group: 'sg',
  audit: 'aud',
  user: 'usr',
  vpn_pool: 'vpool',
  vpn_network: 'vnet',
  vpn_peer: 'vpeer',
  floating_ip: 'fip',
  port_forward: 'pfw',
} as const;
/** Resource kinds that have ids. */
export type Kind = keyof typeof ID_PREFIX;

/**
 * A byte count as people read it, in powers of 1024 with one decimal
 * (`512 B`, `12.3 MiB`); the CLI and the control plane's progress messages
 * show sizes alike.
 *
 * @example
 * formatBytes(3 * 1024 * 1024) // '3.0 MiB'
 */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
