import type { Image } from '@floe/api';
import { fromJson } from '../db/index.js';
import type { ImagesTable } from '../db/schema.js';
import { baseFields } from './resource-rows.js';

/** Row → API shape. */
export function imageFromRow(row: ImagesTable): Image {
  // Records from before uploads existed have no virtual size.
  return {
    ...baseFields(row),
    project: row.project,
    spec: fromJson(row.spec),
    status: {
      virtual_size_bytes: null,
      ...fromJson<Omit<Image['status'], 'virtual_size_bytes'> & { virtual_size_bytes?: number | null }>(row.status),
    },
  };
}

/** The smallest disk, in GiB, an instance of `image` may have: its minimum, and at least its file's virtual size. */
export function imageMinDiskGib(image: Image): number {
  const virtual = image.status.virtual_size_bytes;
  return Math.max(image.spec.min_disk_gib, virtual === null ? 1 : Math.ceil(virtual / 1024 ** 3));
}
