import { mkdir, writeFile, readFile, chmod, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isIP } from 'node:net';
import type { Config } from './config.js';
import { issueClientCert, loadOrCreatePki, signCsr, certificateSerial } from './ca/index.js';
import { openStore, type Store } from './db/index.js';
import { buildApp, type App } from './app.js';
import { buildServices, seed, type ControlPki } from './wiring.js';

/** Paths inside the data directory. */
export function dataPaths(dataDir: string) {
  return {
    pki: path.join(dataDir, 'pki'),
    caCert: path.join(dataDir, 'pki', 'ca.crt'),
    sqlite: path.join(dataDir, 'floe.db'),
    agent: path.join(dataDir, 'agent'),
  };
}

/** Names the server certificate must cover. */
function certNames(config: Config): { dnsNames: string[]; ipAddresses: string[] } {
  const names = new Set<string>(['localhost', os.hostname(), ...config.certNames]);
  const ips = new Set<string>(['127.0.0.1', '::1']);
  for (const n of [config.host, new URL(config.publicUrl).hostname.replace(/^\[|\]$/g, '')]) {
    if (n === '0.0.0.0' || n === '::') continue;
    if (isIP(n)) ips.add(n);
    else names.add(n);
  }
  for (const n of [...names])
    if (isIP(n)) {
      names.delete(n);
      ips.add(n);
    }
  return { dnsNames: [...names], ipAddresses: [...ips] };
}

/** Open the PKI of the data directory, creating the CA and server certificate on first start. */
export async function openPki(
  config: Config,
): Promise<ControlPki & { ca: { certPem: string; keyPem: string }; created: boolean }> {
  const { ca, server, created } = await loadOrCreatePki(dataPaths(config.dataDir).pki, certNames(config));
  return {
    ca,
    created,
    caPem: ca.certPem,
    server,
    signCsr: (csrPem, hostId) => signCsr(ca, csrPem, { commonName: hostId }),
  };
}

/** Open the configured store: PostgreSQL when FLOE_DATABASE_URL is set, else SQLite in the data directory. */
export async function openConfiguredStore(config: Config): Promise<Store> {
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  return config.databaseUrl
    ? openStore({ url: config.databaseUrl })
    : openStore({ sqlitePath: dataPaths(config.dataDir).sqlite });
}

/** A DNS label made from this machine's hostname, for the local host record. */
export function localHostName(): string {
  const label = os
    .hostname()
    .toLowerCase()
    .split('.')[0]!
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return label || 'local';
}

async function writeAtomic(file: string, data: string, mode: number): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, file);
}

/** What `floed init` reports. */
export interface InitResult {
  url: string;
  ca_file: string;
  /** The new admin token, only on the very first start; never stored in clear. */
  admin_token: string | null;
  database: 'sqlite' | 'postgres';
  host: { id: string; name: string };
  agent_dir: string;
}

/**
 * Prepare a data directory (idempotent): database and migrations, CA and
 * server certificate, default project and machine types, the first admin
 * token, and the local host with its agent's certificate.
 */
export async function init(config: Config): Promise<InitResult> {
  const pki = await openPki(config);
  const store = await openConfiguredStore(config);
  let closeChain = (): Promise<void> => Promise.resolve();
  try {
    const silent = {
      level: 'silent',
      info() {},
      warn() {},
      error() {},
      debug() {},
      trace() {},
      fatal() {},
      child() {
        return silent;
      },
    } as never;
    const services = buildServices(store, config, pki, silent);
    closeChain = () => services.authChain.close();
    await seed(services);
    const adminToken = await services.tokens.bootstrapAdmin();
    const name = localHostName();
    const agentDir = dataPaths(config.dataDir).agent;
    await mkdir(agentDir, { recursive: true, mode: 0o700 });
    let keyPem: string | null = null;
    let certPem: string | null = null;
    const host = await services.hosts.ensureLocal(name, async (hostId) => {
      const cert = await issueClientCert(pki.ca, { commonName: hostId });
      keyPem = cert.keyPem;
      certPem = cert.certPem;
      return { serial: certificateSerial(cert.certPem) };
    });
    const agentJson = path.join(agentDir, 'agent.json');
    let haveCert = true;
    try {
      await readFile(path.join(agentDir, 'agent.crt'));
    } catch {
      haveCert = false;
    }
    if (!haveCert && certPem === null) {
      // The host exists but its files were lost: issue the local agent a new certificate.
      const cert = await issueClientCert(pki.ca, { commonName: host.id });
      keyPem = cert.keyPem;
      certPem = cert.certPem;
      await services.hosts.setCertSerial(host.id, certificateSerial(cert.certPem));
    }
    if (certPem !== null && keyPem !== null) {
      await writeAtomic(path.join(agentDir, 'agent.key'), keyPem, 0o600);
      await writeAtomic(path.join(agentDir, 'agent.crt'), certPem, 0o644);
    }
    await writeAtomic(path.join(agentDir, 'ca.crt'), pki.caPem, 0o644);
    await writeAtomic(
      agentJson,
      `${JSON.stringify({ server: config.publicUrl, host_id: host.id, host_name: name }, null, 2)}\n`,
      0o600,
    );
    return {
      url: config.publicUrl,
      ca_file: dataPaths(config.dataDir).caCert,
      admin_token: adminToken,
      database: store.dialect,
      host: { id: host.id, name },
      agent_dir: agentDir,
    };
  } finally {
    await closeChain();
    await store.close();
  }
}

/** Start the control plane: open everything, listen, and return the running app. */
export async function start(config: Config): Promise<App & { store: Store }> {
  const pki = await openPki(config);
  const store = await openConfiguredStore(config);
  const app = await buildApp({ store, config, pki });
  await seed(app.services);
  await app.http.listen({ host: config.host, port: config.port });
  return {
    ...app,
    store,
    async close() {
      await app.close();
      await store.close();
    },
  };
}
