import { createHash, type Hash } from 'node:crypto';
import dns from 'node:dns';
import { createWriteStream, readFileSync } from 'node:fs';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tls from 'node:tls';
import { FloeError } from '@floe/api';
import type { ChecksumAlgo } from './checksums.js';

/** Redirects followed before a download fails with image_download_too_many_redirects. */
const MAX_REDIRECTS = 5;
/** Largest checksum file read. */
const MAX_CHECKSUM_FILE_BYTES = 1024 * 1024;
/** Where Debian keeps the system's CA certificates (ca-certificates). */
const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/** Limits and hooks of one download. */
export interface DownloadOptions {
  maxBytes: number;
  /** Until the response headers arrive (connection and TLS included). */
  connectTimeoutMs: number;
  /** Longest silence while the body flows. */
  idleTimeoutMs: number;
  /** The whole download, redirects included. */
  totalTimeoutMs: number;
  maxRedirects?: number;
  /** PEM certificates trusted besides the system's CAs. */
  extraCaPem?: string;
  /** Connect to loopback, private and link-local addresses too (admins; FLOE_IMAGE_IMPORT_PRIVATE=allow). */
  allowPrivate?: boolean;
  signal?: AbortSignal;
  /** Called as bytes arrive, with the total when the server sent Content-Length. */
  onProgress?: (doneBytes: number, totalBytes: number | null) => void;
}

/** What a finished download gives. */
export interface Downloaded {
  size: number;
  digests: Record<ChecksumAlgo, string>;
  /** Where the file came from after redirects. */
  finalUrl: URL;
}

/**
 * Check that `raw` is an absolute http(s) URL without credentials: the only
 * kind the control plane fetches (file:, ftp:, data: and others are refused).
 */
export function checkImageUrl(raw: string, field = 'source.url'): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FloeError('image_url_unsupported', `${field} is not an absolute URL: "${raw.slice(0, 200)}"`, { field });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new FloeError(
      'image_url_unsupported',
      `${field} uses ${url.protocol.replace(/:$/, '')}:; only http:// and https:// URLs are fetched`,
      { field, scheme: url.protocol.replace(/:$/, '') },
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new FloeError(
      'image_url_unsupported',
      `${field} carries a user name or password; credentials in URLs are not taken`,
      { field },
    );
  }
  return url;
}

// Addresses a download must not reach unless allowed: the control plane's own host and networks
// (loopback, RFC 1918, shared, link-local with cloud metadata, ULA) are not the internet.
const PRIVATE = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
] as const)
  PRIVATE.addSubnet(net, bits, 'ipv6');

/** True for loopback, private, shared and link-local addresses (IPv4-mapped IPv6 included). */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return PRIVATE.check(mapped[1]!, 'ipv4');
  const family = isIP(address);
  if (family === 0) return false;
  return PRIVATE.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

function forbidden(url: URL, address: string): FloeError {
  return new FloeError(
    'image_url_forbidden',
    `${shownUrl(url)} leads to ${address}, a loopback, private or link-local address; only admins may import from there`,
    { url: shownUrl(url), address },
  );
}

/** Refuse `url` when its host is a private IP literal and those are not allowed (names are checked as they resolve). */
export function checkUrlAddress(url: URL, allowPrivate: boolean): void {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!allowPrivate && isIP(host) !== 0 && isPrivateAddress(host)) throw forbidden(url, host);
}

// dns.lookup that refuses private answers: checked on the addresses really connected to (no rebinding).
function guardedLookup(url: URL): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const bad = addresses.find((a) => isPrivateAddress(a.address));
      if (bad) return callback(forbidden(url, bad.address), '', 0);
      if (options.all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
      callback(null, first.address, first.family);
    });
  };
}

/** A URL as errors and progress show it: no query string (signed URLs carry secrets there). */
export function shownUrl(url: URL): string {
  return `${url.origin}${url.pathname}${url.search === '' ? '' : '?…'}`;
}

let systemCas: string[] | null = null;

// Node's bundled roots plus the system bundle (which may hold an operator's own CA); read once.
function trustedCas(extraPem: string | undefined): string[] {
  if (systemCas === null) {
    let bundle: string[] = [];
    try {
      bundle = [readFileSync(SYSTEM_CA_BUNDLE, 'utf8')];
    } catch {
      // No system bundle: Node's own roots only.
    }
    systemCas = [...tls.rootCertificates, ...bundle];
  }
  return extraPem === undefined ? systemCas : [...systemCas, extraPem];
}

/** Connection failures (refused, no such host, TLS) as the error the operation reports. */
function connectError(err: unknown, url: URL): FloeError {
  if (err instanceof FloeError) return err;
  const e = err as NodeJS.ErrnoException;
  const reason = e.code ?? 'error';
  return new FloeError('image_download_failed', `cannot fetch ${shownUrl(url)}: ${e.message}`, {
    url: shownUrl(url),
    reason,
  });
}

