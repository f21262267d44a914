import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { FloeError } from '@floe/api';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** A certificate and its private key, both PEM (the key is PKCS#8). */
export interface Pki {
  certPem: string;
  keyPem: string;
}

const KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Certificates start a little in the past so small clock differences between hosts do not matter. */
const BACKDATE_MS = 5 * 60 * 1000;
/** A server certificate closer than this to its end is issued again at start. */
const RENEW_BEFORE_MS = 30 * DAY_MS;

async function newKeyPair(): Promise<CryptoKeyPair> {
  return await webcrypto.subtle.generateKey(KEY_ALG, true, ['sign', 'verify']);
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importSigningKey(keyPem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(keyPem)[0];
  if (!der) throw new Error('no PEM block in private key');
  return webcrypto.subtle.importKey('pkcs8', der, KEY_ALG, false, ['sign']);
}

// Positive 128-bit serial (RFC 5280 allows up to 20 octets). The first byte is
// 0x10-0x7f: no sign padding and no leading zero digit, so every tool prints
// the same hex digits (Node's TLS peer certificate uses upper case).
function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x6f) | 0x10;
  return bytes.toString('hex');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * DAY_MS) };
}

// Escapes the characters that are special in an RFC 4514 distinguished name.
function cn(value: string): string {
  return `CN=${value.replace(/([\\,+"<>;=#])/g, '\\$1')}`;
}

