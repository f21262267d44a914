/**
 * A tiny RFB (VNC) client for tests: RFB 3.8 (3.7 too), security type None,
 * raw encoding, 32-bit true colour. Enough to prove a graphical console
 * shows a real frame; nothing a user would view a desktop with.
 */

/** A byte stream both ways: a console session, a socket, a fake. */
export interface RfbTransport {
  write(data: Buffer): void;
  /** Bytes from the server; returns an unsubscribe function. */
  onData(listener: (data: Buffer) => void): () => void;
}

/** The screen the server announced and the pixels received so far (RGBX, 4 bytes a pixel). */
export interface RfbFramebuffer {
  width: number;
  height: number;
  name: string;
  /** `width * height * 4` bytes: red, green, blue, unused. */
  pixels: Buffer;
}

/** Reads exact byte counts from a stream that arrives in arbitrary chunks. */
class ByteQueue {
  private chunks: Buffer[] = [];
  private size = 0;
  private waiter: (() => void) | null = null;

  push(d: Buffer): void {
    this.chunks.push(d);
    this.size += d.length;
    this.waiter?.();
  }

  async read(n: number, deadline: number): Promise<Buffer> {
    while (this.size < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`RFB: timed out waiting for ${n} bytes (have ${this.size})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
    const all = Buffer.concat(this.chunks);
    this.chunks = [all.subarray(n)];
    this.size = all.length - n;
    return all.subarray(0, n);
  }
}

/** 32 bits a pixel, depth 24, little-endian, true colour, red at bit 0, green at 8, blue at 16: RGBX in memory. */
const PIXEL_FORMAT = Buffer.from([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0]);

/**
 * An RFB session after the handshake: `frame()` asks for a full
 * FramebufferUpdate and collects the rectangles until the screen is covered.
 *
 * @example
 * const rfb = await RfbClient.connect(session);
 * const fb = await rfb.frame();
 * expect(distinctColours(fb)).toBeGreaterThan(1);
 */
export class RfbClient {
  private constructor(
    private readonly io: RfbTransport,
    private readonly queue: ByteQueue,
    private readonly off: () => void,
    readonly fb: RfbFramebuffer,
    /** What the server said at each step of the handshake (tests). */
    readonly handshake: { version: string; securityTypes: number[] },
  ) {}

  /**
   * ProtocolVersion, security type None, ClientInit (shared) and ServerInit;
   * then the pixel format above and raw encoding. Throws when the server
   * offers no None security or fails the handshake.
   */
  static async connect(io: RfbTransport, timeoutMs = 30_000): Promise<RfbClient> {
    const deadline = Date.now() + timeoutMs;
    const queue = new ByteQueue();
    const off = io.onData((d) => queue.push(d));
    try {
      const version = (await queue.read(12, deadline)).toString('latin1');
      const m = /^RFB (\d{3})\.(\d{3})\n$/.exec(version);
      if (m === null) throw new Error(`RFB: not a ProtocolVersion: ${JSON.stringify(version)}`);
      const minor = Number(m[1]) > 3 ? 8 : Math.min(8, Number(m[2]));
      if (minor < 7) throw new Error(`RFB: version ${version.trim()} is too old for this client`);
      io.write(Buffer.from(`RFB 003.00${minor}\n`, 'latin1'));
      const count = (await queue.read(1, deadline))[0]!;
      if (count === 0) {
        const len = (await queue.read(4, deadline)).readUInt32BE(0);
        throw new Error(`RFB: the server refused: ${(await queue.read(len, deadline)).toString('utf8')}`);
      }
      const securityTypes = [...(await queue.read(count, deadline))];
      if (!securityTypes.includes(1)) throw new Error(`RFB: no None security offered (${securityTypes.join(', ')})`);
      io.write(Buffer.from([1]));
      if (minor >= 8) {
        const result = (await queue.read(4, deadline)).readUInt32BE(0);
        if (result !== 0) throw new Error(`RFB: security handshake failed (${result})`);
      }
      io.write(Buffer.from([1])); // ClientInit: share the desktop
      const init = await queue.read(24, deadline);
      const width = init.readUInt16BE(0);
      const height = init.readUInt16BE(2);
      const name = (await queue.read(init.readUInt32BE(20), deadline)).toString('utf8');
      const setFormat = Buffer.concat([Buffer.from([0, 0, 0, 0]), PIXEL_FORMAT]);
      const setEncodings = Buffer.from([2, 0, 0, 1, 0, 0, 0, 0]); // raw only
      io.write(Buffer.concat([setFormat, setEncodings]));
      const fb = { width, height, name, pixels: Buffer.alloc(width * height * 4) };
      return new RfbClient(io, queue, off, fb, { version: version.trim(), securityTypes });
    } catch (err) {
      off();
      throw err;
    }
  }

  /**
   * Ask for the whole screen (non-incremental) and read server messages
   * until a FramebufferUpdate has arrived; returns the framebuffer.
   */
  async frame(timeoutMs = 30_000): Promise<RfbFramebuffer> {
    const deadline = Date.now() + timeoutMs;
    const { width, height } = this.fb;
    const req = Buffer.alloc(10);
    req.writeUInt8(3, 0);
    req.writeUInt8(0, 1); // not incremental
    req.writeUInt16BE(width, 6);
    req.writeUInt16BE(height, 8);
    this.io.write(req);
    for (;;) {
      const type = (await this.queue.read(1, deadline))[0]!;
      if (type === 0) {
        await this.readUpdate(deadline);
        return this.fb;
      }
      await this.skip(type, deadline);
    }
  }

  /** Press (`down`) or release a key, by its X keysym (0xffe3 Control_L, 0xffe9 Alt_L, 0xffff Delete, ...). */
  key(keysym: number, down: boolean): void {
    const msg = Buffer.alloc(8);
    msg.writeUInt8(4, 0);
    msg.writeUInt8(down ? 1 : 0, 1);
    msg.writeUInt32BE(keysym, 4);
    this.io.write(msg);
  }

  /** Press keys together, then release them in reverse (a chord such as Ctrl-Alt-Del). */
  chord(...keysyms: number[]): void {
    for (const k of keysyms) this.key(k, true);
    for (const k of [...keysyms].reverse()) this.key(k, false);
  }

  /** Stop listening (the transport is the caller's to close). */
  close(): void {
    this.off();
  }

  private async readUpdate(deadline: number): Promise<void> {
    const head = await this.queue.read(3, deadline);
    const rects = head.readUInt16BE(1);
    for (let i = 0; i < rects; i++) {
      const r = await this.queue.read(12, deadline);
      const [x, y, w, h] = [r.readUInt16BE(0), r.readUInt16BE(2), r.readUInt16BE(4), r.readUInt16BE(6)];
      const encoding = r.readInt32BE(8);
      if (encoding !== 0) throw new Error(`RFB: the server sent encoding ${encoding}, but only raw was asked for`);
      const data = await this.queue.read(w * h * 4, deadline);
      for (let row = 0; row < h; row++) {
        const to = ((y + row) * this.fb.width + x) * 4;
        data.copy(this.fb.pixels, to, row * w * 4, (row + 1) * w * 4);
      }
    }
  }

  private async skip(type: number, deadline: number): Promise<void> {
    if (type === 1) {
      // SetColourMapEntries
      const head = await this.queue.read(5, deadline);
      await this.queue.read(head.readUInt16BE(3) * 6, deadline);
    } else if (type === 2) {
      // Bell: nothing follows
    } else if (type === 3) {
      // ServerCutText
      const head = await this.queue.read(7, deadline);
      await this.queue.read(head.readUInt32BE(3), deadline);
    } else throw new Error(`RFB: unknown server message type ${type}`);
  }
}

/** X keysyms of the keys of Ctrl-Alt-Del. */
export const CTRL_ALT_DEL = [0xffe3, 0xffe9, 0xffff] as const;

/** How many different colours a framebuffer shows (a blank screen shows one). */
export function distinctColours(fb: RfbFramebuffer): number {
  const seen = new Set<number>();
  for (let i = 0; i < fb.pixels.length; i += 4) seen.add(fb.pixels.readUInt32BE(i) >>> 8);
  return seen.size;
}

/** The share of pixels that differ from the most common colour (the background), 0 to 1. */
export function foregroundShare(fb: RfbFramebuffer): number {
  const counts = new Map<number, number>();
  for (let i = 0; i < fb.pixels.length; i += 4) {
    const c = fb.pixels.readUInt32BE(i) >>> 8;
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  const total = fb.pixels.length / 4;
  if (total === 0) return 0;
  return 1 - Math.max(...counts.values()) / total;
}
