import { FloeError, type Image } from '@floe/api';
import { imageMinDiskGib } from './image-rows.js';

/**
 * The smallest disk an instance of `image` may get, after checking the image
 * can be booted from (not still importing) and that a requested `diskGib` is
 * not below it (disk_too_small: a smaller disk would silently keep the
 * image's size while the spec says otherwise).
 */
export function checkImageDisk(image: Image, diskGib: number | undefined): number {
  if (image.status.state === 'importing') {
    throw new FloeError(
      'invalid_state',
      `image "${image.name}" is still being imported; wait for its image.import operation`,
      { kind: 'image', id: image.id, state: 'importing' },
    );
  }
  const minimum = imageMinDiskGib(image);
  if (diskGib !== undefined && diskGib < minimum) {
    throw new FloeError(
      'disk_too_small',
      `image "${image.name}" needs a disk of at least ${minimum} GiB; ${diskGib} GiB was asked for`,
      {
        field: 'disk_gib',
        image: image.id,
        requested_gib: diskGib,
        minimum_gib: minimum,
      },
    );
  }
  return minimum;
}
