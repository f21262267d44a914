import net from 'node:net';

/** What the proxy does with connections: pass them on, refuse them, or answer as a server still starting. */
export type PgProxyMode = 'up' | 'down' | 'starting';

/** A TCP proxy in front of PostgreSQL that a test can cut and restore. */
export interface PgProxy {
  /** The port it listens on (127.0.0.1), the same through cuts. */
  readonly port: number;
  /** `url` (a postgres:// URL of the real server) pointed at the proxy instead. */
  via(url: string): string;
  /**
   * As a server that shuts down: open connections get 57P01 (terminating connection due to administrator
   * command) and are closed, and new ones are refused (ECONNREFUSED) until `restore` or `startingUp`.
   */
  cut(): Promise<void>;
  /** As a server starting up: new connections are answered 57P03 (the database system is starting up). */
  startingUp(): Promise<void>;
  /** Pass connections on again. */
  restore(): Promise<void>;
  readonly mode: PgProxyMode;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/** A PostgreSQL ErrorResponse message (severity FATAL) with `code` and `message`. */
function fatal(code: string, message: string): Buffer {
  const fields = Buffer.concat(
    [
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', code],
      ['M', message],
    ].map(([k, v]) => Buffer.from(`${k}${v}\0`, 'utf8')),
  );
  const body = Buffer.concat([fields, Buffer.from([0])]);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'ascii');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** One client connection and its connection to the server. */
interface Pair {
  client: net.Socket;
  server: net.Socket;
  /** Server bytes not yet a whole message: only whole messages are passed on, so an error can follow them. */
  pending: Buffer;
}

/**
 * Starts a proxy on 127.0.0.1 to PostgreSQL at `target`. It forwards the server's messages whole (it
 * reads the protocol's framing, nothing else), so that on `cut` it can end each connection the way a
 * shutting-down server does, with a FATAL 57P01 after the last whole message.
 */
export async function startPgProxy(target: { host: string; port: number }): Promise<PgProxy> {
  const pairs = new Set<Pair>();
  let mode: PgProxyMode = 'up';
  let accepted = 0;
  let listening: net.Server | null = null;
  let port = 0;

  const accept = (client: net.Socket) => {
    accepted++;
    client.on('error', () => undefined);
    if (mode === 'starting') {
      client.once('data', () => client.end(fatal('57P03', 'the database system is starting up')));
      return;
    }
    const server = net.connect(target.port, target.host);
    const pair: Pair = { client, server, pending: Buffer.alloc(0) };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    server.on('error', drop);
    client.on('close', drop);
    server.on('close', drop);
    client.on('data', (d: Buffer) => server.write(d));
    server.on('data', (d: Buffer) => {
      let buf = Buffer.concat([pair.pending, d]);
      let whole = 0;
      // Before authentication a server may answer an SSLRequest with one byte ('N'); pg sends none by default.
      while (buf.length - whole >= 5) {
        const len = buf.readInt32BE(whole + 1);
        if (buf.length - whole < 1 + len) break;
        whole += 1 + len;
      }
      if (whole > 0) client.write(buf.subarray(0, whole));
      buf = buf.subarray(whole);
      pair.pending = buf;
    });
  };

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const srv = net.createServer(accept);
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => {
        port = (srv.address() as net.AddressInfo).port;
        listening = srv;
        resolve();
      });
    });
  const unlisten = () =>
    new Promise<void>((resolve) => {
      const srv = listening;
      listening = null;
      if (srv === null) return resolve();
      srv.close(() => resolve());
    });

  await listen();
  return {
    get port() {
      return port;
    },
    get mode() {
      return mode;
    },
    get accepted() {
      return accepted;
    },
    via(url: string): string {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    async cut() {
      mode = 'down';
      const closing = unlisten();
      for (const pair of [...pairs]) {
        pairs.delete(pair);
        pair.server.destroy();
        pair.client.end(fatal('57P01', 'terminating connection due to administrator command'));
        setTimeout(() => pair.client.destroy(), 100).unref();
      }
      await closing;
    },
    async startingUp() {
      mode = 'starting';
      if (listening === null) await listen();
    },
    async restore() {
      mode = 'up';
      if (listening === null) await listen();
    },
    async close() {
      mode = 'down';
      for (const pair of [...pairs]) {
        pair.client.destroy();
        pair.server.destroy();
      }
      pairs.clear();
      await unlisten();
    },
  };
}
