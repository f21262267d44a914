import type { Image, ImageCreate, ImageImport, ImageImported, ImagePatch } from '@floe/api';
import {
  defined,
  ListApi,
  scoped,
  waitTimeout,
  type CallOptions,
  type MergePatch,
  type OperationCallOptions,
  type PostOptions,
  type UpdateOptions,
} from './calls.js';

/**
 * Images without file uploads (which need Node's streams; see {@link ImagesApi}): what browsers use.
 *
 * @example
 * await new ImageRecordsApi(transport, '/v1/images').import({ name: 'debian-12', url });
 */
export class ImageRecordsApi extends ListApi<Image> {
  /** Fetches one image by id or name. */
  get(id: string, options: CallOptions = {}): Promise<Image> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Registers an image. */
  create(body: ImageCreate, options: PostOptions = {}): Promise<Image> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes labels, metadata, `spec.os` or `spec.public`. */
  update(id: string, patch: MergePatch<ImagePatch>, options: UpdateOptions = {}): Promise<Image> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ query: scoped(options), body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Deletes an image. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /**
   * Creates an image whose file the control plane downloads from an http(s)
   * URL, checked against `source.checksum` or `source.checksum_url`. Answers
   * at once with the image (`importing`) and the `image.import` operation;
   * follow it with `client.operations.wait` (its `transfer` has the bytes).
   * A failed import keeps nothing: `operation.error.code` says why.
   *
   * @example
   * const { operation } = await client.images.import({ name: 'debian-12', source: { url, checksum_url: `${dir}/SHA512SUMS` } });
   * const done = await client.operations.wait(operation, { onUpdate: (op) => console.log(op.progress, op.transfer) });
   */
  import(body: ImageImport, options: Omit<OperationCallOptions, 'project'> = {}): Promise<ImageImported> {
    return this.t.request(
      'POST',
      `${this.base}/import`,
      defined({
        body,
        query: { wait: options.wait },
        idempotencyKey: options.idempotencyKey,
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }
}
