import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectWithRetry, QmpClient, QmpConnectionError, QmpError, QmpTimeoutError, type QmpEvent } from './qmp.js';

type Reply = { return: unknown } | { error: { class: string; desc: string } } | null;

/** A fake QEMU monitor: greets, negotiates, and answers commands with `handler`. Records what it received. */
class FakeQmp {
  readonly received: Array<Record<string, unknown>> = [];
  readonly sockets = new Set<Socket>();
  handler: (cmd: string, args: unknown, socket: Socket) => Reply = () => ({ return: {} });
  greeting = JSON.stringify({
    QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: ['oob'] },
  });
  private constructor(
    readonly server: Server,
    readonly path: string,
  ) {}

  static async start(path: string): Promise<FakeQmp> {
    const server = createServer();
    const fake = new FakeQmp(server, path);
    server.on('connection', (socket) => fake.accept(socket));
    await new Promise<void>((r) => server.listen(path, r));
    return fake;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    socket.write(`${this.greeting}\r\n`);
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const msg = JSON.parse(line) as { execute: string; arguments?: unknown; id?: unknown };
        this.received.push(msg);
        const reply =
          msg.execute === 'qmp_capabilities' ? { return: {} } : this.handler(msg.execute, msg.arguments, socket);
        if (reply !== null) socket.write(`${JSON.stringify({ ...reply, id: msg.id })}\r\n`);
      }
    });
  }

  /** Send an event to every client. */
  event(name: string, data?: Record<string, unknown>): void {
    const msg = {
      timestamp: { seconds: 1700000000, microseconds: 5 },
      event: name,
      ...(data === undefined ? {} : { data }),
    };
    for (const s of this.sockets) s.write(`${JSON.stringify(msg)}\r\n`);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

describe('QmpClient', () => {
  let dir: string;
  let path: string;
  let fake: FakeQmp;
  const clients: QmpClient[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(os.tmpdir(), 'floe-qmp-'));
    path = join(dir, 'qmp.sock');
    fake = await FakeQmp.start(path);
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await fake.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const connect = async (opts = {}) => {
    const c = await QmpClient.connect(path, opts);
    clients.push(c);
    return c;
  };

  it('reads the greeting and negotiates capabilities before anything else', async () => {
    const client = await connect();
    expect(client.greeting.version.qemu).toEqual({ major: 7, minor: 2, micro: 0 });
    expect(fake.received).toHaveLength(1);
    expect(fake.received[0]!.execute).toBe('qmp_capabilities');
    expect(client.connected).toBe(true);
  });

  it('sends commands with arguments and matches replies by id, even out of order', async () => {
    const held: Array<() => void> = [];
    fake.handler = (cmd, args, socket) => {
      if (cmd === 'query-status') return { return: { status: 'running', running: true } };
      if (cmd === 'slow') {
        // Answer later, after the next command's reply.
        const id = fake.received.at(-1)!.id;
        held.push(() => socket.write(`${JSON.stringify({ return: { slow: true }, id })}\r\n`));
        return null;
      }
      return { return: { echo: args } };
    };
    const client = await connect();
    const slow = client.execute<{ slow: boolean }>('slow');
    const status = await client.execute('query-status');
    expect(status).toEqual({ status: 'running', running: true });
    const echo = await client.execute<{ echo: unknown }>('echo', { a: 1, b: 'x' });
    expect(echo.echo).toEqual({ a: 1, b: 'x' });
    held.shift()!();
    expect(await slow).toEqual({ slow: true });
    const sent = fake.received.slice(1);
    expect(new Set(sent.map((m) => m.id)).size).toBe(sent.length);
    expect(sent.find((m) => m.execute === 'echo')!.arguments).toEqual({ a: 1, b: 'x' });
    expect('arguments' in sent.find((m) => m.execute === 'query-status')!).toBe(false);
  });

  it('turns QMP errors into QmpError with class and desc', async () => {
    fake.handler = () => ({ error: { class: 'CommandNotFound', desc: 'The command nope has not been found' } });
    const client = await connect();
    const err = await client.execute('nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect((err as QmpError).class).toBe('CommandNotFound');
    expect((err as QmpError).desc).toBe('The command nope has not been found');
    expect((err as QmpError).command).toBe('nope');
    // The connection stays usable after an error.
    fake.handler = () => ({ return: { ok: 1 } });
    expect(await client.execute('again')).toEqual({ ok: 1 });
  });

  it('times out a command that gets no answer, and ignores the late answer', async () => {
    let late: (() => void) | null = null;
    fake.handler = (cmd, _args, socket) => {
      if (cmd === 'hang') {
        const id = fake.received.at(-1)!.id;
        late = () => socket.write(`${JSON.stringify({ return: { late: true }, id })}\r\n`);
        return null;
      }
      return { return: { fine: true } };
    };
    const client = await connect();
    const started = Date.now();
    const err = await client.execute('hang', undefined, { timeoutMs: 150 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpTimeoutError);
    expect((err as QmpTimeoutError).timeoutMs).toBe(150);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    late!();
    expect(await client.execute('other')).toEqual({ fine: true });
  });

  it('delivers events by name and to * listeners, and unsubscribes', async () => {
    const client = await connect();
    const shutdowns: QmpEvent[] = [];
    const all: string[] = [];
    const off = client.onEvent('SHUTDOWN', (e) => shutdowns.push(e));
    client.onEvent('*', (e) => all.push(e.event));
    fake.event('SHUTDOWN', { guest: true, reason: 'guest-shutdown' });
    fake.event('RESET', { guest: false, reason: 'host-qmp-system-reset' });
    // A command round trip orders us after the events.
    await client.execute('ping');
    expect(shutdowns).toEqual([
      {
        event: 'SHUTDOWN',
        data: { guest: true, reason: 'guest-shutdown' },
        timestamp: { seconds: 1700000000, microseconds: 5 },
      },
    ]);
    expect(all).toEqual(['SHUTDOWN', 'RESET']);
    off();
    fake.event('SHUTDOWN');
    await client.execute('ping');
    expect(shutdowns).toHaveLength(1);
    expect(all).toEqual(['SHUTDOWN', 'RESET', 'SHUTDOWN']);
  });

  it('rejects waiting commands and tells close listeners when QEMU goes away', async () => {
    fake.handler = () => null;
    const client = await connect();
    const closed = new Promise<Error | null>((r) => client.onClose(r));
    const waiting = client.execute('hang', undefined, { timeoutMs: 5000 }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    for (const s of fake.sockets) s.destroy();
    expect(await waiting).toBeInstanceOf(QmpConnectionError);
    expect(await closed).toBeNull();
    expect(client.connected).toBe(false);
    await expect(client.execute('later')).rejects.toBeInstanceOf(QmpConnectionError);
  });

  it('close() rejects pending commands and ends the connection on the server side', async () => {
    fake.handler = () => null;
    const client = await connect();
    const waiting = client.execute('hang').catch((e: unknown) => e);
    client.close();
    expect(await waiting).toBeInstanceOf(QmpConnectionError);
    await expect.poll(() => fake.sockets.size).toBe(0);
  });

  it('fails to connect with a typed error: no socket, a silent server, something that is not QMP', async () => {
    const missing = await QmpClient.connect(join(dir, 'nope.sock')).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(QmpConnectionError);
    expect((missing as QmpConnectionError).errno).toBe('ENOENT');

    fake.greeting = '';
    const silent = await QmpClient.connect(path, { timeoutMs: 150 }).catch((e: unknown) => e);
    expect(silent).toBeInstanceOf(QmpTimeoutError);
    expect((silent as QmpTimeoutError).command).toBe('greeting');

    fake.greeting = 'this is not json';
    const garbage = await QmpClient.connect(path, { timeoutMs: 1000 }).catch((e: unknown) => e);
    expect(garbage).toBeInstanceOf(QmpConnectionError);
    expect((garbage as Error).message).toMatch(/not JSON/);
  });

  it('connectWithRetry waits for a socket that appears later', async () => {
    await fake.stop();
    const later = join(dir, 'later.sock');
    const started = Date.now();
    const connecting = connectWithRetry(later, { attempts: 30, delayMs: 50 });
    await new Promise((r) => setTimeout(r, 300));
    fake = await FakeQmp.start(later);
    const client = await connecting;
    clients.push(client);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(client.greeting.version.package).toBe('fake');
  });

  it('connectWithRetry gives up after its attempts with the last error', async () => {
    const started = Date.now();
    const err = await connectWithRetry(join(dir, 'never.sock'), { attempts: 3, delayMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpConnectionError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
  });
});
