import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import https from 'node:https';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pino, type Logger } from 'pino';
import type { DesiredImage } from '@floe/api';
import type { AgentCredentials } from './state.js';

/** A sha256 in hex, as image files are named. */
const SHA256_PATTERN = /^[0-9a-f]{64}$/;
/** A floe resource id (`img_01J...`). */
const ID_PATTERN = /^[a-z]{2,5}_[0-9A-HJKMNP-TV-Z]{26}$/;
/** The header the control plane sends the file's sha256 in. */
const SHA256_HEADER = 'x-floe-sha256';

/** Options of the image cache. */
export interface ImageCacheOptions {
  /** Where cached files live: `<dir>/<sha256>.qcow2` (the agent uses `<dataDir>/images`). */
  dir: string;
  /** Base URL of the control plane (https). */
  server: string;
  /** The agent's client certificate and floe's CA. */
  credentials: AgentCredentials;
  logger?: Logger;
  /** A download fails when no byte arrives for this long; default 60 s. */
  idleTimeoutMs?: number;
}

/** Where the agent fetches the file of image `id` from. */
export function imageDownloadUrl(server: string, id: string): string {
  const url = new URL(server);
  if (url.protocol !== 'https:') throw new Error(`the control plane URL must use https, not ${url.protocol}`);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/agent/images/${encodeURIComponent(id)}`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

/**
 * The agent's cache of image files, by sha256. A file is fetched from the
 * control plane over HTTPS with the agent's client certificate the first
 * time an instance needs it, checked against its sha256 while it streams,
 * and moved into place atomically; the same image is fetched once however
 * many instances ask at the same time.
 */
export class ImageCache {
  private readonly log: Logger;
  private readonly tmpDir: string;
  private readonly inflight = new Map<string, Promise<string>>();
  private prepared: Promise<void> | null = null;

  constructor(private readonly opts: ImageCacheOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.tmpDir = join(opts.dir, 'tmp');
  }

  /** The cached file of a sha256 (whether or not it is there yet). */
  pathOf(sha256: string): string {
    if (!SHA256_PATTERN.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
    return join(this.opts.dir, `${sha256}.qcow2`);
  }

  /**
   * The local path of an instance's base image, fetching it first when it is
   * not cached; null when the instance has no image or the image no file.
   */
  async ensure(image: DesiredImage | null): Promise<string | null> {
    if (image === null || image.sha256 === null) return null;
    const sha256 = image.sha256;
    const path = this.pathOf(sha256);
    if (!ID_PATTERN.test(image.id)) throw new Error(`not an image id: ${JSON.stringify(image.id)}`);
    if (await this.cached(path, image.size_bytes)) return path;
    let pending = this.inflight.get(sha256);
    if (pending === undefined) {
      pending = this.fetch(image, path).finally(() => this.inflight.delete(sha256));
      this.inflight.set(sha256, pending);
    }
    return pending;
  }

  private async cached(path: string, size: number | null): Promise<boolean> {
    try {
      const st = await stat(path);
      return size === null || st.size === size;
    } catch {
      return false;
    }
  }

  private async fetch(image: DesiredImage, path: string): Promise<string> {
    const sha256 = image.sha256!;
    await this.prepare();
    const part = join(this.tmpDir, `${sha256}.${randomBytes(6).toString('hex')}.part`);
    const started = Date.now();
    this.log.info({ image: image.id, name: image.name, sha256, size_bytes: image.size_bytes }, 'fetching image');
    try {
      const size = await this.download(image, part);
      // On disk before it gets its final name: a crash must not leave a short file under a good name.
      const fh = await open(part, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(part, path);
      this.log.info({ image: image.id, sha256, size_bytes: size, ms: Date.now() - started }, 'image cached');
      return path;
    } catch (err) {
      await rm(part, { force: true });
      throw new Error(`cannot fetch image "${image.name}" (${image.id}): ${(err as Error).message}`);
    }
  }

  // Stream the file to `part`, hashing on the way; resolves with its size once the sha256 matched.
  private download(image: DesiredImage, part: string): Promise<number> {
    const { credentials } = this.opts;
    const url = imageDownloadUrl(this.opts.server, image.id);
    const idle = this.opts.idleTimeoutMs ?? 60_000;
    return new Promise<number>((resolve, reject) => {
      const req = https.get(
        url,
        {
          cert: credentials.certPem,
          key: credentials.keyPem,
          ca: [credentials.caPem],
          rejectUnauthorized: true,
          agent: false,
        },
        (res) => {
          if (res.statusCode !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => {
              if (chunks.length < 16) chunks.push(c);
            });
            res.on('error', reject);
            res.on('end', () =>
              reject(
                new Error(
                  `the control plane answered ${res.statusCode}: ${describeError(Buffer.concat(chunks).toString('utf8'))}`,
                ),
              ),
            );
            return;
          }
          const announced = res.headers[SHA256_HEADER];
          if (typeof announced === 'string' && announced !== image.sha256) {
            res.destroy();
            reject(new Error(`the control plane sends a file with sha256 ${announced}, expected ${image.sha256}`));
            return;
          }
          const hash = createHash('sha256');
          let size = 0;
          const meter = new Transform({
            transform(chunk: Buffer, _enc, done) {
              size += chunk.length;
              hash.update(chunk);
              done(null, chunk);
            },
          });
          pipeline(res, meter, createWriteStream(part, { flags: 'wx', mode: 0o600 }))
            .then(() => {
              if (!res.complete) throw new Error('the download ended early');
              const actual = hash.digest('hex');
              if (actual !== image.sha256)
                throw new Error(`the downloaded file has sha256 ${actual}, expected ${image.sha256}`);
              resolve(size);
            })
            .catch(reject);
        },
      );
      req.setTimeout(idle, () => req.destroy(new Error(`no data for ${idle} ms`)));
      req.on('error', reject);
    });
  }

  // Create the directories and clear downloads a crash left behind (once per process).
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
}

// The message of a floe error envelope, or the start of whatever else came.
function describeError(text: string): string {
  try {
    const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
    if (e?.code !== undefined) return `${e.message ?? e.code} (${e.code})`;
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 200) || 'no body';
}
