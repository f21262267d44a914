import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { request, createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FloeError } from '@floe/api';
import {
  certificateSerial,
  commonNameOf,
  createCa,
  issueClientCert,
  issueServerCert,
  loadOrCreatePki,
  signCsr,
  type Pki,
} from './index.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

async function makeCsr(commonName: string): Promise<{ csrPem: string; keyPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: alg,
  });
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { csrPem: csr.toString('pem'), keyPem: x509.PemConverter.encode(der, 'PRIVATE KEY') };
}

interface Seen {
  authorized: boolean;
  cn: string | null;
  error: string | null;
  serial?: string;
}

// GET / over TLS to the test server; resolves with what the server saw of the client.
function get(port: number, opts: { ca: string; cert?: string; key?: string; host?: string }): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: opts.host ?? '127.0.0.1', port, path: '/', ca: [opts.ca], cert: opts.cert, key: opts.key, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(JSON.parse(body) as Seen));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('floe CA', () => {
  let ca: Pki;
  let other: Pki;
  let server: Server;
  let port: number;

  beforeAll(async () => {
    ca = await createCa();
    other = await createCa({ commonName: 'someone else' });
    const serverPki = await issueServerCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] });
    server = createServer(
      {
        cert: serverPki.certPem,
        key: serverPki.keyPem,
        ca: [ca.certPem],
        requestCert: true,
        rejectUnauthorized: false,
      },
      (req, res) => {
        const socket = req.socket as TLSSocket;
        const peer = socket.getPeerCertificate();
        const seen: Seen = {
          authorized: socket.authorized,
          cn: typeof peer.subject?.CN === 'string' ? peer.subject.CN : null,
          error: socket.authorizationError ? String(socket.authorizationError) : null,
          ...(peer.serialNumber ? { serial: peer.serialNumber } : {}),
        };
        res.end(JSON.stringify(seen));
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('creates a CA certificate with the CA extensions', async () => {
    const cert = new x509.X509Certificate(ca.certPem);
    expect(cert.subject).toBe('CN=floe CA');
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.ca).toBe(true);
    expect(bc?.critical).toBe(true);
    const ku = cert.getExtension(x509.KeyUsagesExtension);
    expect(ku?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(cert.notAfter.getTime() - Date.now()).toBeGreaterThan(9 * 365 * 24 * 3600 * 1000);
    expect(await cert.isSelfSigned()).toBe(true);
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it("authorizes a client certificate issued by floe's CA and reads its CN", async () => {
    const client = await issueClientCert(ca, { commonName: 'host-a' });
    const seen = await get(port, { ca: ca.certPem, cert: client.certPem, key: client.keyPem });
    expect(seen).toMatchObject({ authorized: true, cn: 'host-a', error: null });
    expect(commonNameOf(client.certPem)).toBe('host-a');
  });

  it('does not authorize a client certificate from another CA', async () => {
    const stranger = await issueClientCert(other, { commonName: 'host-a' });
    const seen = await get(port, { ca: ca.certPem, cert: stranger.certPem, key: stranger.keyPem });
    expect(seen.authorized).toBe(false);
    expect(seen.error).not.toBeNull();
  });

  it('does not authorize a client without a certificate', async () => {
    const seen = await get(port, { ca: ca.certPem });
    expect(seen.authorized).toBe(false);
  });

  it("serves a certificate that a client trusting only floe's CA accepts, by IP and by name", async () => {
    await expect(get(port, { ca: ca.certPem })).resolves.toBeDefined();
    await expect(get(port, { ca: ca.certPem, host: 'localhost' })).resolves.toBeDefined();
    await expect(get(port, { ca: other.certPem })).rejects.toThrow(/self-signed|unable to verify|certificate/i);
  });

  it('signs a CSR with the CN it is told, not the one asked for', async () => {
    const { csrPem, keyPem } = await makeCsr('root');
    const { certPem, serial } = await signCsr(ca, csrPem, { commonName: 'host-b' });
    expect(commonNameOf(certPem)).toBe('host-b');
    expect(certificateSerial(certPem)).toBe(serial);
    expect(serial).toMatch(/^[0-9a-f]+$/);
    const cert = new x509.X509Certificate(certPem);
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth]);
    const seen = await get(port, { ca: ca.certPem, cert: certPem, key: keyPem });
    expect(seen).toMatchObject({ authorized: true, cn: 'host-b', error: null });
    // What the TLS layer reports matches the stored serial, up to letter case.
    expect(seen.serial?.toLowerCase()).toBe(serial);
  });

  it('rejects a tampered CSR and garbage with invalid_csr', async () => {
    const { csrPem } = await makeCsr('tampered-host');
    const der = Buffer.from(x509.PemConverter.decode(csrPem)[0]!);
    const at = der.indexOf(Buffer.from('tampered-host'));
    expect(at).toBeGreaterThan(0);
    der[at] = 'T'.charCodeAt(0);
    const tampered = x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
    const err = await signCsr(ca, tampered, { commonName: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloeError);
    expect((err as FloeError).code).toBe('invalid_csr');
    await expect(signCsr(ca, 'not a csr', { commonName: 'x' })).rejects.toMatchObject({ code: 'invalid_csr' });
  });

  it('creates, reuses and renews the PKI files', async () => {
    const dir = join(await mkdtemp(join(tmpdir(), 'floe-ca-test-')), 'pki');
    try {
      const first = await loadOrCreatePki(dir, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
      expect(first.created).toBe(true);
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      expect((await stat(join(dir, 'ca.key'))).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'server.key'))).mode & 0o777).toBe(0o600);

      const again = await loadOrCreatePki(dir, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
      expect(again.created).toBe(false);
      expect(again.ca).toEqual(first.ca);
      expect(again.server).toEqual(first.server);

      const wider = await loadOrCreatePki(dir, {
        dnsNames: ['localhost', 'floe.example'],
        ipAddresses: ['127.0.0.1', '::1'],
      });
      expect(wider.created).toBe(false);
      expect(wider.ca).toEqual(first.ca);
      expect(wider.server.certPem).not.toBe(first.server.certPem);
      const san = new x509.X509Certificate(wider.server.certPem).getExtension(x509.SubjectAlternativeNameExtension);
      expect(san?.names.toJSON().map((n) => n.value)).toEqual(
        expect.arrayContaining(['floe.example', 'localhost', '127.0.0.1']),
      );
      const reused = await loadOrCreatePki(dir, { dnsNames: ['floe.example'], ipAddresses: ['0:0:0:0:0:0:0:1'] });
      expect(reused.server).toEqual(wider.server);
    } finally {
      await rm(join(dir, '..'), { recursive: true, force: true });
    }
  });
});
