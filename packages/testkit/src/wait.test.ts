import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, until, waitFor } from './wait.js';

describe('until / waitFor', () => {
  it('resolves to the first answer that is not false, null or undefined', async () => {
    let n = 0;
    const answers = [false, null, undefined, 0, 7];
    await expect(until('a number', () => answers[n++], { intervalMs: 1 })).resolves.toBe(0);
    expect(n).toBe(4);
  });

  it('times out naming what it waited for and the last error', async () => {
    await expect(
      until(
        'the moon',
        () => {
          throw new Error('no moon yet');
        },
        { timeoutMs: 30, intervalMs: 5 },
      ),
    ).rejects.toThrow(/timed out after 30 ms waiting for the moon: no moon yet/);
    await expect(waitFor('never', () => false, { timeoutMs: 20, intervalMs: 5 })).rejects.toThrow(/waiting for never$/);
  });

  it('waits for an asynchronous condition', async () => {
    let ready = false;
    setTimeout(() => (ready = true), 20);
    await waitFor('ready', () => Promise.resolve(ready), { timeoutMs: 2000, intervalMs: 5 });
    expect(ready).toBe(true);
  });
});

describe('freePort', () => {
  it('gives a port that can be listened on', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const srv = createServer();
    await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((r) => srv.close(r));
  });
});
