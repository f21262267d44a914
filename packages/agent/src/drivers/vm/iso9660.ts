/**
 * A small ISO 9660 writer for NoCloud seeds: a handful of files in the root
 * directory, with Rock Ridge names (what Linux and cloud-init read) and a
 * Joliet tree (what Windows guests read), as `genisoimage -J -R` makes them.
 * Building the few kilobytes in memory spares spawning genisoimage and a
 * staging directory on every VM create. Pure.
 *
 * Layout, in 2048-byte sectors: 0-15 system area (zero), 16 primary volume
 * descriptor, 17 Joliet supplementary descriptor, 18 terminator, 19-22 the
 * path tables (L and M, primary and Joliet), then the primary root directory,
 * the Rock Ridge continuation area (the ER entry does not fit in the root's
 * record), the Joliet root directory and the files, each on its own sectors.
 */

/** Bytes per logical sector (and logical block). */
export const ISO_SECTOR = 2048;

/** One file of the volume's root directory. */
export interface IsoFile {
  /** Its name: 1 to 64 characters of `[A-Za-z0-9._-]`. */
  name: string;
  data: Uint8Array;
}

/** What an ISO volume is made of. */
export interface IsoVolume {
  /** Volume identifier (the label blkid shows): 1 to 16 characters of `[A-Za-z0-9_-]`. */
  label: string;
  files: readonly IsoFile[];
  /** Creation time of the volume and its files; the same input always gives the same bytes. */
  date: Date;
}

const FILE_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const LABEL_RE = /^[A-Za-z0-9_-]{1,16}$/;
const FIRST_FREE_SECTOR = 23;
/**
 * Zero sectors after the last file, as genisoimage adds by default: readers
 * may read ahead past the data (Linux CD-ROM readahead, and busybox's blkid
 * finds no file system at all on a volume of 66 KiB or less).
 */
export const ISO_PAD_SECTORS = 150;
const RRIP_ID = 'RRIP_1991A';
const RRIP_DES = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS';
const RRIP_SRC =
  'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.';
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

const sectors = (bytes: number): number => Math.ceil(bytes / ISO_SECTOR);

function both16(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16LE(v, 0);
  b.writeUInt16BE(v, 2);
  return b;
}

function both32(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(v, 0);
  b.writeUInt32BE(v, 4);
  return b;
}

/** A text field of `length` bytes, space padded (ASCII) or UCS-2 big-endian space padded (Joliet). */
function textField(text: string, length: number, ucs2 = false): Buffer {
  if (!ucs2) return Buffer.from(text.padEnd(length, ' '), 'latin1');
  const b = Buffer.alloc(length);
  for (let i = 0; i + 1 < length; i += 2) b.writeUInt16BE(i / 2 < text.length ? text.charCodeAt(i / 2) : 0x20, i);
  return b;
}

function ucs2be(text: string): Buffer {
  const b = Buffer.alloc(text.length * 2);
  for (let i = 0; i < text.length; i++) b.writeUInt16BE(text.charCodeAt(i), i * 2);
  return b;
}

/** The 7-byte date of a directory record (UTC). */
function recordDate(d: Date): Buffer {
  return Buffer.from([
    d.getUTCFullYear() - 1900,
    d.getUTCMonth() + 1,
    d.getUTCDate(),
    d.getUTCHours(),
    d.getUTCMinutes(),
    d.getUTCSeconds(),
    0,
  ]);
}

/** The 17-byte date of a volume descriptor (UTC); `null` for "not specified". */
function volumeDate(d: Date | null): Buffer {
  if (d === null) return Buffer.concat([Buffer.from('0'.repeat(16), 'latin1'), Buffer.from([0])]);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const s = `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}${p(Math.floor(d.getUTCMilliseconds() / 10))}`;
  return Buffer.concat([Buffer.from(s, 'latin1'), Buffer.from([0])]);
}

/** The ISO 9660 level 1 name of a file (8.3, upper case, `;1`), as genisoimage derives it. */
export function isoLevel1Name(name: string): string {
  const clean = (s: string) => s.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  const dot = name.lastIndexOf('.');
  const base = clean(dot > 0 ? name.slice(0, dot) : name).slice(0, 8);
  const ext = dot > 0 ? clean(name.slice(dot + 1)).slice(0, 3) : '';
  return `${base}.${ext};1`;
}

interface Extent {
  sector: number;
  size: number;
}

