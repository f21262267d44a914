import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FloeError, type Image } from '@floe/api';
import { forUpdate, nowIso, toJson, transaction } from '../db/index.js';
import type { ImagesTable } from '../db/schema.js';
import { ExecError, run } from '../exec.js';
import { imageFromRow } from './catalog.js';
import { canUseProject, findRow, recordHistory } from './common.js';
import type { Principal, ServiceContext } from './context.js';

/** A sha256 in hex, as floe names stored image files. */
export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** Bytes read from the start of an upload to recognise its format and check a qcow2 header. */
const HEAD_BYTES = 64 * 1024;
/** Bytes read from the end: some formats (VHD, DMG) keep their signature in a footer. */
const TAIL_BYTES = 512;
/** qcow2 incompatible-feature bits. */
const QCOW2_INCOMPAT_CORRUPT = 1n << 1n;
const QCOW2_INCOMPAT_DATA_FILE = 1n << 2n;
/** qcow2 header extension naming an external data file ("DATA"). */
const QCOW2_EXT_DATA_FILE = 0x44415441;

/**
 * The disk format of an upload, recognised by its magic bytes the way QEMU's
 * own probes do: "qcow2", "raw", or the name of a format floe does not take.
 * floe never lets `qemu-img` guess: a probed VMDK descriptor makes it open
 * whatever host files its extents name.
 */