/**
 * GET `start`, following redirects, and resolve with the response of the last
 * hop (status 2xx, body unread). Fails with image_download_failed (HTTP error,
 * connection or TLS), image_download_too_many_redirects, image_url_unsupported
 * (a redirect to another scheme) or image_download_timeout (no headers within
 * connectTimeoutMs). `stop` aborts everything.
 */
async function open(start: URL, opts: DownloadOptions, stop: AbortSignal): Promise<{ res: IncomingMessage; url: URL }> {
  const limit = opts.maxRedirects ?? MAX_REDIRECTS;
  let url = start;
  for (let hop = 0; ; hop++) {
    checkUrlAddress(url, opts.allowPrivate === true);
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const client = url.protocol === 'https:' ? https : http;
      const req = client.request(url, {
        method: 'GET',
        headers: { 'user-agent': 'floe-image-import', accept: '*/*', 'accept-encoding': 'identity' },
        agent: false,
        signal: stop,
        ...(opts.allowPrivate === true ? {} : { lookup: guardedLookup(url) }),
        ...(url.protocol === 'https:' ? { ca: trustedCas(opts.extraCaPem) } : {}),
      });
      const timer = setTimeout(() => {
        req.destroy(
          new FloeError(
            'image_download_timeout',
            `${shownUrl(url)} did not answer within ${opts.connectTimeoutMs / 1000} s`,
            { url: shownUrl(url), timeout: 'connect', seconds: opts.connectTimeoutMs / 1000 },
          ),
        );
      }, opts.connectTimeoutMs);
      req.once('response', (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      req.once('error', (err) => {
        clearTimeout(timer);
        reject(stop.aborted && stop.reason instanceof Error ? stop.reason : connectError(err, url));
      });
      req.end();
    });
    const status = res.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status) && res.headers.location !== undefined) {
      res.destroy();
      if (hop >= limit) {
        throw new FloeError(
          'image_download_too_many_redirects',
          `${shownUrl(start)} redirected more than ${limit} times`,
          { url: shownUrl(start), limit },
        );
      }
      let next: URL;
      try {
        next = new URL(res.headers.location, url);
      } catch {
        throw new FloeError('image_download_failed', `${shownUrl(url)} redirected to an invalid URL`, {
          url: shownUrl(url),
          reason: 'bad_redirect',
        });
      }
      next = checkImageUrl(next.href, 'redirect');
      // What https promised (this is the server named) a plain http hop cannot keep.
      if (url.protocol === 'https:' && next.protocol === 'http:') {
        throw new FloeError(
          'image_url_unsupported',
          `${shownUrl(url)} redirected from https to plain http (${shownUrl(next)}); use the http URL directly if that is meant`,
          {
            field: 'redirect',
            url: shownUrl(next),
            reason: 'https_to_http',
          },
        );
      }
      url = next;
      continue;
    }
    if (status < 200 || status > 299) {
      res.destroy();
      throw new FloeError(
        'image_download_failed',
        `${shownUrl(url)} answered ${status} ${res.statusMessage ?? ''}`.trim(),
        { url: shownUrl(url), http_status: status },
      );
    }
    return { res, url };
  }
}

/** True when the first bytes of a body are a web page, not a disk image. */
export function looksLikeHtml(head: Buffer): boolean {
  const text = head
    .subarray(0, 512)
    .toString('latin1')
    .replace(/^\uFEFF|^\xEF\xBB\xBF/, '')
    .trimStart()
    .toLowerCase();
  return (
    text.startsWith('<!doctype html') ||
    text.startsWith('<html') ||
    text.startsWith('<?xml') ||
    text.startsWith('<head') ||
    text.startsWith('<body')
  );
}

/**
 * Run `body` on the response of `url` with every limit in force: the total
 * timeout, the idle timeout, the size limit, Content-Length checked at the end.
 */