/** One directory record (ECMA-119 9.1) with its system use area. */
function dirRecord(
  id: Buffer,
  extent: Extent,
  isDir: boolean,
  date: Date,
  systemUse: Buffer = Buffer.alloc(0),
): Buffer {
  const pad = id.length % 2 === 0 ? 1 : 0;
  const length = 33 + id.length + pad + systemUse.length;
  if (length > 255) throw new RangeError(`directory record of ${length} bytes is too long`);
  const padded = length % 2 === 0 ? length : length + 1;
  const r = Buffer.alloc(padded);
  r[0] = padded;
  both32(extent.sector).copy(r, 2);
  both32(extent.size).copy(r, 10);
  recordDate(date).copy(r, 18);
  r[25] = isDir ? 0x02 : 0x00;
  both16(1).copy(r, 28);
  r[32] = id.length;
  id.copy(r, 33);
  systemUse.copy(r, 33 + id.length + pad);
  return r;
}

/** A SUSP entry: signature, length, version 1, data. */
function susp(sig: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(sig, 'latin1'), Buffer.from([4 + data.length, 1]), data]);
}

function rrPx(mode: number, links: number): Buffer {
  return susp('PX', Buffer.concat([both32(mode), both32(links), both32(0), both32(0)]));
}

function rrTf(date: Date): Buffer {
  // Modification and access time, 7-byte form.
  return susp('TF', Buffer.concat([Buffer.from([0x06]), recordDate(date), recordDate(date)]));
}

/** Records packed into sectors: a record never crosses a sector boundary. */
function packDirectory(records: Buffer[]): Buffer {
  const out: Buffer[] = [];
  let used = 0;
  for (const r of records) {
    const room = ISO_SECTOR - (used % ISO_SECTOR);
    if (r.length > room) {
      out.push(Buffer.alloc(room));
      used += room;
    }
    out.push(r);
    used += r.length;
  }
  const total = sectors(used) * ISO_SECTOR;
  out.push(Buffer.alloc(total - used));
  return Buffer.concat(out);
}

/** The path table of a volume whose only directory is the root (ECMA-119 9.4). */
function pathTable(rootSector: number, bigEndian: boolean): Buffer {
  const t = Buffer.alloc(10);
  t[0] = 1;
  if (bigEndian) t.writeUInt32BE(rootSector, 2);
  else t.writeUInt32LE(rootSector, 2);
  if (bigEndian) t.writeUInt16BE(1, 6);
  else t.writeUInt16LE(1, 6);
  return t;
}

function volumeDescriptor(opts: {
  type: 1 | 2;
  label: string;
  volumeSectors: number;
  pathTableSize: number;
  lPathSector: number;
  mPathSector: number;
  root: Buffer;
  date: Date;
}): Buffer {
  const joliet = opts.type === 2;
  const d = Buffer.alloc(ISO_SECTOR);
  d[0] = opts.type;
  d.write('CD001', 1, 'latin1');
  d[6] = 1;
  textField('LINUX', 32, joliet).copy(d, 8);
  textField(opts.label, 32, joliet).copy(d, 40);
  both32(opts.volumeSectors).copy(d, 80);
  // Joliet level 3 escape sequence.
  if (joliet) d.write('%/E', 88, 'latin1');
  both16(1).copy(d, 120);
  both16(1).copy(d, 124);
  both16(ISO_SECTOR).copy(d, 128);
  both32(opts.pathTableSize).copy(d, 132);
  d.writeUInt32LE(opts.lPathSector, 140);
  d.writeUInt32BE(opts.mPathSector, 148);
  opts.root.copy(d, 156);
  for (const [at, len] of [
    [190, 128],
    [318, 128],
    [446, 128],
    [574, 128],
    [702, 37],
    [739, 37],
    [776, 37],
  ] as const)
    textField('', len, joliet).copy(d, at);
  textField('FLOE', 128, joliet).copy(d, 574);
  volumeDate(opts.date).copy(d, 813);
  volumeDate(opts.date).copy(d, 830);
  volumeDate(null).copy(d, 847);
  volumeDate(null).copy(d, 864);
  d[881] = 1;
  return d;
}

/**
 * The bytes of an ISO 9660 volume with `files` in its root directory,
 * labelled `label`, with Rock Ridge and Joliet names. Throws RangeError for a
 * name or label it cannot write, or two files whose 8.3 names collide.
 *
 * @example
 * buildIso({ label: 'cidata', date: new Date(), files: [{ name: 'meta-data', data: Buffer.from('instance-id: x\n') }] })
 */
