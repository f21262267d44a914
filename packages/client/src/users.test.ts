import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FloeClient } from './index.js';

interface Seen {
  method: string;
  url: string;
  body: string;
}

describe('users and members', () => {
  const seen: Seen[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', body });
      if (req.method === 'DELETE' || req.url?.endsWith('/password')) {
        res.writeHead(204).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(req.url?.endsWith('/members') && req.method === 'GET' ? { items: [{ user: 'ada' }] } : {}),
      );
    });
  });
  let client: FloeClient;
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = new FloeClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' });
  });
  afterAll(async () => {
    await client.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('calls the user routes', async () => {
    await client.users.create({ name: 'ada' });
    await client.users.me();
    await client.users.update('ada', { disabled: true });
    await client.users.changePassword('old one', 'new one');
    await client.users.delete('ada');
    expect(seen.splice(0).map((s) => [s.method, s.url, s.body])).toEqual([
      ['POST', '/v1/users', '{"name":"ada"}'],
      ['GET', '/v1/users/me', ''],
      ['PATCH', '/v1/users/ada', '{"disabled":true}'],
      ['POST', '/v1/users/me/password', '{"old_password":"old one","new_password":"new one"}'],
      ['DELETE', '/v1/users/ada', ''],
    ]);
  });

  it('calls the member routes of a project, escaping the path', async () => {
    expect(await client.members.list('shop')).toEqual([{ user: 'ada' }]);
    await client.members.add('shop', { user: 'ada', role: 'viewer' });
    await client.members.update('shop', 'a/b', 'member');
    await client.members.remove('shop', 'ada');
    expect(seen.splice(0).map((s) => [s.method, s.url, s.body])).toEqual([
      ['GET', '/v1/projects/shop/members', ''],
      ['POST', '/v1/projects/shop/members', '{"user":"ada","role":"viewer"}'],
      ['PATCH', '/v1/projects/shop/members/a%2Fb', '{"role":"member"}'],
      ['DELETE', '/v1/projects/shop/members/ada', ''],
    ]);
  });
});
