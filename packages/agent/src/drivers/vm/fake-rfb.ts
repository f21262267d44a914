/**
 * A tiny RFB (VNC) server for the fake VM driver: RFB 3.8, security type
 * None, raw encoding, any true-colour pixel format the client asks for. Its
 * framebuffer is a fixed test picture drawn from the VM's name, so a client
 * can tell a real frame from a blank one. Key and pointer events are read
 * and counted, nothing more.
 */

/** The picture's size. */
export const FAKE_RFB_WIDTH = 64;
export const FAKE_RFB_HEIGHT = 48;

/** How pixels are encoded on the wire (RFB PIXEL_FORMAT, true colour only). */
interface PixelFormat {
  bitsPerPixel: 8 | 16 | 32;
  bigEndian: boolean;
  redMax: number;
  greenMax: number;
  blueMax: number;
  redShift: number;
  greenShift: number;
  blueShift: number;
}

const DEFAULT_FORMAT: PixelFormat = {
  bitsPerPixel: 32,
  bigEndian: false,
  redMax: 255,
  greenMax: 255,
  blueMax: 255,
  redShift: 16,
  greenShift: 8,
  blueShift: 0,
};

function formatBytes(f: PixelFormat): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(f.bitsPerPixel, 0);
  b.writeUInt8(f.bitsPerPixel === 32 ? 24 : f.bitsPerPixel, 1);
  b.writeUInt8(f.bigEndian ? 1 : 0, 2);
  b.writeUInt8(1, 3); // true colour
  b.writeUInt16BE(f.redMax, 4);
  b.writeUInt16BE(f.greenMax, 6);
  b.writeUInt16BE(f.blueMax, 8);
  b.writeUInt8(f.redShift, 10);
  b.writeUInt8(f.greenShift, 11);
  b.writeUInt8(f.blueShift, 12);
  return b;
}

function parseFormat(b: Buffer): PixelFormat | null {
  const bpp = b.readUInt8(0);
  if ((bpp !== 8 && bpp !== 16 && bpp !== 32) || b.readUInt8(3) !== 1) return null;
  return {
    bitsPerPixel: bpp,
    bigEndian: b.readUInt8(2) !== 0,
    redMax: b.readUInt16BE(4),
    greenMax: b.readUInt16BE(6),
    blueMax: b.readUInt16BE(8),
    redShift: b.readUInt8(10),
    greenShift: b.readUInt8(11),
    blueShift: b.readUInt8(12),
  };
}

/** The colour of the test picture at (x, y): a dark background, a light band, and the name's bytes as bars. */
export function fakePixel(name: string, x: number, y: number): [number, number, number] {
  if (y >= 8 && y < 16) return [220, 220, 220];
  const code = name.charCodeAt(Math.floor(x / 8) % Math.max(1, name.length)) || 0;
  if (y >= 24 && y < 40 && (code >> (x % 8)) & 1) return [40, 200, 80];
  return [16, 16, 32];
}

function encodePixel(f: PixelFormat, [r, g, b]: [number, number, number]): Buffer {
  const scale = (v: number, max: number) => Math.round((v * max) / 255);
  const value =
    ((scale(r, f.redMax) << f.redShift) |
      (scale(g, f.greenMax) << f.greenShift) |
      (scale(b, f.blueMax) << f.blueShift)) >>>
    0;
  const size = f.bitsPerPixel / 8;
  const out = Buffer.alloc(size);
  if (size === 1) out.writeUInt8(value & 0xff, 0);
  else if (size === 2 && f.bigEndian) out.writeUInt16BE(value & 0xffff, 0);
  else if (size === 2) out.writeUInt16LE(value & 0xffff, 0);
  else if (f.bigEndian) out.writeUInt32BE(value, 0);
  else out.writeUInt32LE(value, 0);
  return out;
}

type Phase = 'version' | 'security' | 'init' | 'normal' | 'closed';

/**
 * The server side of one RFB connection: feed it the client's bytes with
 * `input`, and it answers through `send`. `close` is called with a reason when
 * the client speaks something it does not understand.
 */
export class FakeRfbServer {
  private phase: Phase = 'version';
  private buffered = Buffer.alloc(0);
  private format: PixelFormat = DEFAULT_FORMAT;
  /** Key and pointer events received (tests). */
  events = 0;