export function buildIso(volume: IsoVolume): Buffer {
  if (!LABEL_RE.test(volume.label)) throw new RangeError(`bad volume label ${JSON.stringify(volume.label)}`);
  const date = volume.date;
  if (Number.isNaN(date.getTime()) || date.getUTCFullYear() < 1900 || date.getUTCFullYear() > 2155)
    throw new RangeError('volume date out of range');
  const files = volume.files.map((f) => {
    if (!FILE_NAME_RE.test(f.name) || f.name === '.' || f.name === '..')
      throw new RangeError(`bad file name ${JSON.stringify(f.name)}`);
    return { ...f, iso: isoLevel1Name(f.name) };
  });
  for (const [key, what] of [
    ['name', 'name'],
    ['iso', '8.3 name'],
  ] as const) {
    const seen = new Set<string>();
    for (const f of files) {
      if (seen.has(f[key])) throw new RangeError(`two files with the ${what} ${f[key]}`);
      seen.add(f[key]);
    }
  }

  // The sizes of the directories depend only on the names, so lay them out with placeholder extents first.
  const none: Extent = { sector: 0, size: 0 };
  const primaryRecords = (root: Extent, ce: Extent, fileExtents: Extent[]): Buffer[] => {
    const ceEntry = susp('CE', Buffer.concat([both32(ce.sector), both32(0), both32(ce.size)]));
    const sp = susp('SP', Buffer.from([0xbe, 0xef, 0]));
    const sorted = files
      .map((f, i) => ({ f, e: fileExtents[i] ?? none }))
      .sort((a, b) => (a.f.iso < b.f.iso ? -1 : a.f.iso > b.f.iso ? 1 : 0));
    return [
      dirRecord(Buffer.from([0]), root, true, date, Buffer.concat([sp, rrPx(S_IFDIR | 0o755, 2), rrTf(date), ceEntry])),
      dirRecord(Buffer.from([1]), root, true, date, Buffer.concat([rrPx(S_IFDIR | 0o755, 2), rrTf(date)])),
      ...sorted.map(({ f, e }) =>
        dirRecord(
          Buffer.from(f.iso, 'latin1'),
          e,
          false,
          date,
          Buffer.concat([
            rrPx(S_IFREG | 0o644, 1),
            rrTf(date),
            susp('NM', Buffer.concat([Buffer.from([0]), Buffer.from(f.name, 'latin1')])),
          ]),
        ),
      ),
    ];
  };
  const jolietRecords = (root: Extent, fileExtents: Extent[]): Buffer[] => {
    const sorted = files
      .map((f, i) => ({ f, e: fileExtents[i] ?? none }))
      .sort((a, b) => Buffer.compare(ucs2be(a.f.name), ucs2be(b.f.name)));
    return [
      dirRecord(Buffer.from([0]), root, true, date),
      dirRecord(Buffer.from([1]), root, true, date),
      ...sorted.map(({ f, e }) => dirRecord(ucs2be(f.name), e, false, date)),
    ];
  };
  const er = susp(
    'ER',
    Buffer.concat([
      Buffer.from([RRIP_ID.length, RRIP_DES.length, RRIP_SRC.length, 1]),
      Buffer.from(`${RRIP_ID}${RRIP_DES}${RRIP_SRC}`, 'latin1'),
    ]),
  );

  const primaryBytes = packDirectory(primaryRecords(none, none, [])).length;
  const jolietBytes = packDirectory(jolietRecords(none, [])).length;
  const primaryRoot: Extent = { sector: FIRST_FREE_SECTOR, size: primaryBytes };
  const ce: Extent = { sector: primaryRoot.sector + sectors(primaryBytes), size: er.length };
  const jolietRoot: Extent = { sector: ce.sector + 1, size: jolietBytes };
  let next = jolietRoot.sector + sectors(jolietBytes);
  const fileExtents = files.map((f) => {
    const e = { sector: next, size: f.data.length };
    next += sectors(f.data.length);
    return e;
  });
  const total = next + ISO_PAD_SECTORS;

  const image = Buffer.alloc(total * ISO_SECTOR);
  const at = (sector: number) => sector * ISO_SECTOR;
  const common = { volumeSectors: total, pathTableSize: 10, date, label: volume.label };
  volumeDescriptor({
    ...common,
    type: 1,
    lPathSector: 19,
    mPathSector: 20,
    root: dirRecord(Buffer.from([0]), primaryRoot, true, date),
  }).copy(image, at(16));
  volumeDescriptor({
    ...common,
    type: 2,
    lPathSector: 21,
    mPathSector: 22,
    root: dirRecord(Buffer.from([0]), jolietRoot, true, date),
  }).copy(image, at(17));
  image[at(18)] = 255;
  image.write('CD001', at(18) + 1, 'latin1');
  image[at(18) + 6] = 1;
  pathTable(primaryRoot.sector, false).copy(image, at(19));
  pathTable(primaryRoot.sector, true).copy(image, at(20));
  pathTable(jolietRoot.sector, false).copy(image, at(21));
  pathTable(jolietRoot.sector, true).copy(image, at(22));
  packDirectory(primaryRecords(primaryRoot, ce, fileExtents)).copy(image, at(primaryRoot.sector));
  er.copy(image, at(ce.sector));
  packDirectory(jolietRecords(jolietRoot, fileExtents)).copy(image, at(jolietRoot.sector));
  files.forEach((f, i) =>
    Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength).copy(image, at(fileExtents[i]!.sector)),
  );
  return image;
}