async function issue(
  ca: Pki,
  opts: { subject: string; publicKey: x509.PublicKeyType; days: number; extensions: x509.Extension[] },
): Promise<x509.X509Certificate> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const signingKey = await importSigningKey(ca.keyPem);
  return x509.X509CertificateGenerator.create({
    serialNumber: newSerial(),
    subject: opts.subject,
    issuer: caCert.subject,
    ...validity(opts.days),
    signingAlgorithm: SIGN_ALG,
    // @peculiar/x509's PublicKeyType names a WebCrypto type its declarations leave unresolved for the linter.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment
    publicKey: opts.publicKey,
    signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      ...opts.extensions,
      await x509.SubjectKeyIdentifierExtension.create(opts.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
}

/** Create floe's own certificate authority: a self-signed ECDSA P-256 CA (default "floe CA", 10 years). */
export async function createCa(opts: { commonName?: string; days?: number } = {}): Promise<Pki> {
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: newSerial(),
    name: cn(opts.commonName ?? 'floe CA'),
    ...validity(opts.days ?? 3650),
    signingAlgorithm: SIGN_ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

/** Issue the control plane's TLS server certificate (serverAuth) for these DNS names and IP addresses. */
export async function issueServerCert(
  ca: Pki,
  opts: { dnsNames: string[]; ipAddresses: string[]; days?: number },
): Promise<Pki> {
  if (opts.dnsNames.length + opts.ipAddresses.length === 0) {
    throw new FloeError('validation_failed', 'a server certificate needs at least one DNS name or IP address', {
      field: 'dnsNames',
    });
  }
  for (const ip of opts.ipAddresses) {
    if (isIP(ip) === 0)
      throw new FloeError('validation_failed', `"${ip}" is not an IP address`, { field: 'ipAddresses' });
  }
  const keys = await newKeyPair();
  const names: x509.JsonGeneralNames = [
    ...opts.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...opts.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
  ];
  const cert = await issue(ca, {
    subject: cn(opts.dnsNames[0] ?? opts.ipAddresses[0]!),
    publicKey: keys.publicKey,
    days: opts.days ?? 825,
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

function clientExtensions(): x509.Extension[] {
  return [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
  ];
}

/** Issue a client certificate with a fresh key (clientAuth); used to set up the local agent without a CSR. */
export async function issueClientCert(ca: Pki, opts: { commonName: string; days?: number }): Promise<Pki> {
  const keys = await newKeyPair();
  const cert = await issue(ca, {
    subject: cn(opts.commonName),
    publicKey: keys.publicKey,
    days: opts.days ?? 825,
    extensions: clientExtensions(),
  });
  return { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey) };
}

/**
 * Sign an agent's PKCS#10 request. The request's own subject is ignored: the
 * certificate names `opts.commonName` (the host), so an agent cannot choose its identity.
 */
export async function signCsr(
  ca: Pki,
  csrPem: string,
  opts: { commonName: string; days?: number },
): Promise<{ certPem: string; serial: string }> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new FloeError('invalid_csr', `the certificate signing request cannot be parsed: ${(err as Error).message}`);
  }
  let valid = false;
  try {
    valid = await csr.verify();
  } catch (err) {
    throw new FloeError('invalid_csr', `the certificate signing request cannot be verified: ${(err as Error).message}`);
  }
  if (!valid) throw new FloeError('invalid_csr', 'the signature of the certificate signing request is wrong');
  const cert = await issue(ca, {
    subject: cn(opts.commonName),
    publicKey: csr.publicKey,
    days: opts.days ?? 825,
    extensions: clientExtensions(),
  });
  return { certPem: cert.toString('pem'), serial: cert.serialNumber.toLowerCase() };
}

/** The serial number of a PEM certificate, as lower-case hex (what `signCsr` returns and hosts.cert_serial stores). */
export function certificateSerial(certPem: string): string {
  return new x509.X509Certificate(certPem).serialNumber.toLowerCase();
}

/** The subject common name of a PEM certificate, or null when it has none. */
export function commonNameOf(certPem: string): string | null {
  return new x509.X509Certificate(certPem).subjectName.getField('CN')[0] ?? null;
}

// One spelling per address, so "::1" and "0:0:0:0:0:0:0:1" compare equal.
function canonicalIp(ip: string): string {
  if (isIP(ip) === 6) return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  return ip;
}

/** True when `certPem` names every DNS name and IP address asked for, is signed by `ca` and is not near its end. */
export async function serverCertCovers(
  ca: Pki,
  certPem: string,
  opts: { dnsNames: string[]; ipAddresses: string[] },
): Promise<boolean> {
  const cert = new x509.X509Certificate(certPem);
  const caCert = new x509.X509Certificate(ca.certPem);
  if (cert.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS) return false;
  if (!(await cert.verify({ publicKey: caCert.publicKey, signatureOnly: true }))) return false;
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.toJSON() ?? [];
  const dns = new Set(names.filter((n) => n.type === 'dns').map((n) => n.value.toLowerCase()));
  const ips = new Set(names.filter((n) => n.type === 'ip').map((n) => canonicalIp(n.value)));
  return (
    opts.dnsNames.every((d) => dns.has(d.toLowerCase())) && opts.ipAddresses.every((ip) => ips.has(canonicalIp(ip)))
  );
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

// Write a temporary file and rename it over the target, so a crash never leaves half a key.
async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/**
 * Load the CA and server certificate from `dir` (ca.crt, ca.key, server.crt,
 * server.key), creating what is missing. The server certificate is issued
 * again when it does not cover the requested names, is not signed by the CA,
 * or nears its end. `created` is true when a new CA was made.
 */
export async function loadOrCreatePki(
  dir: string,
  opts: { dnsNames: string[]; ipAddresses: string[] },
): Promise<{ ca: Pki; server: Pki; created: boolean }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const paths = {
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
  };

  let created = false;
  const caCert = await readIfExists(paths.caCert);
  const caKey = await readIfExists(paths.caKey);
  let ca: Pki;
  if (caCert !== null && caKey !== null) {
    ca = { certPem: caCert, keyPem: caKey };
  } else if (caCert === null && caKey === null) {
    ca = await createCa();
    await writeAtomic(paths.caKey, ca.keyPem, 0o600);
    await writeAtomic(paths.caCert, ca.certPem, 0o644);
    created = true;
  } else {
    // Never replace half a CA silently: every agent certificate depends on it.
    throw new Error(`incomplete CA in ${dir}: ca.crt and ca.key must both exist or both be absent`);
  }

  const serverCert = await readIfExists(paths.serverCert);
  const serverKey = await readIfExists(paths.serverKey);
  let server: Pki;
  if (!created && serverCert !== null && serverKey !== null && (await serverCertCovers(ca, serverCert, opts))) {
    server = { certPem: serverCert, keyPem: serverKey };
  } else {
    server = await issueServerCert(ca, opts);
    await writeAtomic(paths.serverKey, server.keyPem, 0o600);
    await writeAtomic(paths.serverCert, server.certPem, 0o644);
  }
  return { ca, server, created };
}