async function withResponse<T>(
  raw: URL,
  opts: DownloadOptions,
  body: (res: IncomingMessage, url: URL, meter: Transform, total: number | null) => Promise<T>,
): Promise<T> {
  const stop = new AbortController();
  const abort = (reason: unknown) => {
    if (!stop.signal.aborted) stop.abort(reason);
  };
  const onAbort = () => abort(opts.signal?.reason ?? new Error('aborted'));
  if (opts.signal?.aborted) throw opts.signal.reason;
  opts.signal?.addEventListener('abort', onAbort);
  const totalTimer = setTimeout(() => {
    abort(
      new FloeError(
        'image_download_timeout',
        `the download of ${shownUrl(raw)} took longer than ${opts.totalTimeoutMs / 1000} s`,
        { url: shownUrl(raw), timeout: 'total', seconds: opts.totalTimeoutMs / 1000 },
      ),
    );
  }, opts.totalTimeoutMs);
  let idleTimer: NodeJS.Timeout | undefined;
  try {
    const { res, url } = await open(raw, opts, stop.signal);
    const length = res.headers['content-length'];
    const total = length !== undefined && /^\d+$/.test(length) ? Number(length) : null;
    if (total !== null && total > opts.maxBytes) {
      res.destroy();
      throw new FloeError(
        'image_download_too_large',
        `${shownUrl(url)} is ${total} bytes; this control plane takes at most ${opts.maxBytes}`,
        { url: shownUrl(url), size_bytes: total, limit_bytes: opts.maxBytes },
      );
    }
    const idle = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        abort(
          new FloeError('image_download_timeout', `${shownUrl(url)} sent nothing for ${opts.idleTimeoutMs / 1000} s`, {
            url: shownUrl(url),
            timeout: 'idle',
            seconds: opts.idleTimeoutMs / 1000,
          }),
        );
      }, opts.idleTimeoutMs);
    };
    idle();
    let done = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, next) {
        idle();
        done += chunk.length;
        if (done > opts.maxBytes) {
          next(
            new FloeError(
              'image_download_too_large',
              `${shownUrl(url)} sent more than ${opts.maxBytes} bytes, the most this control plane takes`,
              { url: shownUrl(url), limit_bytes: opts.maxBytes },
            ),
          );
          return;
        }
        opts.onProgress?.(done, total);
        next(null, chunk);
      },
    });
    stop.signal.addEventListener('abort', () => res.destroy(stop.signal.reason as Error));
    let result: T;
    try {
      result = await body(res, url, meter, total);
    } catch (err) {
      if (stop.signal.aborted) throw stop.signal.reason;
      if (err instanceof FloeError) throw err;
      // Writing the file failed (an fs error names its path): a fault of this server, not of the connection.
      if (typeof (err as NodeJS.ErrnoException | null)?.path === 'string') throw err;
      // The connection broke off mid-body (a reset, or a close before the last chunk).
      throw new FloeError(
        'image_download_incomplete',
        `the connection to ${shownUrl(url)} closed after ${done}${total === null ? '' : ` of ${total}`} bytes`,
        { url: shownUrl(url), received_bytes: done, ...(total === null ? {} : { expected_bytes: total }) },
      );
    }
    if (stop.signal.aborted) throw stop.signal.reason;
    if (total !== null && done !== total) {
      throw new FloeError('image_download_incomplete', `${shownUrl(url)} sent ${done} of ${total} bytes`, {
        url: shownUrl(url),
        received_bytes: done,
        expected_bytes: total,
      });
    }
    return result;
  } finally {
    clearTimeout(totalTimer);
    clearTimeout(idleTimer);
    opts.signal?.removeEventListener('abort', onAbort);
    abort(new Error('download finished'));
  }
}

/**
 * Download `url` into a new file `file` (mode 0600), hashing with sha256 and
 * sha512 as it arrives. An HTML answer fails with image_download_not_an_image
 * before much is written. The caller removes `file` on failure.
 */
export async function downloadFile(url: URL, file: string, opts: DownloadOptions): Promise<Downloaded> {
  return withResponse(url, opts, async (res, finalUrl, meter) => {
    const type = String(res.headers['content-type'] ?? '').toLowerCase();
    if (/^(text\/html|application\/xhtml\+xml)\b/.test(type)) {
      res.destroy();
      throw new FloeError(
        'image_download_not_an_image',
        `${shownUrl(finalUrl)} answered with a web page (${type.split(';')[0]}), not a disk image`,
        { url: shownUrl(finalUrl), content_type: type.split(';')[0] },
      );
    }
    const hashes: Record<ChecksumAlgo, Hash> = { sha256: createHash('sha256'), sha512: createHash('sha512') };
    let first = true;
    let size = 0;
    const inspect = new Transform({
      transform(chunk: Buffer, _enc, next) {
        if (first) {
          first = false;
          if (looksLikeHtml(chunk)) {
            next(
              new FloeError(
                'image_download_not_an_image',
                `${shownUrl(finalUrl)} answered with a web page, not a disk image`,
                { url: shownUrl(finalUrl), content_type: type.split(';')[0] || null },
              ),
            );
            return;
          }
        }
        size += chunk.length;
        hashes.sha256.update(chunk);
        hashes.sha512.update(chunk);
        next(null, chunk);
      },
    });
    await pipeline(res, meter, inspect, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
    return { size, digests: { sha256: hashes.sha256.digest('hex'), sha512: hashes.sha512.digest('hex') }, finalUrl };
  });
}

/** Fetch a small text file (a SHA256SUMS), at most MAX_CHECKSUM_FILE_BYTES. */
export async function fetchText(url: URL, opts: DownloadOptions): Promise<{ text: string; finalUrl: URL }> {
  const limited = { ...opts, maxBytes: Math.min(opts.maxBytes, MAX_CHECKSUM_FILE_BYTES), onProgress: undefined };
  return withResponse(url, limited, async (res, finalUrl, meter) => {
    const chunks: Buffer[] = [];
    await pipeline(res, meter, async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) chunks.push(chunk);
      yield* [];
    });
    return { text: Buffer.concat(chunks).toString('utf8'), finalUrl };
  });
}
