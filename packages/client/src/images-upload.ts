import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline, Readable, Transform } from 'node:stream';
import type { Image } from '@floe/api';
import { defined, scoped, type CallOptions } from './calls.js';
import { ImageRecordsApi } from './images.js';

/**
 * Options of {@link ImagesApi.upload}.
 *
 * @example
 * const options: ImageUploadOptions = { project: 'shop', sha256: 'e3b0c4...', onProgress: (sent, total) => console.log(sent, total) };
 */
export interface ImageUploadOptions extends CallOptions {
  /** Expected sha256 (hex) of the bytes sent; the server refuses the file (`image_checksum_mismatch`) when it differs. */
  sha256?: string;
  /** Size of a stream source, when known (sent as Content-Length); files and buffers know theirs. */
  size?: number;
  /** Called as bytes go out: bytes sent so far, and the total or null when unknown (a pipe). */
  onProgress?: (sentBytes: number, totalBytes: number | null) => void;
  /** Time limit in milliseconds until the server answers; none by default (large files take long to check and convert). */
  timeoutMs?: number;
}

/**
 * Images: `client.images`.
 *
 * @example
 * await client.images.create({ name: 'debian-12', format: 'qcow2', os: 'debian', min_disk_gib: 2 });
 * await client.images.upload('debian-12', './debian-12.qcow2');
 */
export class ImagesApi extends ImageRecordsApi {
  /**
   * Streams the file of an image that has none yet (a path, a stream such as
   * stdin, or a buffer; raw or qcow2). The server checks it, stores it as
   * qcow2 and answers with the image, now `ready`.
   */
  async upload(id: string, source: string | Readable | Buffer, options: ImageUploadOptions = {}): Promise<Image> {
    let body: Readable | Buffer;
    let total: number | null;
    if (typeof source === 'string') {
      total = (await stat(source)).size;
      body = createReadStream(source);
    } else if (Buffer.isBuffer(source)) {
      total = source.length;
      body = source;
    } else {
      total = options.size ?? null;
      body = source;
    }
    const onProgress = options.onProgress;
    if (onProgress !== undefined) {
      let sent = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          sent += chunk.length;
          onProgress(sent, total);
          done(null, chunk);
        },
      });
      const input = Buffer.isBuffer(body) ? Readable.from([body]) : body;
      // Errors of the source reach the request through the counter, which pipeline destroys with it.
      body = pipeline(input, counter, () => undefined);
    }
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (total !== null) headers['content-length'] = String(total);
    if (options.sha256 !== undefined) headers['x-floe-sha256'] = options.sha256;
    return this.t.request<Image>(
      'PUT',
      this.path(id, '/file'),
      defined({
        query: scoped(options),
        rawBody: body,
        headers,
        timeoutMs: options.timeoutMs ?? 0,
        signal: options.signal,
      }),
    );
  }
}
