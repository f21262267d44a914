import { describe, expect, it } from 'vitest';
import { desiredInstance, distinctColours, foregroundShare, RfbClient } from '@floe/testkit';
import { FakeVmDriver } from './fake.js';
import { FAKE_RFB_HEIGHT, FAKE_RFB_WIDTH, FakeRfbServer, fakePixel } from './fake-rfb.js';

/** A server whose answers are collected, fed in arbitrary pieces. */
function serve(name = 'web'): { server: FakeRfbServer; out: () => Buffer; closed: string[] } {
  const chunks: Buffer[] = [];
  const closed: string[] = [];
  const server = new FakeRfbServer(
    name,
    (d) => chunks.push(d),
    (r) => closed.push(r),
  );
  return { server, out: () => Buffer.concat(chunks), closed };
}

describe('the fake driver graphical console', () => {
  it('shakes hands and shows its picture to an RFB client', async () => {
    const driver = new FakeVmDriver();
    const vm = desiredInstance({ name: 'web' });
    await driver.create(vm);
    await driver.start(vm.id);
    const session = await driver.openVnc(vm.id);
    const rfb = await RfbClient.connect(session, 2000);
    expect(rfb.fb).toMatchObject({ width: FAKE_RFB_WIDTH, height: FAKE_RFB_HEIGHT, name: 'fake web' });
    const fb = await rfb.frame(2000);
    expect(distinctColours(fb)).toBeGreaterThan(1);
    expect(foregroundShare(fb)).toBeGreaterThan(0.1);
    // The pixel at (0, 10) is the light band, in the client's RGBX layout.
    const at = (x: number, y: number) => [...fb.pixels.subarray((y * fb.width + x) * 4, (y * fb.width + x) * 4 + 3)];
    expect(at(0, 10)).toEqual(fakePixel('web', 0, 10));
    expect(at(3, 2)).toEqual(fakePixel('web', 3, 2));
    session.close();
  });

  it('answers in the pixel format the client set, and a partial update for a partial request', () => {
    const { server, out } = serve();
    server.input(Buffer.from('RFB 003.008\n', 'latin1'));
    server.input(Buffer.from([1]));
    server.input(Buffer.from([1]));
    const before = out().length;
    // 16 bits, big-endian, 5-6-5; then a 2x1 request at (0, 8), sent one byte at a time.
    const format = Buffer.from([0, 0, 0, 0, 16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0]);
    const request = Buffer.from([3, 0, 0, 0, 0, 8, 0, 2, 0, 1]);
    for (const byte of Buffer.concat([format, request])) server.input(Buffer.from([byte]));
    const update = out().subarray(before);
    expect(update.length).toBe(16 + 2 * 2);
    expect(update.readUInt16BE(2)).toBe(1);
    expect(update.readUInt16BE(8)).toBe(2);
    // (220, 220, 220) in 5-6-5: r 27, g 54, b 27 (rounded).
    expect(update.readUInt16BE(16)).toBe((27 << 11) | (54 << 5) | 27);
  });

  it('gives up on a client that speaks something else', () => {
    const bad = serve();
    bad.server.input(Buffer.from('RFB 003.003\n', 'latin1'));
    expect(bad.closed).toEqual(['unsupported version']);
    const noAuth = serve();
    noAuth.server.input(Buffer.from('RFB 003.008\n', 'latin1'));
    noAuth.server.input(Buffer.from([2]));
    expect(noAuth.closed).toEqual(['unsupported security type']);
    const unknown = serve();
    unknown.server.input(Buffer.concat([Buffer.from('RFB 003.008\n', 'latin1'), Buffer.from([1, 1, 99])]));
    expect(unknown.closed[0]).toMatch(/unknown client message/);
  });
});
