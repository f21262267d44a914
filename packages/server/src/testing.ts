import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildApp, type App } from './app.js';
import type { AuthWiring } from './auth-wiring.js';
import type { ControlPki, Services } from './wiring.js';
import { certificateSerial, createCa, issueClientCert, issueServerCert, signCsr, type Pki } from './ca/index.js';
import { loadConfig, type Config } from './config.js';
import type { Store } from './db/index.js';
import type { Principal } from './services/context.js';
import type { HostFacts } from '@floe/api';

/** A control plane for tests: real store, real HTTP(S) on 127.0.0.1, a fresh CA. */
export interface TestControlPlane {
  app: App;
  store: Store;
  config: Config;
  /** Base URL, e.g. https://127.0.0.1:41234 */
  url: string;
  ca: Pki;
  pki: ControlPki;
  adminToken: string;
  admin: Principal;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * Tests call from 127.0.0.1 many times a second, also without tokens on purpose: limits far above that.
 * A test of the limits themselves passes '' for each, which means the production default.
 */
const TEST_RATE_LIMITS = {
  FLOE_RATE_LIMIT_PUBLIC: '1000000',
  FLOE_RATE_LIMIT_JOIN: '1000000',
  FLOE_RATE_LIMIT_AUTH_FAILURES: '1000000',
};

/** Make a PKI for tests (fresh CA, server cert for 127.0.0.1, ::1, localhost and any `extraIps`). */
async function testPki(extraIps: readonly string[] = []): Promise<{ ca: Pki; pki: ControlPki }> {
  const ca = await createCa({ commonName: 'floe test CA' });
  const server = await issueServerCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1', ...extraIps] });
  return { ca, pki: { caPem: ca.certPem, server, signCsr: (csr, hostId) => signCsr(ca, csr, { commonName: hostId }) } };
}

/**
 * Start a control plane on an ephemeral port over `store` (which it closes on
 * close). `env` overrides FLOE_* settings, e.g. a short heartbeat. `host` is
 * the IPv4 address it listens on (127.0.0.1 by default; an address of a veth
 * lets agents inside network namespaces reach it); its certificate names it.
 */
export async function startTestControlPlane(
  store: Store,
  env: Record<string, string> = {},
  /** Share the CA of another control plane (several control planes, one database). */
  shared?: { ca: Pki; pki: ControlPki },
  host = '127.0.0.1',
  /** Authentication beyond floe's tokens (OpenID logins, an external checker), made from the services. */
  auth?: (services: Services) => AuthWiring,
): Promise<TestControlPlane> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'floe-cp-'));
  const config = loadConfig({
    FLOE_DATA: dataDir,
    FLOE_LISTEN: `${host}:0`,
    FLOE_LOG_LEVEL: 'warn',
    ...TEST_RATE_LIMITS,
    ...env,
  });
  const { ca, pki } = shared ?? (await testPki(host === '127.0.0.1' ? [] : [host]));
  const app = await buildApp({
    store,
    config,
    pki,
    logger: { level: env.FLOE_LOG_LEVEL ?? 'warn' },
    ...(auth !== undefined ? { auth } : {}),
  });
  const { seed } = await import('./wiring.js');
  await seed(app.services);
  // With a shared database the first control plane made the admin token; others get ''.
  const adminToken = (await app.services.tokens.bootstrapAdmin()) ?? '';
  await app.http.listen({ host, port: 0 });
  const port = (app.http.server.address() as AddressInfo).port;
  const url = `${config.tls ? 'https' : 'http'}://${host}:${port}`;
  return {
    app,
    store,
    config: { ...config, publicUrl: url },
    url,
    ca,
    pki,
    adminToken,
    dataDir,
    admin: { actor: 'test-admin', admin: true, projects: new Set() },
    async close() {
      await app.close();
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Register a host on a test control plane and write an agent data directory
 * for it (key, certificate, CA, agent.json), as `floed init` does for the
 * local host. `dataDir` defaults to a new temporary directory.
 */
export async function prepareAgentDir(
  cp: TestControlPlane,
  name: string,
  dataDir?: string,
): Promise<{ hostId: string; dataDir: string }> {
  let certPem = '';
  let keyPem = '';
  const { id } = await cp.app.services.hosts.ensureLocal(name, async (hostId) => {
    const cert = await issueClientCert(cp.ca, { commonName: hostId });
    certPem = cert.certPem;
    keyPem = cert.keyPem;
    return { serial: certificateSerial(cert.certPem) };
  });
  const dir = dataDir ?? (await mkdtemp(path.join(os.tmpdir(), `floe-agent-${name}-`)));
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'agent.key'), keyPem, { mode: 0o600 });
  await writeFile(path.join(dir, 'agent.crt'), certPem);
  await writeFile(path.join(dir, 'ca.crt'), cp.ca.certPem);
  await writeFile(path.join(dir, 'agent.json'), JSON.stringify({ server: cp.url, host_id: id, host_name: name }));
  return { hostId: id, dataDir: dir };
}

/** Facts of a test host with room for anything (64 CPUs, 128 GiB). */
const TEST_HOST_FACTS: HostFacts = {
  hostname: 'test',
  agent_version: '0.0.0',
  arch: 'x86_64',
  kernel: '6.1.0',
  cpus: 64,
  memory_mib: 131_072,
  disk_free_gib: 100,
  qemu_version: null,
  kvm: { present: false, usable: false, detail: 'test host' },
  accelerator: 'tcg',
  wireguard_kernel: false,
  vm_driver: 'fake',
};

/** Register a host and mark it online, as its agent's hello would. */
export async function onlineTestHost(app: App, name: string, facts: Partial<HostFacts> = {}): Promise<string> {
  const { id } = await app.services.hosts.ensureLocal(name, async () => ({ serial: 'x' }));
  await app.services.hosts.markOnline(id, { ...TEST_HOST_FACTS, hostname: name, ...facts }, 'test');
  return id;
}

/** An answer of `injectJson`, its body decoded. */
export interface InjectedResponse {
  status: number;
  headers: Record<string, unknown>;
  body: any;
}

/** A JSON request through the control plane's full HTTP stack (hooks, auth, validation), without a socket. */
export async function injectJson(
  cp: TestControlPlane,
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  url: string,
  body?: unknown,
  token = cp.adminToken,
): Promise<InjectedResponse> {
  const res = await cp.app.http.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined
        ? {}
        : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }),
    },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
  return { status: res.statusCode, headers: res.headers, body: res.body === '' ? null : JSON.parse(res.body) };
}