  constructor(
    private readonly name: string,
    private readonly send: (data: Buffer) => void,
    private readonly close: (reason: string) => void,
  ) {
    send(Buffer.from('RFB 003.008\n', 'latin1'));
  }

  input(data: Buffer): void {
    if (this.closed()) return;
    this.buffered = Buffer.concat([this.buffered, data]);
    while (!this.closed()) {
      const used = this.step(this.buffered);
      if (used === 0) break;
      this.buffered = this.buffered.subarray(used);
    }
  }

  private closed(): boolean {
    return this.phase === 'closed';
  }

  /** Take one message from the front of `b`; the bytes it used (0: not all there yet). */
  private step(b: Buffer): number {
    switch (this.phase) {
      case 'version':
        if (b.length < 12) return 0;
        if (!/^RFB 003\.00[78]\n$/.test(b.subarray(0, 12).toString('latin1'))) return this.fail('unsupported version');
        this.send(Buffer.from([1, 1])); // one security type: None
        this.phase = 'security';
        return 12;
      case 'security':
        if (b.length < 1) return 0;
        if (b[0] !== 1) return this.fail('unsupported security type');
        this.send(Buffer.alloc(4)); // SecurityResult: OK
        this.phase = 'init';
        return 1;
      case 'init': {
        if (b.length < 1) return 0;
        const name = Buffer.from(`fake ${this.name}`, 'utf8');
        const head = Buffer.alloc(4);
        head.writeUInt16BE(FAKE_RFB_WIDTH, 0);
        head.writeUInt16BE(FAKE_RFB_HEIGHT, 2);
        const len = Buffer.alloc(4);
        len.writeUInt32BE(name.length, 0);
        this.send(Buffer.concat([head, formatBytes(this.format), len, name]));
        this.phase = 'normal';
        return 1;
      }
      case 'normal':
        return this.message(b);
      default:
        return 0;
    }
  }

  private message(b: Buffer): number {
    if (b.length < 1) return 0;
    switch (b[0]) {
      case 0: {
        // SetPixelFormat
        if (b.length < 20) return 0;
        const f = parseFormat(b.subarray(4, 20));
        if (f === null) return this.fail('only true-colour pixel formats of 8, 16 or 32 bits');
        this.format = f;
        return 20;
      }
      case 2: {
        // SetEncodings: raw is always understood, the rest is ignored
        if (b.length < 4) return 0;
        const size = 4 + 4 * b.readUInt16BE(2);
        return b.length < size ? 0 : size;
      }
      case 3: {
        // FramebufferUpdateRequest
        if (b.length < 10) return 0;
        const x = b.readUInt16BE(2);
        const y = b.readUInt16BE(4);
        const w = Math.max(0, Math.min(b.readUInt16BE(6), FAKE_RFB_WIDTH - x));
        const h = Math.max(0, Math.min(b.readUInt16BE(8), FAKE_RFB_HEIGHT - y));
        this.update(x, y, w, h);
        return 10;
      }
      case 4: // KeyEvent
        if (b.length < 8) return 0;
        this.events++;
        return 8;
      case 5: // PointerEvent
        if (b.length < 6) return 0;
        this.events++;
        return 6;
      case 6: {
        // ClientCutText
        if (b.length < 8) return 0;
        const size = 8 + b.readUInt32BE(4);
        return b.length < size ? 0 : size;
      }
      default:
        return this.fail(`unknown client message type ${b[0]}`);
    }
  }

  private update(x: number, y: number, w: number, h: number): void {
    const head = Buffer.alloc(16);
    head.writeUInt8(0, 0); // FramebufferUpdate
    head.writeUInt16BE(1, 2);
    head.writeUInt16BE(x, 4);
    head.writeUInt16BE(y, 6);
    head.writeUInt16BE(w, 8);
    head.writeUInt16BE(h, 10);
    head.writeInt32BE(0, 12); // raw
    const pixels: Buffer[] = [];
    for (let row = y; row < y + h; row++)
      for (let col = x; col < x + w; col++) pixels.push(encodePixel(this.format, fakePixel(this.name, col, row)));
    this.send(Buffer.concat([head, ...pixels]));
  }

  private fail(reason: string): number {
    this.phase = 'closed';
    this.close(reason);
    return 0;
  }
}
