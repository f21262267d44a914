import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FloeError, type Image } from '@floe/api';
import { forUpdate, fromJson, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { ImagesTable } from '../db/schema.js';
import { imageFromRow } from './image-rows.js';
import { canUseProject } from './authz.js';
import { findRow } from './resource-rows.js';
import { recordHistory } from './history.js';
import { reserve } from './quota.js';
import type { NewEvent } from './events.js';
import type { Principal, ServiceContext } from './context.js';
import { checkImageInfo, parseQcow2Header } from './image-checks.js';
import { QemuImg } from './image-qemu.js';
import { exists, receive, sha256File } from './image-stream.js';
import { PostCommit } from './post-commit.js';
import { setQuantity } from './metering.js';

/** A sha256 in hex, as floe names stored image files. */
const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** The smallest whole number of GiB that holds `bytes`. */
function gibCeil(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 1024 ** 3));
}

/** How a received file is recorded by `ImageFileService.ingest`. */
export interface IngestOptions {
  /** sha256 of the file as received. */
  sha256: string;
  /** History action; an import records onto an `importing` image, an upload onto one without a file. */
  action: 'upload' | 'import';
  /** Runs first in the recording transaction (an import locks and checks its operation there). */
  lock?: (trx: Db) => Promise<void>;
  /** Runs last in the recording transaction; returns events to publish after it. */
  within?: (trx: Db, image: Image) => Promise<NewEvent[]>;
}

/** An image file ready to be sent to an agent. */
export interface StoredImageFile {
  path: string;
  size: number;
  sha256: string;
}

/** Options of the image file store. */
export interface ImageFileOptions {
  /** The qemu-img executable; default "qemu-img" from PATH. */
  qemuImg?: string;
}

/**
 * Image files of the control plane: uploads (checked with qemu-img, stored
 * as qcow2 under `<dataDir>/images/<sha256>.qcow2`, identical files kept
 * once), downloads for agents, and removal once no image record needs a file.
 */
