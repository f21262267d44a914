import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { startTestControlPlane, type TestControlPlane } from '../testing.js';

const sqlite = storeTargets().find((t) => t.name === 'sqlite')!;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/** A PEM certificate signing request, as an agent sends when it joins. */
async function makeCsr(commonName: string): Promise<string> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: alg,
  });
  return csr.toString('pem');
}

describe('Idempotency-Key and who may store answers', () => {
  let cp: TestControlPlane;
  let csr: string;
  beforeAll(async () => {
    cp = await startTestControlPlane(await sqlite.open());
    csr = await makeCsr('node-x');
  });
  afterAll(async () => {
    await cp?.close();
  });

  const rows = async () =>
    Number(
      (
        await cp.store.db
          .selectFrom('idempotency_keys')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const join = (token: string, key: string) =>
    cp.app.http.inject({
      method: 'POST',
      url: '/v1/hosts/join',
      headers: { 'idempotency-key': key },
      payload: { token, name: 'node-x', csr },
    });

  it('an anonymous caller (a host joining) writes no row, whatever keys it sends', async () => {
    const before = await rows();
    for (let i = 0; i < 20; i++) {
      const res = await join(`floejoin_guess-${i}`, `anon-${i}`);
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
      expect(res.headers['idempotent-replayed']).toBeUndefined();
    }
    expect(await rows()).toBe(before);
  });

  it('a join with a real token and a key works as without the key, and is not replayed', async () => {
    const created = await cp.app.services.hosts.createJoinToken(cp.admin, 5);
    const first = await join(created.token, 'join-1');
    expect(first.statusCode, first.body).toBe(201);
    const again = await join(created.token, 'join-1');
    expect(again.headers['idempotent-replayed']).toBeUndefined();
    expect(again.statusCode).toBeGreaterThanOrEqual(400);
    expect(await rows()).toBe(0);
  });

  it('an authenticated POST stores its answer under its own token only', async () => {
    const post = (token: string, name: string) =>
      cp.app.http.inject({
        method: 'POST',
        url: '/v1/projects',
        headers: { authorization: `Bearer ${token}`, 'idempotency-key': 'same-key' },
        payload: { name },
      });
    const mine = await post(cp.adminToken, 'idem-a');
    expect(mine.statusCode, mine.body).toBe(201);
    const other = await cp.app.services.tokens.create(
      cp.admin,
      { name: 'second-admin', admin: true },
      async (ref) => ref,
    );
    const theirs = await post(other.secret, 'idem-b');
    expect(theirs.statusCode, theirs.body).toBe(201);
    expect(theirs.headers['idempotent-replayed']).toBeUndefined();
    const owners = await cp.store.db
      .selectFrom('idempotency_keys')
      .select('token_id')
      .where('key', '=', 'same-key')
      .execute();
    expect(owners).toHaveLength(2);
    expect(new Set(owners.map((o) => o.token_id)).size).toBe(2);
    expect(owners.map((o) => o.token_id)).toContain(other.token.id);
  });
});
