import { stat } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import cliProgress from 'cli-progress';
import type { Image } from '@floe/api';
import { isFloeApiError, type FloeClient } from '@floe/client';
import { CliError, UsageError } from '../errors.js';
import { bytes, renderDetails } from '../output.js';
import { checkName, intArg } from '../parse.js';
import { progressMode, type ProgressMode } from '../progress.js';
import { runtimeOf, type CliRuntime } from '../runtime.js';
import { importFromUrl, isUrlSource, type UrlImportFlags } from './image-import-url.js';
import { examples } from './shared.js';

/** Flags of `floe image import`. */
interface ImportFlags {
  name: string;
  sha256?: string;
  os?: string;
  minDiskGib?: number;
  public?: boolean;
}

/** Plain progress lines: at most one a second, plus the last. */
const LINE_INTERVAL_MS = 1000;

/** One plain progress line: `upload 12.0 MiB / 100.0 MiB (12%)`, or without a total for a pipe. */
export function uploadLine(sent: number, total: number | null): string {
  if (total === null || total === 0) return `upload ${bytes(sent)}`;
  return `upload ${bytes(sent)} / ${bytes(total)} (${Math.floor((sent / total) * 100)}%)`;
}

/** Shows upload progress the way `--wait` shows operations: a bar, plain lines, or nothing. */
function uploadProgress(
  rt: CliRuntime,
  mode: ProgressMode,
  total: number | null,
): { update: (sent: number, total: number | null) => void; stop: () => void } {
  if (mode === 'silent') return { update: () => undefined, stop: () => undefined };
  if (mode === 'lines') {
    let last = 0;
    let pending: [number, number | null] | null = null;
    return {
      update: (sent, t) => {
        pending = [sent, t];
        if (Date.now() - last < LINE_INTERVAL_MS) return;
        last = Date.now();
        pending = null;
        rt.out.write(`${uploadLine(sent, t)}\n`);
      },
      stop: () => {
        if (pending !== null) rt.out.write(`${uploadLine(...pending)}\n`);
      },
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream: rt.out as unknown as NodeJS.WritableStream,
      format: total === null ? 'upload {sent}' : 'upload [{bar}] {percentage}% {sent} / {size}',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total ?? 1, 0, { sent: bytes(0), size: bytes(total) });
  return {
    update: (sent) => bar.update(total === null ? 0 : sent, { sent: bytes(sent) }),
    stop: () => bar.stop(),
  };
}

/** The pending record of that name in the project, or a new one; `created` says which. */
async function recordFor(
  rt: CliRuntime,
  client: FloeClient,
  project: string | undefined,
  opts: ImportFlags,
): Promise<{ image: Image; created: boolean }> {
  try {
    const existing = await client.images.get(opts.name, { ...(project === undefined ? {} : { project }) });
    // A public image of another project with the same name does not count.
    if (existing.project === (project ?? 'default')) {
      if (existing.status.sha256 !== null) {
        throw new CliError(
          `image "${opts.name}" already has a file (sha256 ${existing.status.sha256}); import under another name`,
          'name_conflict',
        );
      }
      if (opts.os !== undefined || opts.minDiskGib !== undefined || opts.public === true) {
        rt.warn(
          `using the existing image record "${opts.name}"; --os, --min-disk-gib and --public are left as they are`,
        );
      }
      return { image: existing, created: false };
    }
  } catch (err) {
    if (!isFloeApiError(err) || err.code !== 'image_not_found') throw err;
  }
  const image = await client.images.create({
    name: opts.name,
    ...(project === undefined ? {} : { project }),
    ...(opts.os === undefined ? {} : { os: opts.os }),
    ...(opts.minDiskGib === undefined ? {} : { min_disk_gib: opts.minDiskGib }),
    ...(opts.public === true ? { public: true } : {}),
  });
  return { image, created: true };
}

/** `floe image import FILE|-|URL --name NAME`: register an image and stream its file, or have the control plane download it. */
export function registerImageImport(image: Command): void {
  const cmd = image
    .command('import')
    .description(
      'import a disk image (raw or qcow2; stored as qcow2): upload a file into a new image (or a pending one of that name), ' +
        'or let the control plane download an http(s) URL, verified with --checksum or --checksum-url',
    )
    .argument('<source>', 'the image file, - to read it from stdin, or an http:// or https:// URL')
    .requiredOption('--name <name>', 'image name')
    .option('--sha256 <hex>', 'expected sha256 of the file; the import is refused when it differs')
    .option('--checksum <algo:hex>', 'URL imports: expected sha256:HEX or sha512:HEX of the file')
    .option(
      '--checksum-url <url>',
      'URL imports: a SHA256SUMS or SHA512SUMS file with a line for the file ("HEX  name" or "SHA256 (name) = HEX")',
    )
    .option('--ca-file <pem>', 'URL imports: extra CA certificate(s) to trust for an https URL, besides the system CAs')
    .option('--no-wait', 'URL imports: answer with the import operation at once instead of following its progress')
    .option('--os <os>', 'operating system, e.g. debian-12')
    .addOption(
      new Option(
        '--min-disk-gib <n>',
        'smallest disk the image fits on (at least the virtual size of its file)',
      ).argParser(intArg(1, 65536)),
    )
    .option('--public', 'visible to every project (admin)')
    .action(async (file: string, opts: ImportFlags & UrlImportFlags, command: Command) => {
      const rt = runtimeOf(command);
      checkName(opts.name, 'image name');
      if (opts.sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(opts.sha256))
        throw new UsageError('--sha256 must be 64 hex digits');
      if (isUrlSource(file)) {
        await importFromUrl(file, opts, command);
        return;
      }
      if (opts.checksum !== undefined || opts.checksumUrl !== undefined || opts.caFile !== undefined || !opts.wait) {
        throw new UsageError(
          '--checksum, --checksum-url, --ca-file and --no-wait are for URL imports; a file upload takes --sha256',
        );
      }
      let total: number | null = null;
      if (file !== '-') {
        try {
          const st = await stat(file);
          if (!st.isFile()) throw new Error('not a regular file');
          total = st.size;
        } catch (err) {
          throw new CliError(`cannot read ${file}: ${(err as Error).message}`, 'file_unreadable');
        }
      }
      const client = rt.client(command);
      const project = rt.project(command);
      const { image: record, created } = await recordFor(rt, client, project, opts);

      // Ctrl-C aborts the upload, so a record made here is removed again.
      const abort = new AbortController();
      const onSigint = () => abort.abort();
      process.once('SIGINT', onSigint);
      const stopOnSignal = () => abort.abort();
      rt.signal?.addEventListener('abort', stopOnSignal);
      const progress = uploadProgress(rt, progressMode(rt, command), total);
      let done: Image;
      try {
        done = await client.images.upload(record.id, file === '-' ? process.stdin : file, {
          ...(project === undefined ? {} : { project }),
          ...(opts.sha256 === undefined ? {} : { sha256: opts.sha256.toLowerCase() }),
          onProgress: progress.update,
          signal: abort.signal,
        });
      } catch (err) {
        progress.stop();
        if (created) {
          await client.images
            .delete(record.id)
            .catch((e: unknown) => rt.warn(`could not remove the image record ${record.id}: ${(e as Error).message}`));
        }
        if (abort.signal.aborted) throw new CliError('upload interrupted', 'interrupted');
        throw err;
      } finally {
        process.off('SIGINT', onSigint);
        rt.signal?.removeEventListener('abort', stopOnSignal);
      }
      progress.stop();
      rt.print(command, done, () => renderDetails(done));
    });
  examples(cmd, [
    'floe image import debian-12.qcow2 --name debian-12 --os debian-12 --min-disk-gib 2',
    'floe image import https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2 --name debian-12 \\\n' +
      '      --checksum-url https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS',
    'curl -sL https://example.org/disk.raw | floe image import - --name disk --sha256 9f86d0...',
  ]);
}
