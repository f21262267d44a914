import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { ImageImport } from '@floe/api';
import { CliError, UsageError } from '../errors.js';
import { renderDetails } from '../output.js';
import { followOperation } from '../progress.js';
import { runtimeOf } from '../runtime.js';

/** Flags of `floe image import URL`. */
export interface UrlImportFlags {
  name: string;
  sha256?: string;
  checksum?: string;
  checksumUrl?: string;
  caFile?: string;
  wait: boolean;
  os?: string;
  minDiskGib?: number;
  public?: boolean;
}

/** True when the argument of `floe image import` is a URL (`scheme://...`) rather than a file. */
export function isUrlSource(source: string): boolean {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(source);
}

/**
 * The body of `POST /v1/images/import` from the command line: `--sha256 HEX`
 * is `--checksum sha256:HEX`; a checksum and a checksum URL exclude each other.
 */
export function urlImportBody(
  url: string,
  opts: UrlImportFlags,
  project: string | undefined,
  caPem: string | undefined,
): ImageImport {
  if (opts.sha256 !== undefined && opts.checksum !== undefined)
    throw new UsageError('give --sha256 or --checksum, not both');
  const checksum = opts.checksum ?? (opts.sha256 === undefined ? undefined : `sha256:${opts.sha256}`);
  if (checksum !== undefined && !/^(sha256:[0-9a-fA-F]{64}|sha512:[0-9a-fA-F]{128})$/.test(checksum)) {
    throw new UsageError('--checksum must be sha256:HEX (64 hex digits) or sha512:HEX (128 hex digits)');
  }
  if (checksum !== undefined && opts.checksumUrl !== undefined)
    throw new UsageError('give --checksum (or --sha256) or --checksum-url, not both');
  return {
    name: opts.name,
    ...(project === undefined ? {} : { project }),
    ...(opts.os === undefined ? {} : { os: opts.os }),
    ...(opts.minDiskGib === undefined ? {} : { min_disk_gib: opts.minDiskGib }),
    ...(opts.public === true ? { public: true } : {}),
    source: {
      url,
      ...(checksum === undefined ? {} : { checksum: checksum.toLowerCase() }),
      ...(opts.checksumUrl === undefined ? {} : { checksum_url: opts.checksumUrl }),
      ...(caPem === undefined ? {} : { ca_pem: caPem }),
    },
  };
}

/**
 * `floe image import URL --name NAME`: the control plane downloads the file.
 * Follows the import's operation with its progress unless --no-wait; Ctrl-C
 * cancels the import (the control plane stops the download and keeps nothing).
 */
export async function importFromUrl(url: string, opts: UrlImportFlags, command: Command): Promise<void> {
  const rt = runtimeOf(command);
  if (opts.checksum === undefined && opts.sha256 === undefined && opts.checksumUrl === undefined) {
    rt.warn('no --checksum or --checksum-url: the downloaded file is not verified');
  }
  let caPem: string | undefined;
  if (opts.caFile !== undefined) {
    try {
      caPem = await readFile(opts.caFile, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read ${opts.caFile}: ${(err as Error).message}`, 'file_unreadable');
    }
  }
  const project = rt.project(command);
  const body = urlImportBody(url, opts, project, caPem);
  const client = rt.client(command);
  const { image, operation } = await client.images.import(body);
  if (!opts.wait) {
    rt.print(
      command,
      { image, operation },
      () =>
        `image ${image.name} importing (${image.id}): operation ${operation.id} (follow it with "floe operation wait ${operation.id}")\n`,
    );
    return;
  }
  const cancel = () =>
    void client.operations
      .cancel(operation.id)
      .catch((e: unknown) => rt.warn(`could not cancel ${operation.id}: ${(e as Error).message}`));
  process.once('SIGINT', cancel);
  rt.signal?.addEventListener('abort', cancel);
  const json = rt.globals(command).output === 'json';
  try {
    if (json) {
      // As for uploads, -o json prints the image and nothing else.
      const final = await client.operations.wait(operation, { pollSeconds: 30 });
      if (final.status !== 'succeeded') {
        throw new CliError(
          `${final.kind} ${final.status}: ${final.error?.message ?? final.message}`,
          final.error?.code ?? `operation_${final.status}`,
        );
      }
    } else {
      await followOperation(rt, command, operation);
    }
  } finally {
    process.off('SIGINT', cancel);
    rt.signal?.removeEventListener('abort', cancel);
  }
  const done = await client.images.get(image.id, { ...(project === undefined ? {} : { project }) });
  rt.print(command, done, () => renderDetails(done));
}
