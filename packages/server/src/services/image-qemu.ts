import { open } from 'node:fs/promises';
import { FloeError } from '@floe/api';
import { ExecError, run } from '../exec.js';
import { hidePaths } from './hide-paths.js';
import { checkQcow2Header, parseQcow2Header, sniffImageFormat } from './image-checks.js';

/** Bytes read from the start of an upload to recognise its format and check a qcow2 header. */
const HEAD_BYTES = 64 * 1024;
/** Bytes read from the end: some formats (VHD, DMG) keep their signature in a footer. */
const TAIL_BYTES = 512;
/** qemu-img as the image file store uses it: recognise, inspect, check and convert uploads. */
export class QemuImg {
  /** `path`: the qemu-img executable. */
  constructor(private readonly path: string) {}

  // Recognise the format ourselves; check a qcow2 header before qemu-img opens the file.
  async detect(file: string): Promise<'qcow2' | 'raw'> {
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
    else if (format !== 'raw')
      throw new FloeError(
        'image_format_unsupported',
        `the file is a ${format} image; floe takes raw or qcow2 (convert it with qemu-img convert -O qcow2)`,
        { format },
      );
    return format;
  }

  async info(file: string, format: 'qcow2' | 'raw'): Promise<unknown> {
    // An explicit -f: qemu-img never guesses, and without --backing-chain it opens no backing file.
    let stdout: string;
    try {
      ({ stdout } = await run(this.path, ['info', '--output=json', '-U', '-f', format, file], {
        timeoutMs: 60_000,
      }));
    } catch (err) {
      if (err instanceof ExecError && err.code === 1) {
        throw new FloeError(
          'image_format_unsupported',
          `qemu-img cannot read the ${format} image: ${reasonOf(err.stderr) || 'no reason given'}`,
        );
      }
      throw toFloeError(err, 'info');
    }
    try {
      return JSON.parse(stdout);
    } catch {
      throw new FloeError('internal_error', 'qemu-img info printed something that is not JSON');
    }
  }

  // A qcow2 kept as uploaded must be consistent: exit 2 is corruption, 1 a file qemu-img cannot check; 3 (leaked clusters) is harmless.
  async check(file: string): Promise<void> {
    try {
      await run(this.path, ['check', '-q', '-f', 'qcow2', file], { timeoutMs: 10 * 60_000 });
    } catch (err) {
      if (err instanceof ExecError && err.code === 3) return;
      if (err instanceof ExecError && (err.code === 1 || err.code === 2)) {
        throw new FloeError(
          'image_format_unsupported',
          `the qcow2 image is damaged: ${reasonOf(err.stderr) || `qemu-img check exited with code ${err.code}`}`,
        );
      }
      throw toFloeError(err, 'check');
    }
  }

  async run(args: string[], timeoutMs: number): Promise<{ stdout: string }> {
    try {
      return await run(this.path, args, { timeoutMs });
    } catch (err) {
      throw toFloeError(err, args[0] ?? '');
    }
  }
}

/**
 * What qemu-img says went wrong, fit for the API: the first line of its stderr without the "qemu-img:" and
 * "Could not open '<file>':" in front, and no path of the server (the file is always the one uploaded).
 */
function reasonOf(stderr: string): string {
  const first = stderr.trim().split('\n')[0] ?? '';
  return hidePaths(first.replace(/^qemu-img: /, '').replace(/^Could not open '[^']*': /, '')).trim();
}

// A failed qemu-img run as the error the API reports (the server log keeps the rest).
function toFloeError(err: unknown, sub: string): unknown {
  if (!(err instanceof ExecError)) return err;
  if (err.missing) {
    return new FloeError(
      'internal_error',
      'qemu-img is not installed on the control plane (Debian package qemu-utils)',
    );
  }
  const why = reasonOf(err.stderr) || (err.code === null ? 'it did not finish' : `exit code ${err.code}`);
  return new FloeError('internal_error', `qemu-img ${sub} failed: ${why}`);
}
