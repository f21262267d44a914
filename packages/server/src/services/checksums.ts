import { posix } from 'node:path';
import { FloeError } from '@floe/api';

/** Hash algorithms floe verifies downloads with. */
export type ChecksumAlgo = 'sha256' | 'sha512';

/** An expected digest of a file. */
export interface Checksum {
  algo: ChecksumAlgo;
  /** Lower-case hex. */
  hex: string;
}

const HEX_LENGTH: Record<ChecksumAlgo, number> = { sha256: 64, sha512: 128 };

/** Parse `sha256:HEX` or `sha512:HEX` (the form of `source.checksum` and `--checksum`). */
export function parseChecksum(text: string, field = 'source.checksum'): Checksum {
  const m = /^(sha256|sha512):([0-9a-fA-F]+)$/.exec(text.trim());
  if (!m || m[2]!.length !== HEX_LENGTH[m[1] as ChecksumAlgo]) {
    throw new FloeError(
      'validation_failed',
      `${field} must be sha256:HEX (64 hex digits) or sha512:HEX (128 hex digits)`,
      { field },
    );
  }
  return { algo: m[1] as ChecksumAlgo, hex: m[2]!.toLowerCase() };
}

/** `sha256:hex` as text. */
export function formatChecksum(c: Checksum): string {
  return `${c.algo}:${c.hex}`;
}

// GNU coreutils: "HEX  name" (text mode) or "HEX *name" (binary mode).
const GNU_LINE = /^([0-9a-fA-F]{64}|[0-9a-fA-F]{128})\s[ *]?(.+)$/;
// BSD and `sha256sum --tag`: "SHA256 (name) = HEX".
const BSD_LINE = /^(SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)$/i;

/**
 * The checksum a SHA256SUMS / SHA512SUMS file gives for `fileName`, or null
 * when it has no line for it. Takes GNU lines (`HEX  name`, `HEX *name`) and
 * BSD lines (`SHA256 (name) = HEX`); a name with a directory matches by its
 * last part. With lines of both algorithms for the file, sha512 wins.
 */
export function findChecksum(sums: string, fileName: string): Checksum | null {
  const found: Checksum[] = [];
  for (const raw of sums.split('\n')) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    let name: string;
    let checksum: Checksum;
    const gnu = GNU_LINE.exec(line);
    const bsd = gnu ? null : BSD_LINE.exec(line);
    if (gnu) {
      name = gnu[2]!.trim();
      checksum = { algo: gnu[1]!.length === 64 ? 'sha256' : 'sha512', hex: gnu[1]!.toLowerCase() };
    } else if (bsd) {
      const algo = bsd[1]!.toLowerCase() as ChecksumAlgo;
      if (bsd[3]!.length !== HEX_LENGTH[algo]) continue;
      name = bsd[2]!.trim();
      checksum = { algo, hex: bsd[3]!.toLowerCase() };
    } else {
      continue;
    }
    if (name === fileName || posix.basename(name) === fileName) found.push(checksum);
  }
  return found.find((c) => c.algo === 'sha512') ?? found[0] ?? null;
}

/** The file name a URL points at (its last path segment, decoded), or '' for a directory URL. */
export function fileNameOf(url: URL): string {
  const last = url.pathname.split('/').pop() ?? '';
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}