export function sniffImageFormat(head: Buffer, tail: Buffer = Buffer.alloc(0)): string {
  const at = (offset: number, text: string) => head.subarray(offset, offset + text.length).equals(Buffer.from(text, 'latin1'));
  if (at(0, 'QFI\xfb')) return head.length >= 8 && head.readUInt32BE(4) >= 2 ? 'qcow2' : 'qcow';
  if (at(0, 'QED\0')) return 'qed';
  if (at(0, 'KDMV') || at(0, 'COWD')) return 'vmdk';
  if (/^#\s*Disk\s*Descriptor\s*File/i.test(head.subarray(0, 64).toString('latin1'))) return 'vmdk';
  if (head.length >= 68 && head.readUInt32LE(64) === 0xbeda107f) return 'vdi';
  if (at(0, 'vhdxfile')) return 'vhdx';
  if (at(0, 'conectix') || tail.subarray(0, 8).equals(Buffer.from('conectix', 'latin1'))) return 'vpc';
  if (at(0, 'LUKS\xba\xbe')) return 'luks';
  if (at(0, 'WithoutFreeSpace') || at(0, 'WithouFreSpacExt')) return 'parallels';
  if (at(0, 'Bochs Virtual HD Image')) return 'bochs';
  if (at(0, '#!/bin/sh\n#V2.0 Format\n')) return 'cloop';
  if (tail.length >= 4 && tail.subarray(0, 4).equals(Buffer.from('koly', 'latin1'))) return 'dmg';
  return 'raw';
}

/** The fields of a qcow2 header floe checks before any tool opens the file. */
export interface Qcow2Header {
  version: number;
  backingFileOffset: bigint;
  backingFileSize: number;
  virtualSize: bigint;
  cryptMethod: number;
  incompatibleFeatures: bigint;
  /** A header extension names an external data file. */
  dataFileExtension: boolean;
}

/** Parse the header (and header extensions) of a qcow2 file from its first bytes. */
export function parseQcow2Header(head: Buffer): Qcow2Header {
  if (head.length < 72 || head.readUInt32BE(0) !== 0x514649fb) {
    throw new FloeError('image_format_unsupported', 'the file is not a qcow2 image: its header is incomplete');
  }
  const version = head.readUInt32BE(4);
  const v3 = version >= 3 && head.length >= 104;
  const incompatibleFeatures = v3 ? head.readBigUInt64BE(72) : 0n;
  const headerLength = v3 ? head.readUInt32BE(100) : 72;
  let dataFileExtension = false;
  // Header extensions follow the header: type, length, data padded to 8 bytes; type 0 ends them.
  for (let off = headerLength; off + 8 <= head.length; ) {
    const type = head.readUInt32BE(off);
    const len = head.readUInt32BE(off + 4);
    if (type === 0) break;
    if (type === QCOW2_EXT_DATA_FILE) dataFileExtension = true;
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return {
    version,
    backingFileOffset: head.readBigUInt64BE(8),
    backingFileSize: head.readUInt32BE(16),
    virtualSize: head.readBigUInt64BE(24),
    cryptMethod: head.readUInt32BE(32),
    incompatibleFeatures,
    dataFileExtension,
  };
}

/** Reject a qcow2 header that points outside the file (backing file, data file) or that QEMU could not use. */
export function checkQcow2Header(h: Qcow2Header): void {
  if (h.backingFileOffset !== 0n || h.backingFileSize !== 0) {
    throw new FloeError('image_backing_file_forbidden', 'the qcow2 image names a backing file; upload a self-contained image (qemu-img convert -O qcow2 merges the chain)');
  }
  if ((h.incompatibleFeatures & QCOW2_INCOMPAT_DATA_FILE) !== 0n || h.dataFileExtension) {
    throw new FloeError('image_backing_file_forbidden', 'the qcow2 image keeps its data in an external data file; upload a self-contained image');
  }
  if (h.cryptMethod !== 0) throw new FloeError('image_format_unsupported', 'encrypted qcow2 images are not supported');
  if ((h.incompatibleFeatures & QCOW2_INCOMPAT_CORRUPT) !== 0n) throw new FloeError('image_format_unsupported', 'the qcow2 image is marked corrupt');
}

/** What floe takes from `qemu-img info --output=json`. */
export interface CheckedImageInfo {
  format: 'qcow2' | 'raw';
  virtualSize: number;
}

/**
 * Check the JSON of `qemu-img info --output=json`: the expected format, no
 * backing file or external data file, not encrypted, a virtual size within
 * `maxVirtualBytes`.
 */
export function checkImageInfo(info: unknown, expected: 'qcow2' | 'raw', maxVirtualBytes: number): CheckedImageInfo {
  const i = (typeof info === 'object' && info !== null ? info : {}) as Record<string, unknown>;
  if (i.format !== expected) {
    throw new FloeError('image_format_unsupported', `qemu-img reads the file as ${String(i.format)}, expected ${expected}`);
  }
  const data = ((i['format-specific'] as { data?: Record<string, unknown> } | undefined)?.data ?? {}) as Record<string, unknown>;
  if (i['backing-filename'] !== undefined || i['full-backing-filename'] !== undefined) {
    throw new FloeError('image_backing_file_forbidden', 'the image names a backing file; upload a self-contained image');
  }
  if (data['data-file'] !== undefined) {
    throw new FloeError('image_backing_file_forbidden', 'the image keeps its data in an external data file; upload a self-contained image');
  }
  if (i.encrypted === true || data.encrypt !== undefined) throw new FloeError('image_format_unsupported', 'encrypted images are not supported');
  const virtualSize = i['virtual-size'];
  if (typeof virtualSize !== 'number' || !Number.isSafeInteger(virtualSize) || virtualSize <= 0) {
    throw new FloeError('image_format_unsupported', 'qemu-img reports no virtual size for the image');
  }
  if (virtualSize > maxVirtualBytes) {
    throw new FloeError('image_too_large', `the image describes a disk of ${gib(virtualSize)}; this control plane takes at most ${gib(maxVirtualBytes)}`, {
      virtual_size_bytes: virtualSize,
      limit_bytes: maxVirtualBytes,
    });
  }
  return { format: expected, virtualSize };
}

function gib(bytes: number): string {
  return `${Math.round((bytes / 1024 ** 3) * 100) / 100} GiB`;
}

/** sha256 (hex) of a file. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
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
  private readonly qemuImg: string;
  private prepared: Promise<void> | null = null;
  /** Per-sha256 serialization of "store file + record it" against "forget record + remove file". */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly ctx: ServiceContext, opts: ImageFileOptions = {}) {
    this.dir = join(ctx.config.dataDir, 'images');
    this.tmpDir = join(this.dir, 'tmp');
    this.qemuImg = opts.qemuImg ?? 'qemu-img';
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
  async upload(principal: Principal, ref: string, project: string, body: Readable, opts: { sha256?: string; contentLength?: number } = {}): Promise<Image> {
    const expected = opts.sha256?.toLowerCase();
    if (expected !== undefined && !SHA256_PATTERN.test(expected)) {
      throw new FloeError('validation_failed', 'sha256 must be 64 hex digits', { field: 'sha256' });
    }
    const image = await this.writable(principal, ref, project);
    const max = this.ctx.config.imageMaxUploadBytes;
    if (opts.contentLength !== undefined && opts.contentLength > max) {
      throw new FloeError('payload_too_large', `the image file is ${opts.contentLength} bytes; this control plane takes at most ${max}`, { limit_bytes: max });
    }
    await this.prepare();
    const upload = join(this.tmpDir, `${randomBytes(12).toString('hex')}.upload`);
    const converted = `${upload}.qcow2`;
    try {
      const received = await receive(body, upload, max);
      if (expected !== undefined && received.sha256 !== expected) {
        throw new FloeError('image_checksum_mismatch', `the uploaded file has sha256 ${received.sha256}, expected ${expected}`, { expected, actual: received.sha256 });
      }
      const format = await this.detect(upload);
      const info = checkImageInfo(await this.info(upload, format), format, this.ctx.config.imageMaxVirtualBytes);
      let file = upload;
      let sha256 = received.sha256;
      if (format === 'raw') {
        await this.qemu(['convert', '-q', '-f', 'raw', '-O', 'qcow2', upload, converted], 6 * 3600_000);
        await rm(upload, { force: true });
        file = converted;
        sha256 = await sha256File(converted);
      } else {
        await this.check(upload);
      }
      const size = (await stat(file)).size;
      return await this.withLock(sha256, async () => {
        const target = this.pathOf(sha256);
        if (await exists(target)) await rm(file, { force: true });
        else await rename(file, target);
        try {
          return await this.commit(principal, image.id, { sha256, size_bytes: size, virtual_size_bytes: info.virtualSize }, format);
        } catch (err) {
          await this.removeIfUnused(sha256);
          throw err;
        }
      });
    } finally {
      await Promise.all([rm(upload, { force: true }), rm(converted, { force: true })]);
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
    const user = await this.ctx.store.db.selectFrom('instances').select('id').where('image_id', '=', id).where('host_id', '=', hostId).limit(1).executeTakeFirst();
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

  /** Remove the stored file of `sha256` unless an image record still names it. */
  async release(sha256: string): Promise<void> {
    if (!SHA256_PATTERN.test(sha256)) return;
    await this.withLock(sha256, () => this.removeIfUnused(sha256));
  }

  private async removeIfUnused(sha256: string): Promise<void> {
    // status is JSON text written by toJson; a hex digest needs no escaping in LIKE.
    const user = await this.ctx.store.db.selectFrom('images').select('id').where('status', 'like', `%"sha256":"${sha256}"%`).limit(1).executeTakeFirst();
    if (!user) await rm(this.pathOf(sha256), { force: true });
  }

  private async writable(principal: Principal, ref: string, project: string): Promise<Image> {
    const image = imageFromRow(await findRow<ImagesTable>(this.ctx.store.db, 'images', 'image', ref, { project, principal, code: 'image_not_found', label: 'image' }));
    if (!canUseProject(principal, image.project)) throw new FloeError('image_not_found', `image "${ref}" not found`, { kind: 'image', id: ref });
    if (image.status.sha256 !== null) {
      throw new FloeError('invalid_state', `image "${image.name}" already has a file; register a new image for another file`, { kind: 'image', id: image.id, sha256: image.status.sha256 });
    }
    return image;
  }

  // Record the file on the image; instances already placed with it get their desired state again.
  private async commit(principal: Principal, id: string, status: { sha256: string; size_bytes: number; virtual_size_bytes: number }, uploaded: 'qcow2' | 'raw'): Promise<Image> {
    const { after, users } = await transaction(this.ctx.store, async (trx) => {
      const row = await forUpdate(trx.selectFrom('images').selectAll().where('id', '=', id)).executeTakeFirst();
      if (!row) throw new FloeError('image_not_found', `image "${id}" was deleted during the upload`, { kind: 'image', id });
      const before = imageFromRow(row);
      if (before.status.sha256 !== null) {
        throw new FloeError('invalid_state', `image "${before.name}" received a file from another upload meanwhile`, { kind: 'image', id, sha256: before.status.sha256 });
      }
      const next: Image = {
        ...before,
        spec: { ...before.spec, format: 'qcow2' },
        status: { state: 'ready', ...status },
        revision: before.revision + 1,
        updated_at: nowIso(),
      };
      await trx.updateTable('images').set({ spec: toJson(next.spec), status: toJson(next.status), revision: next.revision, updated_at: next.updated_at }).where('id', '=', id).execute();
      await recordHistory(trx, { kind: 'image', resource_id: id, project: before.project, revision: next.revision, action: 'upload', actor: principal.actor, before, after: next });
      const placed = await trx.selectFrom('instances').select(['id', 'host_id']).where('image_id', '=', id).where('deleting', '=', 0).execute();
      return { after: next, users: placed };
    });
    await this.ctx.bus.publish({
      type: 'resource.updated',
      project: after.project,
      kind: 'image',
      resource_id: after.id,
      data: { revision: after.revision, state: 'ready', sha256: status.sha256, size_bytes: status.size_bytes, uploaded_format: uploaded },
    });
    for (const u of users) if (u.host_id !== null) this.ctx.signals.send('desired', u.id, u.host_id);
    return after;
  }

  // Recognise the format ourselves; check a qcow2 header before qemu-img opens the file.
  private async detect(file: string): Promise<'qcow2' | 'raw'> {
    const fh = await open(file, 'r');
    let head: Buffer;
    let tail: Buffer;
    try {
      const { size } = await fh.stat();
      if (size === 0) throw new FloeError('image_format_unsupported', 'the uploaded file is empty');
      head = Buffer.alloc(Math.min(HEAD_BYTES, size));
      await fh.read(head, 0, head.length, 0);
      tail = Buffer.alloc(Math.min(TAIL_BYTES, size));
      await fh.read(tail, 0, tail.length, size - tail.length);
    } finally {
      await fh.close();
    }
    const format = sniffImageFormat(head, tail);
    if (format === 'qcow2') checkQcow2Header(parseQcow2Header(head));
    else if (format !== 'raw') throw new FloeError('image_format_unsupported', `the file is a ${format} image; floe takes raw or qcow2 (convert it with qemu-img convert -O qcow2)`, { format });
    return format;
  }

  private async info(file: string, format: 'qcow2' | 'raw'): Promise<unknown> {
    // An explicit -f: qemu-img never guesses, and without --backing-chain it opens no backing file.
    let stdout: string;
    try {
      ({ stdout } = await run(this.qemuImg, ['info', '--output=json', '-U', '-f', format, file], { timeoutMs: 60_000 }));
    } catch (err) {
      if (err instanceof ExecError && err.code === 1) {
        throw new FloeError('image_format_unsupported', `qemu-img cannot read the ${format} image: ${err.stderr.trim().split('\n')[0] || 'no reason given'}`);
      }
      throw toFloeError(err, this.qemuImg, 'info');
    }
    try {
      return JSON.parse(stdout);
    } catch {
      throw new FloeError('internal_error', 'qemu-img info printed something that is not JSON');
    }
  }

  // A qcow2 kept as uploaded must be consistent: exit 2 is corruption, 1 a file qemu-img cannot check; 3 (leaked clusters) is harmless.
  private async check(file: string): Promise<void> {
    try {
      await run(this.qemuImg, ['check', '-q', '-f', 'qcow2', file], { timeoutMs: 10 * 60_000 });
    } catch (err) {
      if (err instanceof ExecError && err.code === 3) return;
      if (err instanceof ExecError && (err.code === 1 || err.code === 2)) {
        throw new FloeError('image_format_unsupported', `the qcow2 image is damaged: ${err.stderr.trim().split('\n')[0] || `qemu-img check exited with code ${err.code}`}`);
      }
      throw toFloeError(err, this.qemuImg, 'check');
    }
  }

  private async qemu(args: string[], timeoutMs: number): Promise<{ stdout: string }> {
    try {
      return await run(this.qemuImg, args, { timeoutMs });
    } catch (err) {
      throw toFloeError(err, this.qemuImg, args[0] ?? '');
    }
  }

  // Create the directories, and clear uploads a crash left behind (once per process).
  private prepare(): Promise<void> {
    this.prepared ??= (async () => {
      await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
      for (const name of await readdir(this.tmpDir)) await rm(join(this.tmpDir, name), { force: true, recursive: true });
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

// A failed qemu-img run as the error the API reports (the server log keeps the rest).
function toFloeError(err: unknown, qemuImg: string, sub: string): unknown {
  if (!(err instanceof ExecError)) return err;
  if (err.code === null && /ENOENT/.test(err.message)) {
    return new FloeError('internal_error', `${qemuImg} is not installed on the control plane (Debian package qemu-utils)`);
  }
  return new FloeError('internal_error', `qemu-img ${sub} failed: ${err.stderr.trim().split('\n')[0] || err.message}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

// Stream `body` into a new file, hashing and counting; more than `maxBytes` fails with payload_too_large.
// The body is piped, not owned: on failure it is left paused (the caller answers, then closes the
// connection) instead of destroyed, which would also destroy the socket the answer must go out on.
async function receive(body: Readable, file: string, maxBytes: number): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > maxBytes) {
        done(new FloeError('payload_too_large', `the image file is larger than ${maxBytes} bytes`, { limit_bytes: maxBytes }));
        return;
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const written = pipeline(meter, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  // The client went away: a failed request, not a server fault.
  const interrupted = () => new FloeError('validation_failed', 'the upload was interrupted before the file was complete', { field: 'body' });
  const onError = () => meter.destroy(interrupted());
  const onClose = () => {
    if (!body.readableEnded) meter.destroy(interrupted());
  };
  body.on('error', onError);
  body.on('close', onClose);
  body.pipe(meter);
  try {
    await written;
  } finally {
    body.off('error', onError);
    body.off('close', onClose);
    body.unpipe(meter);
  }
  return { sha256: hash.digest('hex'), size };
}
