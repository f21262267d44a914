import { Type, type Static } from 'typebox';
import { CommonCreateFields, LabelsPatch, Metadata, Name, ProjectScopedFields, Nullable } from './common.js';

// ---------------------------------------------------------------- images

/** Disk image formats floe stores. */
export const ImageFormat = Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]);

/** A bootable disk image: the record, and once uploaded its file (stored as qcow2, addressed by sha256). */
export const Image = Type.Object({
  ...ProjectScopedFields,
  spec: Type.Object({
    /** qcow2 once a file was uploaded: raw uploads are converted. */
    format: ImageFormat,
    os: Type.String({ maxLength: 100 }),
    min_disk_gib: Type.Integer({
      minimum: 1,
      description:
        'smallest disk an instance of this image may have: the virtual size of its file rounded up to GiB, or more if asked at creation',
    }),
    public: Type.Boolean({ description: 'visible to every project' }),
  }),
  status: Type.Object({
    state: Type.Union(
      [Type.Literal('pending'), Type.Literal('importing'), Type.Literal('ready'), Type.Literal('error')],
      {
        description:
          'pending until a file is uploaded (PUT /v1/images/{id}/file), importing while its file is downloaded (POST /v1/images/import), then ready',
      },
    ),
    size_bytes: Nullable(Type.Integer({ description: 'size of the stored qcow2 file' })),
    sha256: Nullable(Type.String({ description: 'sha256 of the stored qcow2 file (hex)' })),
    virtual_size_bytes: Nullable(Type.Integer({ description: 'size of the disk the image describes' })),
  }),
});
export type Image = Static<typeof Image>;

/** Body of `POST /v1/images`. */
export const ImageCreate = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  format: Type.Optional(ImageFormat),
  os: Type.Optional(Type.String({ maxLength: 100 })),
  min_disk_gib: Type.Optional(Type.Integer({ minimum: 1, maximum: 65536 })),
  public: Type.Optional(Type.Boolean()),
});
export type ImageCreate = Static<typeof ImageCreate>;

/** A checksum such as `sha256:HEX` or `sha512:HEX`. */
export const ImageChecksum = Type.String({
  pattern: '^(sha256:[0-9a-fA-F]{64}|sha512:[0-9a-fA-F]{128})$',
  description: 'sha256:HEX or sha512:HEX of the file at the URL',
});

/** Where an imported image's file comes from. */
export const ImageSource = Type.Object(
  {
    url: Type.String({
      minLength: 8,
      maxLength: 2048,
      description: 'http:// or https:// URL of a raw or qcow2 file; up to 5 redirects are followed',
    }),
    checksum: Type.Optional(ImageChecksum),
    checksum_url: Type.Optional(
      Type.String({
        minLength: 8,
        maxLength: 2048,
        description:
          'URL of a SHA256SUMS or SHA512SUMS file (GNU "HEX  name" or BSD "SHA256 (name) = HEX" lines); the line for the file name of `url` is used',
      }),
    ),
    ca_pem: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 65536,
        description: 'PEM certificate(s) trusted for this download besides the system CAs',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ImageSource = Static<typeof ImageSource>;

/** Body of `POST /v1/images/import`: a new image whose file the control plane downloads. */
export const ImageImport = Type.Object({
  ...CommonCreateFields,
  project: Type.Optional(Name),
  os: Type.Optional(Type.String({ maxLength: 100 })),
  min_disk_gib: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 65536,
      description: 'raised to the virtual size of the file when that is larger',
    }),
  ),
  public: Type.Optional(Type.Boolean()),
  source: ImageSource,
});
export type ImageImport = Static<typeof ImageImport>;

/** Body of `PATCH /v1/images/{id}`. */
export const ImagePatch = Type.Object({
  labels: Type.Optional(LabelsPatch),
  metadata: Type.Optional(Metadata),
  spec: Type.Optional(
    Type.Object({ os: Type.Optional(Type.String({ maxLength: 100 })), public: Type.Optional(Type.Boolean()) }),
  ),
});
export type ImagePatch = Static<typeof ImagePatch>;

/** Query of `PUT /v1/images/{id}/file`: the project a name resolves in, and the expected sha256. */
export const ImageUploadQuery = Type.Object({
  project: Type.Optional(Name),
  sha256: Type.Optional(
    Type.String({
      pattern: '^[0-9a-fA-F]{64}$',
      description: 'expected sha256 of the uploaded bytes (or header X-Floe-Sha256)',
    }),
  ),
});
export type ImageUploadQuery = Static<typeof ImageUploadQuery>;
