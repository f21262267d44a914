import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createCa, issueServerCert } from './ca/index.js';

/**
 * A web server on 127.0.0.1 that serves image files the way real and broken
 * mirrors do, for image import tests (plain HTTP, and HTTPS with its own CA):
 *
 * - `/files/NAME`: the file, with Content-Length; `/chunked/NAME`: without
 * - `/sums/NAME`: a text file (SHA256SUMS and the like)
 * - `/redirect/N/NAME`: N redirects, then `/files/NAME`; `/to/URL`: a redirect to the (encoded) URL
 * - `/stall/NAME`: half the file, then silence; `/silent`: no answer at all
 * - `/truncate/NAME`: Content-Length of the whole file, half of it, then the connection closes
 * - `/slow/NAME`: 64 KiB every 100 ms
 * - `/html`: a web page (text/html); `/html-octet`: a web page sent as application/octet-stream
 * - anything else: 404
 */
export interface ImageServer {
  /** http://127.0.0.1:PORT */
  url: string;
  /** https://127.0.0.1:PORT, certificate from `caPem` */
  httpsUrl: string;
  caPem: string;
  /** Files by name; tests add their own. */
  files: Map<string, Buffer>;
  /** Paths requested, in order. */
  requests: string[];
  /** Connections open right now (both servers). */
  openConnections(): number;
  close(): Promise<void>;
}

const PAGE = Buffer.from(
  '<!DOCTYPE html>\n<html><head><title>Not here</title></head><body><h1>Download page</h1></body></html>\n',
);

/** Start an ImageServer with `files`. */
export async function startImageServer(files: Record<string, Buffer> = {}): Promise<ImageServer> {
  const state = { files: new Map(Object.entries(files)), requests: [] as string[] };
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    state.requests.push(path);
    const [, route = '', ...rest] = path.split('/');
    const name = decodeURIComponent(rest.join('/'));
    const file = state.files.get(name);
    const octet = (length: number | null) =>
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        ...(length === null ? {} : { 'content-length': String(length) }),
      });
    if (route === 'redirect') {
      const n = Number(rest[0]);
      const target = n <= 1 ? `/files/${rest.slice(1).join('/')}` : `/redirect/${n - 1}/${rest.slice(1).join('/')}`;
      res.writeHead(302, { location: target }).end();
    } else if (route === 'to') {
      res.writeHead(302, { location: name }).end();
    } else if (route === 'html') {
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': String(PAGE.length) })
        .end(PAGE);
    } else if (route === 'html-octet') {
      res
        .writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(PAGE.length) })
        .end(PAGE);
    } else if (route === 'silent') {
      // Never answer: the client's connect (headers) timeout must end it.
    } else if (file === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    } else if (route === 'files') {
      octet(file.length);
      res.end(file);
    } else if (route === 'chunked') {
      octet(null);
      res.end(file);
    } else if (route === 'sums') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(file);
    } else if (route === 'stall') {
      octet(file.length);
      res.write(file.subarray(0, file.length >> 1));
    } else if (route === 'truncate') {
      octet(file.length);
      res.write(file.subarray(0, file.length >> 1), () => res.socket?.destroy());
    } else if (route === 'slow') {
      octet(file.length);
      let at = 0;
      const tick = setInterval(() => {
        const next = Math.min(file.length, at + 64 * 1024);
        res.write(file.subarray(at, next));
        at = next;
        if (at >= file.length) {
          clearInterval(tick);
          timers.delete(tick);
          res.end();
        }
      }, 100);
      timers.add(tick);
      res.on('close', () => {
        clearInterval(tick);
        timers.delete(tick);
      });
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  };
  const ca = await createCa({ commonName: 'image server test CA' });
  const cert = await issueServerCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const plain = http.createServer(handler);
  const secure = https.createServer({ cert: cert.certPem, key: cert.keyPem }, handler);
  for (const server of [plain, secure]) {
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  }
  const port = (s: http.Server) => (s.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port(plain)}`,
    httpsUrl: `https://127.0.0.1:${port(secure)}`,
    caPem: ca.certPem,
    files: state.files,
    requests: state.requests,
    openConnections: () => sockets.size,
    async close() {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      await Promise.all([plain, secure].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
