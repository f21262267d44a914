import { describe, expect, it } from 'vitest';
import { hidePaths } from './hide-paths.js';

describe('hidePaths', () => {
  it('replaces absolute paths as qemu-img and fs errors print them', () => {
    expect(
      hidePaths("qemu-img: Could not open '/tmp/floe-cp-x/images/tmp/ab.upload': Active L1 table offset invalid"),
    ).toBe("qemu-img: Could not open '<file>': Active L1 table offset invalid");
    expect(hidePaths("EEXIST: file already exists, mkdir '/srv/floe/images/tmp'")).toBe(
      "EEXIST: file already exists, mkdir '<file>'",
    );
    expect(hidePaths('spawn /usr/bin/qemu-img ENOENT')).toBe('spawn <file> ENOENT');
    expect(hidePaths('"/a b"')).toBe('"<file> b"');
  });

  it('leaves URLs, ratios and plain words alone', () => {
    for (const text of [
      'cannot fetch https://example.com/images/disk.qcow2: connect ECONNREFUSED 127.0.0.1:80',
      'sha256/sha512 and 1/2 of 10 MiB',
      'no route GET v1/x',
      'a / b',
    ])
      expect(hidePaths(text)).toBe(text);
  });
});