export class ImageFileService {
  /** Where stored files live. */
  readonly dir: string;
  /** Where uploads are received and converted before they are stored. */
  readonly tmpDir: string;
  private readonly qemuImg: QemuImg;
  private readonly post: PostCommit;
  private prepared: Promise<void> | null = null;
  /** Per-sha256 serialization of "store file + record it" against "forget record + remove file". */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly ctx: ServiceContext,
    opts: ImageFileOptions = {},
  ) {
    this.dir = join(ctx.config.dataDir, 'images');
    this.tmpDir = join(this.dir, 'tmp');
    this.qemuImg = new QemuImg(opts.qemuImg ?? 'qemu-img');
    this.post = new PostCommit(ctx);
  }

  /** The stored file of a sha256. */
  pathOf(sha256: string): string {
    if (!SHA256_PATTERN.test(sha256)) throw new FloeError('validation_failed', 'not a sha256', { field: 'sha256' });
    return join(this.dir, `${sha256}.qcow2`);
  }

  /**
   * Receive the file of an image that has none yet: stream it to a temporary
   * file while hashing, check it, convert raw to qcow2, store it by sha256
   * and mark the image ready. On any failure nothing is kept.
   */
  async upload(
    principal: Principal,
    ref: string,
    project: string,
    body: Readable,
    opts: { sha256?: string; contentLength?: number } = {},
  ): Promise<Image> {
    const expected = opts.sha256?.toLowerCase();
    if (expected !== undefined && !SHA256_PATTERN.test(expected)) {
      throw new FloeError('validation_failed', 'sha256 must be 64 hex digits', { field: 'sha256' });
    }
    const image = await this.writable(principal, ref, project);
    const max = this.ctx.config.imageMaxUploadBytes;
    if (opts.contentLength !== undefined && opts.contentLength > max) {
      throw new FloeError(
        'payload_too_large',
        `the image file is ${opts.contentLength} bytes; this control plane takes at most ${max}`,
        { limit_bytes: max },
      );
    }
    const upload = await this.tempPath('upload');
    try {
      const received = await receive(body, upload, max);
      if (expected !== undefined && received.sha256 !== expected) {
        throw new FloeError(
          'image_checksum_mismatch',
          `the uploaded file has sha256 ${received.sha256}, expected ${expected}`,
          { expected, actual: received.sha256 },
        );
      }
      return await this.ingest(principal, image.id, upload, { sha256: received.sha256, action: 'upload' });
    } finally {
      await rm(upload, { force: true });
    }
  }

  /** A new path in the temporary directory (created, and cleared of a crash's leftovers, on first use). */
  async tempPath(kind: string): Promise<string> {
    await this.prepare();
    return join(this.tmpDir, `${randomBytes(12).toString('hex')}.${kind}`);
  }

  /**
   * Check a received file (uploaded or downloaded; its sha256 already known),
   * convert raw to qcow2, store it by sha256 and record it on image `id`. The
   * same checks for every way a file arrives. `file` is moved or removed.
   * `within` runs in the recording transaction (an import finishes its
   * operation there); its events are published after the commit.
   */
  async ingest(principal: Principal, id: string, file: string, opts: IngestOptions): Promise<Image> {
    const converted = `${file}.qcow2`;
    try {
      const format = await this.qemuImg.detect(file);
      const info = checkImageInfo(await this.qemuImg.info(file, format), format, this.ctx.config.imageMaxVirtualBytes);
      let stored = file;
      let sha256 = opts.sha256;
      if (format === 'raw') {
        await this.qemuImg.run(['convert', '-q', '-f', 'raw', '-O', 'qcow2', file, converted], 6 * 3600_000);
        await rm(file, { force: true });
        stored = converted;
        sha256 = await sha256File(converted);
      } else {
        await this.qemuImg.check(file);
      }
      const size = (await stat(stored)).size;
      return await this.withLock(sha256, async () => {
        const target = this.pathOf(sha256);
        if (await exists(target)) await rm(stored, { force: true });
        else await rename(stored, target);
        try {
          return await this.commit(
            principal,
            id,
            { sha256, size_bytes: size, virtual_size_bytes: info.virtualSize },
            format,
            opts,
          );
        } catch (err) {
          await this.removeIfUnused(sha256);
          throw err;
        }
      });
    } finally {
      await Promise.all([rm(file, { force: true }), rm(converted, { force: true })]);
    }
  }

  /**
   * The stored file of image `id` for the agent of `hostId`: only images an
   * instance on that host uses, and only once they have a file.
   */
  async forHost(hostId: string, id: string): Promise<StoredImageFile> {
    const notFound = (why: string) => new FloeError('image_not_found', `image "${id}" ${why}`, { kind: 'image', id });
    const row = await this.ctx.store.db.selectFrom('images').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('not found');
    const image = imageFromRow(row);
    if (image.status.sha256 === null) throw notFound('has no file yet');
    const user = await this.ctx.store.db
      .selectFrom('instances')
      .select('id')
      .where('image_id', '=', id)
      .where('host_id', '=', hostId)
      .limit(1)
      .executeTakeFirst();
    if (!user) throw notFound('is not used by any instance on this host');
    const path = this.pathOf(image.status.sha256);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch {
      throw notFound(`has lost its file ${image.status.sha256}.qcow2`);
    }
    return { path, size, sha256: image.status.sha256 };
  }

  /**
   * Give images stored before virtual sizes were recorded their virtual size and minimum disk,
   * read from the header of their stored qcow2 (migration 0003 did the others). Returns how many.
   */
  async measureOldImages(): Promise<number> {
    const rows = await this.ctx.store.db
      .selectFrom('images')
      .select(['id', 'status'])
      .where('status', 'not like', '%"sha256":null%')
      .execute();
    let measured = 0;
    for (const r of rows) {
      const status = fromJson<{ sha256?: string | null; virtual_size_bytes?: number | null }>(r.status);
      if (typeof status.sha256 !== 'string' || typeof status.virtual_size_bytes === 'number') continue;
      let virtual: number;
      try {
        const fh = await open(this.pathOf(status.sha256), 'r');
        try {
          const head = Buffer.alloc(104);
          await fh.read(head, 0, head.length, 0);
          virtual = Number(parseQcow2Header(head).virtualSize);
        } finally {
          await fh.close();
        }
      } catch {
        continue; // a lost or unreadable file: its instances fail to fetch it anyway
      }
      await transaction(this.ctx.store, async (trx) => {
        const row = await forUpdate(trx.selectFrom('images').selectAll().where('id', '=', r.id)).executeTakeFirst();
        if (!row) return;
        const img = imageFromRow(row);
        const spec = { ...img.spec, min_disk_gib: Math.max(img.spec.min_disk_gib, gibCeil(virtual)) };
        await trx
          .updateTable('images')
          .set({ spec: toJson(spec), status: toJson({ ...img.status, virtual_size_bytes: virtual }) })
          .where('id', '=', r.id)
          .execute();
      });
      measured++;
    }
    return measured;
  }

  /** Remove the stored file of `sha256` unless an image record still names it. */
  async release(sha256: string): Promise<void> {
    if (!SHA256_PATTERN.test(sha256)) return;
    await this.withLock(sha256, () => this.removeIfUnused(sha256));
  }

  private async removeIfUnused(sha256: string): Promise<void> {
    // status is JSON text written by toJson; a hex digest needs no escaping in LIKE.
    const user = await this.ctx.store.db
      .selectFrom('images')
      .select('id')
      .where('status', 'like', `%"sha256":"${sha256}"%`)
      .limit(1)
      .executeTakeFirst();
    if (!user) await rm(this.pathOf(sha256), { force: true });
  }

  private async writable(principal: Principal, ref: string, project: string): Promise<Image> {
    const image = imageFromRow(
      await findRow<ImagesTable>(this.ctx.store.db, 'images', 'image', ref, {
        project,
        principal,
        code: 'image_not_found',
        label: 'image',
      }),
    );
    if (!canUseProject(principal, image.project))
      throw new FloeError('image_not_found', `image "${ref}" not found`, { kind: 'image', id: ref });
    if (image.status.sha256 !== null) {
      throw new FloeError(
        'invalid_state',
        `image "${image.name}" already has a file; register a new image for another file`,
        { kind: 'image', id: image.id, sha256: image.status.sha256 },
      );
    }
    if (image.status.state === 'importing') {
      throw new FloeError(
        'invalid_state',
        `image "${image.name}" is being imported from a URL; cancel its operation or delete it first`,
        { kind: 'image', id: image.id, state: 'importing' },
      );
    }
    return image;
  }

  // Record the file on the image; instances already placed with it get their desired state again.
  private async commit(
    principal: Principal,
    id: string,
    status: { sha256: string; size_bytes: number; virtual_size_bytes: number },
    uploaded: 'qcow2' | 'raw',
    opts: IngestOptions,
  ): Promise<Image> {
    const { after, users, extra } = await transaction(this.ctx.store, async (trx) => {
      await opts.lock?.(trx);
      const row = await forUpdate(trx.selectFrom('images').selectAll().where('id', '=', id)).executeTakeFirst();
      const gone =
        opts.action === 'import'
          ? 'was deleted, or its import cancelled, before the file was stored'
          : 'was deleted during the upload';
      if (!row) throw new FloeError('image_not_found', `image "${id}" ${gone}`, { kind: 'image', id });
      const before = imageFromRow(row);
      if (before.status.sha256 !== null) {
        throw new FloeError('invalid_state', `image "${before.name}" received a file from another upload meanwhile`, {
          kind: 'image',
          id,
          sha256: before.status.sha256,
        });
      }
      if ((before.status.state === 'importing') !== (opts.action === 'import')) {
        throw new FloeError('invalid_state', `image "${before.name}" is ${before.status.state}`, {
          kind: 'image',
          id,
          state: before.status.state,
        });
      }
      await reserve(trx, this.ctx.store.dialect, row.project, { image_bytes: status.size_bytes });
      const minDisk = Math.max(before.spec.min_disk_gib, gibCeil(status.virtual_size_bytes));
      const next: Image = {
        ...before,
        spec: { ...before.spec, format: 'qcow2', min_disk_gib: minDisk },
        status: { state: 'ready', ...status },
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      const placed = await trx
        .selectFrom('instances')
        .select(['id', 'name', 'host_id', 'spec'])
        .where('image_id', '=', id)
        .where('deleting', '=', 0)
        .execute();
      // Instances made while the image had no file could not be checked against its size then.
      const small = placed.find((p) => fromJson<{ disk_gib: number }>(p.spec).disk_gib < minDisk);
      if (small) {
        const requested = fromJson<{ disk_gib: number }>(small.spec).disk_gib;
        throw new FloeError(
          'disk_too_small',
          `instance "${small.name}" has a ${requested} GiB disk but this file needs ${minDisk} GiB; delete it or use another image`,
          {
            field: 'disk_gib',
            instance: small.id,
            requested_gib: requested,
            minimum_gib: minDisk,
          },
        );
      }
      await trx
        .updateTable('images')
        .set({
          spec: toJson(next.spec),
          status: toJson(next.status),
          revision: next.revision,
          updated_at: next.updated_at,
        })
        .where('id', '=', id)
        .execute();
      await setQuantity(
        trx,
        { project: before.project, resource_kind: 'image', resource_id: id, dimension: 'image_bytes' },
        status.size_bytes,
        next.updated_at,
      );
      await recordHistory(trx, {
        kind: 'image',
        resource_id: id,
        project: before.project,
        revision: next.revision,
        action: opts.action,
        actor: principal.actor,
        before,
        after: next,
      });
      const extra = opts.within ? await opts.within(trx, next) : [];
      return { after: next, users: placed, extra };
    });
    await this.post.run({
      events: [
        {
          type: 'resource.updated',
          project: after.project,
          kind: 'image',
          resource_id: after.id,
          data: {
            revision: after.revision,
            state: 'ready',
            sha256: status.sha256,
            size_bytes: status.size_bytes,
            uploaded_format: uploaded,
          },
        },
        ...extra,
      ],
      desired: users.map((u) => ({ instanceId: u.id, hostId: u.host_id })),
    });
    return after;
  }

  // Create the directories, and clear uploads a crash left behind (once per process).
  private prepare(): Promise<void> {
    this.prepared ??= (async () => {
      await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
      for (const name of await readdir(this.tmpDir))
        await rm(join(this.tmpDir, name), { force: true, recursive: true });
    })().catch((err: unknown) => {
      this.prepared = null;
      throw err;
    });
    return this.prepared;
  }

  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.locks.set(key, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(key) === next) this.locks.delete(key);
    }
  }
}
