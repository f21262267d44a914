import type { DesiredImage, DesiredInstance, DesiredNic, InstanceSpec } from '@floe/api';
import { fromJson } from '../db/index.js';
import type { InstancesTable } from '../db/schema.js';
import type { ImageService } from './catalog.js';
import type { ServiceContext } from './context.js';
import { normalizeSpec } from './first-boot.js';
import type { NicService } from './nics.js';

/** Row (and its image) → what the agent must make true. */
function desiredFromRow(
  row: InstancesTable,
  image: DesiredImage | null = null,
  nics: DesiredNic[] = [],
  defaultVendorData: string | null = null,
): DesiredInstance {
  const spec = normalizeSpec(fromJson<InstanceSpec>(row.spec));
  return {
    id: row.id,
    name: row.name,
    project: row.project,
    revision: Number(row.revision),
    spec,
    image,
    deleting: row.deleting === 1,
    generation: Number(row.generation),
    restart_generation: Number(row.restart_generation),
    force_stop: row.force_stop === 1,
    nics,
    vendor_data: spec.vendor_data ?? defaultVendorData,
  };
}

/** The agent-facing view of instances: what each must be, with its image and NICs. */
export class DesiredInstances {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly images: ImageService,
    private readonly nics: NicService,
  ) {}

  /** Everything placed on a host, for the snapshot an agent gets on connect. */
  async forHost(hostId: string): Promise<DesiredInstance[]> {
    const rows = await this.ctx.store.db
      .selectFrom('instances')
      .selectAll()
      .where('host_id', '=', hostId)
      .orderBy('id')
      .execute();
    const images = await this.images.desired(rows.map((r) => r.image_id));
    const nics = await this.nics.desired(rows.map((r) => r.id));
    return rows.map((r) =>
      desiredFromRow(r, images.get(r.image_id) ?? null, nics.get(r.id) ?? [], this.ctx.config.vendorData),
    );
  }

  /** The desired state of one instance, or null when it is gone. */
  async one(id: string): Promise<DesiredInstance | null> {
    const row = await this.ctx.store.db.selectFrom('instances').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return null;
    const nics = await this.nics.desired([row.id]);
    return desiredFromRow(
      row,
      (await this.images.desired([row.image_id])).get(row.image_id) ?? null,
      nics.get(row.id) ?? [],
      this.ctx.config.vendorData,
    );
  }
}
