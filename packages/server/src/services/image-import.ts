import { rm } from 'node:fs/promises';
import {
  FloeError,
  formatBytes,
  type ErrorBody,
  type Image,
  type ImageImport,
  type ImageImported,
  type Operation,
} from '@floe/api';
import { forUpdate, isUniqueViolation, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { ImagesTable, OperationsTable } from '../db/schema.js';
import { runDetached } from './actor.js';
import { hidePaths } from './hide-paths.js';
import { imageFromRow } from './image-rows.js';
import { fileNameOf, findChecksum, formatChecksum, parseChecksum, type Checksum } from './checksums.js';
import { newBase } from './resource-rows.js';
import { recordHistory } from './history.js';
import { writeLabels } from './labels.js';
import type { Principal, ServiceContext } from './context.js';
import type { NewEvent } from './events.js';
import {
  checkImageUrl,
  checkUrlAddress,
  downloadFile,
  fetchText,
  shownUrl,
  type DownloadOptions,
} from './image-download.js';
import type { ImageFileService } from './image-files.js';
import { isTerminal, operationFromRow, type OperationService } from './operations.js';
import type { ProjectService } from './projects.js';
import { closeAll } from './metering.js';

/** Kind of the operations that download an image. */
const IMPORT_KIND = 'image.import';
/** How often a running import writes its progress (and so shows it is alive). */
const PROGRESS_EVERY_MS = 1000;
const HEARTBEAT_EVERY_MS = 15_000;
/** An import whose operation was not touched for this long lost its control plane. */
const STALE_AFTER_MS = 2 * 60_000;
/** Share of the progress bar the download takes; checks and conversion take the rest. */
const DOWNLOAD_SHARE = 90;

/**
 * Remove a partial download. A failure to (a broken image directory) must not replace the import's own error,
 * nor escape the job unhandled, which would leave the operation running and stop the process.
 */
function removePartial(file: string): Promise<void> {
  return rm(file, { force: true }).catch(() => undefined);
}

/** The progress message of a download: `downloading 12.0 MiB of 100.0 MiB`. */
export function downloadMessage(done: number, total: number | null): string {
  return total === null
    ? `downloading ${formatBytes(done)}`
    : `downloading ${formatBytes(done)} of ${formatBytes(total)}`;
}

/** Marks the end of an import that was cancelled (or whose image was deleted) meanwhile. */
class Cancelled extends Error {}

interface Job {
  abort: AbortController;
  done: Promise<void>;
}

/**
 * Images whose file the control plane downloads from an http(s) URL. The
 * image exists from the request on, `importing`, with an `image.import`
 * operation that shows the bytes; the file passes the same checks as an
 * upload (ImageFileService.ingest). On any failure, on cancel and on delete
 * nothing is kept: no file, no temporary file, no image record.
 */
export class ImageImportService {
  private readonly jobs = new Map<string, Job>();
  private readonly unsubscribe: () => void;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly projects: ProjectService,
    private readonly operations: OperationService,
    private readonly files: ImageFileService,
  ) {
    operations.onCancel(
      IMPORT_KIND,
      (trx, op) => this.dropImage(trx, op, 'cancel').then((e) => (e === null ? [] : [e])),
      { running: true },
    );
    // A cancel (or delete) on any control plane ends the operation; the one downloading hears it here.
    this.unsubscribe = ctx.bus.subscribe((e) => {
      if (e.kind !== 'operation') return;
      const op = e.data.operation as Operation | undefined;
      if (op !== undefined && isTerminal(op.status)) this.jobs.get(op.id)?.abort.abort(new Cancelled(op.message));
    });
  }

  /** Sweep imports left by a control plane that stopped, now and every minute. */
  start(): void {
    const pass = () => void this.sweep().catch(() => undefined);
    this.sweeper = setInterval(pass, 60_000);
    this.sweeper.unref();
    pass();
  }

  /** Abort running downloads (their images are removed) and stop sweeping. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.unsubscribe();
    for (const job of this.jobs.values())
      job.abort.abort(new FloeError('internal_error', 'the control plane stopped during the import'));
    await Promise.all([...this.jobs.values()].map((j) => j.done));
  }

  /** Downloads running in this process. */
  get running(): number {
    return this.jobs.size;
  }

  /**
   * Create the image (`importing`) and the operation, and start the download.
   * URL, scheme and checksum are checked before anything is recorded.
   */
  async importFromUrl(principal: Principal, body: ImageImport): Promise<ImageImported> {
    const project = body.project ?? 'default';
    // A project the caller cannot use is not found, before anything is said about the request's URLs.
    await this.projects.require(principal, project);
    const url = checkImageUrl(body.source.url);
    if (body.source.checksum !== undefined && body.source.checksum_url !== undefined) {
      throw new FloeError('validation_failed', 'give source.checksum or source.checksum_url, not both', {
        field: 'source.checksum',
      });
    }
    const checksum = body.source.checksum === undefined ? null : parseChecksum(body.source.checksum);
    const checksumUrl =
      body.source.checksum_url === undefined ? null : checkImageUrl(body.source.checksum_url, 'source.checksum_url');
    const allowPrivate = principal.admin || this.ctx.config.imageImportPrivate;
    for (const u of [url, checksumUrl]) if (u !== null) checkUrlAddress(u, allowPrivate);
    if (body.public && !principal.admin)
      throw new FloeError('forbidden', 'only an admin token may publish images to every project');
    const row: ImagesTable = {
      ...newBase('image', body.name, body.labels, body.metadata),
      project,
      spec: toJson({
        format: 'qcow2',
        os: body.os ?? '',
        min_disk_gib: body.min_disk_gib ?? 1,
        public: body.public ?? false,
      }),
      status: toJson({ state: 'importing', size_bytes: null, sha256: null, virtual_size_bytes: null }),
      public: body.public ? 1 : 0,
    };
    const image = imageFromRow(row);
    let created: { operation: Operation; events: NewEvent[] };
    try {
      created = await transaction(this.ctx.store, async (trx) => {
        await this.projects.require(principal, project, trx);
        await trx.insertInto('images').values(row).execute();
        await writeLabels(trx, row.id, body.labels ?? {});
        await recordHistory(trx, {
          kind: 'image',
          resource_id: row.id,
          project,
          revision: 1,
          action: 'create',
          actor: principal.actor,
          before: null,
          after: image,
        });
        return this.operations.create(trx, {
          project,
          kind: IMPORT_KIND,
          resources: [{ kind: 'image', id: row.id, name: row.name }],
          created_by: principal.actor,
          message: `importing from ${shownUrl(url)}`,
          target_id: row.id,
          target_generation: 1,
          target_state: 'ready',
          new_target: true,
        });
      });
    } catch (err) {
      if (isUniqueViolation(err))
        throw new FloeError('name_conflict', `image "${body.name}" already exists in project "${project}"`, {
          field: 'name',
          kind: 'image',
          name: body.name,
        });
      throw err;
    }
    await this.ctx.bus.publish(
      {
        type: 'resource.created',
        project,
        kind: 'image',
        resource_id: row.id,
        data: { name: row.name, state: 'importing' },
      },
      ...created.events,
    );
    const abort = new AbortController();
    const job: Job = { abort, done: Promise.resolve() };
    this.jobs.set(created.operation.id, job);
    // The download outlives the request: what it publishes names nobody (its operation names the requestor).
    job.done = runDetached(() =>
      this.run(principal, image, created.operation.id, url, checksum, checksumUrl, body.source.ca_pem, abort.signal),
    )
      // run() ends the operation itself, also on failure; nothing it could still throw may go unhandled.
      .catch(() => undefined)
      .finally(() => this.jobs.delete(created.operation.id));
    return { image, operation: created.operation };
  }

  private downloadOptions(principal: Principal, signal: AbortSignal, caPem: string | undefined): DownloadOptions {
    const c = this.ctx.config;
    return {
      allowPrivate: principal.admin || c.imageImportPrivate,
      maxBytes: c.imageMaxUploadBytes,
      connectTimeoutMs: c.imageImportConnectTimeoutMs,
      idleTimeoutMs: c.imageImportIdleTimeoutMs,
      totalTimeoutMs: c.imageImportTimeoutMs,
      signal,
      ...(caPem === undefined ? {} : { extraCaPem: caPem }),
    };
  }

  // The import itself: checksum file, download, verification, the upload's checks, the record.
  private async run(
    principal: Principal,
    image: Image,
    opId: string,
    url: URL,
    given: Checksum | null,
    checksumUrl: URL | null,
    caPem: string | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    let file: string | null = null;
    let last = {
      progress: 0,
      message: `importing from ${shownUrl(url)}`,
      transfer: { done_bytes: 0, total_bytes: null as number | null },
    };
    let writing: Promise<unknown> = Promise.resolve();
    let lastWrite = 0;
    const abort = (reason: unknown) => {
      const ac = this.jobs.get(opId)?.abort;
      if (ac !== undefined && !ac.signal.aborted) ac.abort(reason);
    };
    const report = (next: typeof last, force = false) => {
      last = next;
      if (!force && Date.now() - lastWrite < PROGRESS_EVERY_MS) return;
      lastWrite = Date.now();
      writing = writing
        .then(() => this.operations.progress(opId, last))
        .then(
          (alive) => {
            if (!alive) abort(new Cancelled('the operation ended'));
          },
          () => undefined,
        );
    };
    const heartbeat = setInterval(() => report(last, true), HEARTBEAT_EVERY_MS);
    try {
      report(last, true);
      let checksum = given;
      const opts = this.downloadOptions(principal, signal, caPem);
      if (checksumUrl !== null) {
        report({ ...last, message: `fetching ${shownUrl(checksumUrl)}` }, true);
        const sums = await fetchText(checksumUrl, opts);
        checksum = findChecksum(sums.text, fileNameOf(url));
        if (checksum === null) {
          throw new FloeError(
            'image_checksum_not_found',
            `${shownUrl(checksumUrl)} has no sha256 or sha512 line for "${fileNameOf(url)}"`,
            { checksum_url: shownUrl(checksumUrl), file: fileNameOf(url) },
          );
        }
      }
      file = await this.files.tempPath('download');
      const got = await downloadFile(url, file, {
        ...opts,
        onProgress: (done, total) =>
          report({
            progress: total === null || total === 0 ? 0 : Math.floor((done / total) * DOWNLOAD_SHARE),
            message: downloadMessage(done, total),
            transfer: { done_bytes: done, total_bytes: total },
          }),
      });
      const transfer = { done_bytes: got.size, total_bytes: last.transfer.total_bytes ?? got.size };
      if (checksum !== null && got.digests[checksum.algo] !== checksum.hex) {
        throw new FloeError(
          'image_checksum_mismatch',
          `the file at ${shownUrl(url)} has ${checksum.algo} ${got.digests[checksum.algo]}, expected ${checksum.hex}`,
          {
            algorithm: checksum.algo,
            expected: checksum.hex,
            actual: got.digests[checksum.algo],
          },
        );
      }
      report(
        {
          progress: DOWNLOAD_SHARE,
          message: `downloaded ${formatBytes(got.size)}${checksum === null ? '' : `, ${checksum.algo} verified`}; checking the image`,
          transfer,
        },
        true,
      );
      await writing;
      if (signal.aborted) throw signal.reason;
      const verified = checksum === null ? 'no checksum given' : `${formatChecksum(checksum).slice(0, 19)}… verified`;
      await this.files.ingest(principal, image.id, file, {
        sha256: got.digests.sha256,
        action: 'import',
        lock: async (trx) => {
          const op = await forUpdate(
            trx.selectFrom('operations').select('status').where('id', '=', opId),
          ).executeTakeFirst();
          if (op === undefined || isTerminal(op.status)) throw new Cancelled('the operation ended');
        },
        within: (trx) =>
          this.operations.advance(trx, image.id, (row) =>
            row.id === opId
              ? {
                  status: 'succeeded',
                  progress: 100,
                  message: `imported ${formatBytes(got.size)} (${verified})`,
                  error: null,
                }
              : null,
          ),
      });
    } catch (err) {
      clearInterval(heartbeat);
      await writing;
      // Gone before the operation says it ended: whoever sees it failed sees nothing left.
      if (file !== null) await removePartial(file);
      if (!(err instanceof Cancelled) && !(signal.reason instanceof Cancelled)) {
        const reason: unknown = signal.aborted ? signal.reason : err;
        await this.fail(opId, reason).catch(() => undefined);
      }
    } finally {
      clearInterval(heartbeat);
      if (file !== null) await removePartial(file);
    }
  }

  /** End an import: the operation failed with `err`, its image removed. */
  private async fail(opId: string, err: unknown): Promise<void> {
    const error: ErrorBody =
      err instanceof FloeError
        ? err.toBody()
        : {
            code: 'internal_error',
            message: `the import failed: ${hidePaths((err as Error)?.message ?? String(err))}`,
          };
    const events = await transaction(this.ctx.store, async (trx) => {
      const row = await forUpdate(trx.selectFrom('operations').selectAll().where('id', '=', opId)).executeTakeFirst();
      if (!row || isTerminal(row.status)) return [];
      const now = nowIso();
      const patch = {
        status: 'failed',
        message: error.message,
        error: toJson(error),
        updated_at: now,
        finished_at: now,
      };
      await trx.updateTable('operations').set(patch).where('id', '=', opId).execute();
      const dropped = await this.dropImage(trx, row, 'import failed');
      return [...(dropped === null ? [] : [dropped]), this.operations.event(operationFromRow({ ...row, ...patch }))];
    });
    await this.ctx.bus.publish(...events);
  }

  // Remove the image an import was filling, while it is still importing (inside the caller's transaction).
  private async dropImage(trx: Db, op: OperationsTable, why: string): Promise<NewEvent | null> {
    if (op.target_id === null) return null;
    const row = await forUpdate(trx.selectFrom('images').selectAll().where('id', '=', op.target_id)).executeTakeFirst();
    if (!row) return null;
    const img = imageFromRow(row);
    if (img.status.state !== 'importing') return null;
    await trx.deleteFrom('images').where('id', '=', img.id).execute();
    await trx.deleteFrom('resource_labels').where('resource_id', '=', img.id).execute();
    await closeAll(trx, [img.id], nowIso());
    await recordHistory(trx, {
      kind: 'image',
      resource_id: img.id,
      project: img.project,
      revision: img.revision + 1,
      action: 'delete',
      actor: 'system',
      before: img,
      after: null,
    });
    return {
      type: 'resource.deleted',
      project: img.project,
      kind: 'image',
      resource_id: img.id,
      data: { name: img.name, reason: why },
    };
  }

  /**
   * Fail imports no control plane works on any more: with SQLite (one control plane) every one
   * this process does not run; with PostgreSQL those whose operation went untouched too long.
   */
  async sweep(now = Date.now()): Promise<number> {
    const rows = await this.ctx.store.db
      .selectFrom('operations')
      .select(['id', 'updated_at'])
      .where('kind', '=', IMPORT_KIND)
      .where('status', 'in', ['pending', 'running'])
      .execute();
    let swept = 0;
    for (const r of rows) {
      if (this.jobs.has(r.id)) continue;
      if (this.ctx.store.dialect === 'postgres' && r.updated_at > new Date(now - STALE_AFTER_MS).toISOString())
        continue;
      await this.fail(
        r.id,
        new FloeError(
          'internal_error',
          'the control plane that ran this import stopped before it finished; import again',
        ),
      );
      swept++;
    }
    return swept;
  }
}
