import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { desiredInstance } from '@floe/testkit';
import type { FirstBootEvent } from './reports.js';
import { MAX_BODY_BYTES, MetadataServer } from './server.js';

/*
 * The HTTP side of the metadata service on loopback: connections to a NIC's
 * port are that NIC's (in production the firewall makes sure only its tap
 * gets there; see netns.test.ts).
 */

const NIC_A = 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C4';
const NIC_B = 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C5';
const VM_A = desiredInstance({ id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C1', name: 'a' });
const VM_B = desiredInstance({ id: 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C2', name: 'b' });

let server: MetadataServer | null = null;
const events: Array<[string, FirstBootEvent]> = [];

async function start(): Promise<[number, number]> {
  server = new MetadataServer({
    host: '127.0.0.1',
    lookup: (nic) => (nic === NIC_A ? { vm: VM_A, nicId: nic } : nic === NIC_B ? { vm: VM_B, nicId: nic } : null),
    onFirstBoot: (id, e) => events.push([id, e]),
  });
  // Ports the OS picks are not known before listening: find two free ones first.
  const free = async () =>
    new Promise<number>((resolve) => {
      const s = http.createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
  const [a, b] = [await free(), await free()];
  await server.open(NIC_A, a);
  await server.open(NIC_B, b);
  return [a, b];
}

function request(
  port: number,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

afterEach(async () => {
  await server?.stop();
  server = null;
  events.length = 0;
});

describe('MetadataServer', () => {
  it("answers each port with its own NIC's VM", async () => {
    const [a, b] = await start();
    expect((await request(a, 'GET', '/latest/meta-data/instance-id')).body).toBe(VM_A.id);
    expect((await request(b, 'GET', '/latest/meta-data/instance-id')).body).toBe(VM_B.id);
    // Nothing the caller sends changes whose data it gets.
    expect(
      (
        await request(b, 'GET', '/latest/meta-data/instance-id', undefined, {
          'x-instance-id': VM_A.id,
          host: '169.254.169.254',
        })
      ).body,
    ).toBe(VM_B.id);
    expect(server!.ports()).toEqual(
      new Map([
        [NIC_A, a],
        [NIC_B, b],
      ]),
    );
  });

  it('HEAD has the length and no body; wrong methods get 405 with Allow; unknown paths 404', async () => {
    const [a] = await start();
    const get = await request(a, 'GET', '/meta-data');
    const head = await request(a, 'HEAD', '/meta-data');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(get.body)));
    const put = await request(a, 'PUT', '/latest/api/token', '');
    expect([put.status, put.headers.allow]).toEqual([405, 'GET, HEAD']);
    expect((await request(a, 'GET', '/nope')).status).toBe(404);
    expect((await request(a, 'GET', '/../../etc/passwd')).status).toBe(400);
  });

  it('records the first fetch once, and the reports of the end of the first boot', async () => {
    const [a] = await start();
    await request(a, 'GET', '/meta-data');
    await request(a, 'GET', '/user-data');
    expect(events.map(([id, e]) => [id, e.type])).toEqual([[VM_A.id, 'fetched']]);
    const form = await request(a, 'POST', '/phone-home', 'instance_id=x&hostname=a', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(form.status).toBe(200);
    const hook = await request(
      a,
      'POST',
      '/report',
      JSON.stringify({
        name: 'modules-final',
        event_type: 'finish',
        result: 'FAIL',
        description: 'running modules for final',
      }),
      { 'content-type': 'application/json' },
    );
    expect(hook.status).toBe(200);
    expect(events.slice(1).map(([id, e]) => [id, e.type, e.type === 'finished' ? e.result : null])).toEqual([
      [VM_A.id, 'finished', 'ok'],
      [VM_A.id, 'finished', 'failed'],
    ]);
  });

  it('refuses bodies over the limit', async () => {
    const [a] = await start();
    const big = await request(a, 'POST', '/report', Buffer.alloc(MAX_BODY_BYTES + 1, 'x')).catch(() => ({
      status: 413,
    }));
    expect(big.status).toBe(413);
    expect(events).toEqual([]);
  });

  it('a NIC closed is no longer listened for; others are', async () => {
    const [a, b] = await start();
    await server!.close(NIC_A);
    await expect(request(a, 'GET', '/meta-data')).rejects.toThrow(/ECONNREFUSED/);
    expect((await request(b, 'GET', '/latest/meta-data/instance-id')).body).toBe(VM_B.id);
  });
});
