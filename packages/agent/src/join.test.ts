import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FloeError, type HostJoin } from '@floe/api';
// The agent never depends on the server package; only this test borrows its CA to make real certificates.
import { commonNameOf, createCa, issueServerCert, signCsr, type Pki } from '../../server/src/ca/index.js';
import { joinControlPlane, normalizeServerUrl } from './join.js';
import { AgentState } from './state.js';

const TOKEN = 'join_0123456789abcdef';

describe('joinControlPlane', () => {
  let ca: Pki;
  let server: Server;
  let url: string;
  let dir: string;
  const requests: HostJoin[] = [];

  beforeAll(async () => {
    ca = await createCa();
    const serverPki = await issueServerCert(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    server = createServer({ cert: serverPki.certPem, key: serverPki.keyPem }, (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on(
        'end',
        () =>
          void (async () => {
            res.setHeader('content-type', 'application/json');
            if (req.method !== 'POST' || req.url !== '/v1/hosts/join') {
              res.statusCode = 404;
              res.end(JSON.stringify({ error: { code: 'not_found', message: 'no route' } }));
              return;
            }
            const joinReq = JSON.parse(body) as HostJoin;
            requests.push(joinReq);
            if (joinReq.token !== TOKEN) {
              res.statusCode = 401;
              res.end(
                JSON.stringify({
                  error: { code: 'join_token_invalid', message: 'the join token is unknown, used or expired' },
                }),
              );
              return;
            }
            try {
              const { certPem } = await signCsr(ca, joinReq.csr, { commonName: joinReq.name });
              res.end(
                JSON.stringify({
                  host: { id: 'host_01JB8X0Q3E6M2T9K4V7W5YB1C3', name: joinReq.name },
                  certificate: certPem,
                  ca: ca.certPem,
                }),
              );
            } catch (err) {
              res.statusCode = 400;
              res.end(JSON.stringify({ error: (err as FloeError).toBody() }));
            }
          })(),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = await mkdtemp(join(tmpdir(), 'floe-join-'));
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('joins with --ca and stores a complete identity', async () => {
    const dataDir = join(dir, 'with-ca');
    const result = await joinControlPlane({
      server: `${url}/`,
      token: TOKEN,
      name: 'host-a',
      dataDir,
      caPem: ca.certPem,
    });
    expect(result).toEqual({ hostId: 'host_01JB8X0Q3E6M2T9K4V7W5YB1C3', hostName: 'host-a', server: url });
    expect(requests.at(-1)).toMatchObject({ token: TOKEN, name: 'host-a' });
    expect(requests.at(-1)?.csr).toMatch(/BEGIN CERTIFICATE REQUEST/);

    const state = new AgentState(dataDir);
    const creds = await state.readCredentials();
    expect(creds?.caPem).toBe(ca.certPem);
    expect(commonNameOf(creds!.certPem)).toBe('host-a');
    expect(await state.readConfig()).toEqual({
      server: url,
      host_id: 'host_01JB8X0Q3E6M2T9K4V7W5YB1C3',
      host_name: 'host-a',
    });
    expect((await stat(state.paths.key)).mode & 0o777).toBe(0o600);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    // The key in agent.key belongs to the certificate: it was made here, never sent.
    expect(await readFile(state.paths.key, 'utf8')).toMatch(/BEGIN PRIVATE KEY/);
    expect(JSON.stringify(requests.at(-1))).not.toContain('PRIVATE KEY');
  });

  it('refuses a control plane it cannot verify', async () => {
    const other = await createCa();
    await expect(
      joinControlPlane({
        server: url,
        token: TOKEN,
        name: 'host-b',
        dataDir: join(dir, 'wrong-ca'),
        caPem: other.certPem,
      }),
    ).rejects.toThrow(/cannot join.*(self-signed|verify|certificate)/i);
    await expect(
      joinControlPlane({ server: url, token: TOKEN, name: 'host-b', dataDir: join(dir, 'no-ca') }),
    ).rejects.toMatchObject({
      code: 'validation_failed',
      details: { field: 'ca' },
    });
    expect(await new AgentState(join(dir, 'wrong-ca')).readCredentials()).toBeNull();
  });

  it('joins with --insecure-join and pins the CA it was given', async () => {
    const dataDir = join(dir, 'insecure');
    await joinControlPlane({ server: url, token: TOKEN, name: 'host-c', dataDir, insecure: true });
    expect((await new AgentState(dataDir).readCredentials())?.caPem).toBe(ca.certPem);
  });

  it("passes on the control plane's error code", async () => {
    const err = await joinControlPlane({
      server: url,
      token: 'join_wrongwrongwrong',
      name: 'host-d',
      dataDir: join(dir, 'bad'),
      caPem: ca.certPem,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FloeError);
    expect((err as FloeError).code).toBe('join_token_invalid');
  });

  it('validates the name and the URL before sending anything', async () => {
    const count = requests.length;
    await expect(
      joinControlPlane({ server: url, token: TOKEN, name: 'Bad_Name', dataDir: join(dir, 'x'), insecure: true }),
    ).rejects.toMatchObject({
      code: 'validation_failed',
      details: { field: 'name' },
    });
    expect(() => normalizeServerUrl('http://floe.example')).toThrow(/https/);
    expect(normalizeServerUrl('https://floe.example:8443/')).toBe('https://floe.example:8443');
    expect(requests.length).toBe(count);
  });
});
