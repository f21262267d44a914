import { execFileSync } from 'node:child_process';
import {
  ERROR_CODES,
  type ErrorCode,
  type VpnNetwork,
  type VpnNetworkStats,
  type VpnPeerCreated,
  type VpnPool,
} from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { generateKeyPair } from '../services/vpn-keys.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';
import { FakeAgent } from '../testing-agent.js';

// VPN pools, networks and peers through the HTTP API on both stores: addresses carved from the pool,
// the wg-quick file and QR code, the gateways' desired state, and each refusal with its own code that
// leaves every table as it was.

interface Res {
  status: number;
  body: any;
}

/** Everything the VPN tables hold, to prove a refused request changed nothing. */
async function vpnRows(cp: TestControlPlane) {
  const db = cp.store.db;
  return {
    pools: await db.selectFrom('vpn_pools').selectAll().orderBy('id').execute(),
    networks: await db.selectFrom('vpn_networks').selectAll().orderBy('id').execute(),
    peers: await db.selectFrom('vpn_peers').selectAll().orderBy('id').execute(),
  };
}

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`VPN API on ${t.name}`, () => {
    let cp: TestControlPlane;
    let userToken: string;
    let otherToken: string;
    let gateway: string;
    const call = async (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown, token?: string) => {
      const res = await injectJson(cp, method, url, body, token);
      return res as Res;
    };
    const expectError = (res: Res, code: ErrorCode) => {
      expect(res.body?.error?.code, JSON.stringify(res.body)).toBe(code);
      expect(res.status).toBe(ERROR_CODES[code].status);
    };
    /** A request that must be refused with `code` and leave the VPN tables untouched. */
    const refused = async (
      code: ErrorCode,
      method: 'POST' | 'PATCH' | 'DELETE',
      url: string,
      body: unknown,
      token?: string,
    ) => {
      const before = await vpnRows(cp);
      expectError(await call(method, url, body, token), code);
      expect(await vpnRows(cp)).toEqual(before);
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
      for (const p of ['vpa', 'vpb']) expect((await call('POST', '/v1/projects', { name: p })).status).toBe(201);
      userToken = (await call('POST', '/v1/tokens', { name: 'u', projects: ['vpa'] })).body.secret;
      otherToken = (await call('POST', '/v1/tokens', { name: 'o', projects: ['vpb'] })).body.secret;
      gateway = await onlineTestHost(cp.app, 'gw-1');
      for (const [p, v4] of [
        ['vpa', '10.31.0.0/24'],
        ['vpb', '10.32.0.0/24'],
      ] as const) {
        const r = await call('POST', '/v1/networks', { name: 'lan', project: p, ipv4: v4, ipv6: 'auto' });
        expect(r.status, JSON.stringify(r.body)).toBe(201);
      }
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('lets admins create pools, refuses overlapping prefixes and hides gateway hosts from users', async () => {
      await refused(
        'forbidden',
        'POST',
        '/v1/vpn-pools',
        { name: 'p', ipv6: 'fd50::/40', hosts: ['gw-1'], endpoint: 'vpn.example.org' },
        userToken,
      );
      const res = await call('POST', '/v1/vpn-pools', {
        name: 'edge',
        ipv6: 'fd50::/40',
        network_prefix: 48,
        ipv4: '10.250.0.0/16',
        ipv4_prefix: 24,
        hosts: ['gw-1'],
        listen_port: 51820,
        endpoint: 'vpn.example.org',
      });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      const pool = res.body as VpnPool;
      expect(pool.spec).toEqual({
        ipv6: 'fd50::/40',
        network_prefix: 48,
        ipv4: '10.250.0.0/16',
        ipv4_prefix: 24,
        hosts: [gateway],
        listen_port: 51820,
        endpoint: 'vpn.example.org',
      });
      expect(pool.status).toEqual({ networks: 0, capacity: 256 });
      await refused('vpn_prefix_overlap', 'POST', '/v1/vpn-pools', {
        name: 'inner',
        ipv6: 'fd50:0:10::/44',
        hosts: ['gw-1'],
        endpoint: 'vpn.example.org',
      });
      await refused('vpn_prefix_overlap', 'POST', '/v1/vpn-pools', {
        name: 'v4',
        ipv6: 'fd60::/40',
        ipv4: '10.250.128.0/17',
        hosts: ['gw-1'],
        endpoint: 'vpn.example.org',
      });
      const seen = await call('GET', '/v1/vpn-pools/edge', undefined, userToken);
      expect(seen.status).toBe(200);
      expect(seen.body.spec.hosts).toEqual([]);
    });

    it('carves VPN networks from the pool, connected to the project networks, with a gateway key', async () => {
      const a = await call(
        'POST',
        '/v1/vpn-networks',
        { name: 'office', project: 'vpa', pool: 'edge', networks: ['lan'] },
        userToken,
      );
      expect(a.status, JSON.stringify(a.body)).toBe(201);
      const net = a.body as VpnNetwork;
      expect(net).toMatchObject({ ipv6: 'fd50::/48', ipv4: '10.250.0.0/24', endpoint: 'vpn.example.org:51820' });
      expect(net.public_key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      expect(JSON.stringify(net)).not.toMatch(/private/);
      const b = await call(
        'POST',
        '/v1/vpn-networks',
        { name: 'office', project: 'vpb', pool: 'edge', networks: ['lan'] },
        otherToken,
      );
      expect(b.body).toMatchObject({ ipv6: 'fd50:0:1::/48', ipv4: '10.250.1.0/24', endpoint: 'vpn.example.org:51821' });
      // B cannot name A's VPN network.
      expectError(await call('GET', `/v1/vpn-networks/${net.id}`, undefined, otherToken), 'vpn_network_not_found');
      // A network whose range overlaps another tenant's connected network on the same gateways.
      expect((await call('POST', '/v1/networks', { name: 'dup', project: 'vpa', ipv4: '10.32.0.0/25' })).status).toBe(
        201,
      );
      await refused(
        'vpn_prefix_overlap',
        'POST',
        '/v1/vpn-networks',
        { name: 'x', project: 'vpa', pool: 'edge', networks: ['dup'] },
        userToken,
      );
    });

    it('adds peers with generated or supplied keys, a wg-quick file and a QR code; refuses bad and duplicate keys', async () => {
      const gen = await call(
        'POST',
        '/v1/vpn-peers',
        { name: 'phone', project: 'vpa', vpn_network: 'office' },
        userToken,
      );
      expect(gen.status, JSON.stringify(gen.body)).toBe(201);
      const created = gen.body as VpnPeerCreated;
      expect(created.peer).toMatchObject({ ipv6: 'fd50::2/128', ipv4: '10.250.0.2/32', subnets: [] });
      expect(created.private_key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      const net = (await call('GET', '/v1/vpn-networks/office?project=vpa', undefined, userToken)).body as VpnNetwork;
      expect(created.config).toBe(
        [
          '[Interface]',
          `PrivateKey = ${created.private_key}`,
          'Address = fd50::2/128, 10.250.0.2/32',
          '',
          '[Peer]',
          `PublicKey = ${net.public_key}`,
          'Endpoint = vpn.example.org:51820',
          `AllowedIPs = fd50::/48, 10.250.0.0/24, ${(await call('GET', '/v1/networks/lan?project=vpa')).body.spec.ipv6}, 10.31.0.0/24`,
          'PersistentKeepalive = 25',
          '',
        ].join('\n'),
      );
      const png = Buffer.from(created.qr_png, 'base64');
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      // The public key floe printed derives from the private key it gave (checked with wg when present).
      try {
        const pub = execFileSync('wg', ['pubkey'], { input: `${created.private_key}\n` })
          .toString()
          .trim();
        expect(pub).toBe(created.peer.public_key);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        console.log('wg not installed: the key pair is not checked against wg pubkey');
      }
      // The private key is nowhere afterwards: not in the peer, its config, the events or the tables.
      const shown = await call('GET', `/v1/vpn-peers/${created.peer.id}?project=vpa`, undefined, userToken);
      expect(JSON.stringify(shown.body)).not.toContain(created.private_key);
      const conf = await cp.app.http.inject({
        method: 'GET',
        url: `/v1/vpn-peers/${created.peer.id}/config`,
        headers: { authorization: `Bearer ${userToken}` },
      });
      expect(conf.headers['content-type']).toMatch(/^text\/plain/);
      expect(conf.body).toContain('PrivateKey = <your private key>');
      expect(conf.body).not.toContain(created.private_key!);
      const qr = await cp.app.http.inject({
        method: 'GET',
        url: `/v1/vpn-peers/${created.peer.id}/qr.png`,
        headers: { authorization: `Bearer ${userToken}` },
      });
      expect(qr.headers['content-type']).toBe('image/png');
      expect(qr.rawPayload.subarray(1, 4).toString()).toBe('PNG');
      const everything =
        JSON.stringify(await vpnRows(cp)) + JSON.stringify((await call('GET', '/v1/events?limit=1000')).body);
      expect(everything).not.toContain(created.private_key!);

      const mine = generateKeyPair();
      const own = await call(
        'POST',
        '/v1/vpn-peers',
        {
          name: 'site',
          project: 'vpa',
          vpn_network: 'office',
          public_key: mine.publicKey,
          subnets: ['192.168.77.0/24'],
          endpoint: 'site.example.org:51820',
        },
        userToken,
      );
      expect(own.status, JSON.stringify(own.body)).toBe(201);
      expect(own.body.private_key).toBeNull();
      expect(own.body.peer).toMatchObject({ ipv6: 'fd50::3/128', subnets: ['192.168.77.0/24'] });

      const body = (name: string, extra: object) => ({ name, project: 'vpa', vpn_network: 'office', ...extra });
      for (const bad of ['not-a-key', `${mine.publicKey.slice(0, 43)}`, 'A'.repeat(44), `${'A'.repeat(42)}B=`])
        await refused('vpn_key_invalid', 'POST', '/v1/vpn-peers', body('bad', { public_key: bad }), userToken);
      await refused(
        'vpn_key_conflict',
        'POST',
        '/v1/vpn-peers',
        body('dup', { public_key: mine.publicKey }),
        userToken,
      );
      await refused('vpn_key_conflict', 'POST', '/v1/vpn-peers', body('gw', { public_key: net.public_key }), userToken);
      // Another tenant cannot take the key either (one key, one peer).
      await call(
        'POST',
        '/v1/vpn-peers',
        { name: 'x', project: 'vpb', vpn_network: 'office', public_key: mine.publicKey },
        otherToken,
      ).then((r) => expectError(r, 'vpn_key_conflict'));
      for (const subnets of [
        ['192.168.77.128/25'],
        ['10.31.0.0/16'],
        ['fd50:0:5::/64'],
        ['10.40.0.0/24', '10.40.0.0/23'],
      ])
        await refused('vpn_prefix_overlap', 'POST', '/v1/vpn-peers', body('s2', { subnets }), userToken);
      await refused('validation_failed', 'POST', '/v1/vpn-peers', body('s3', { subnets: ['10.40.0.1/24'] }), userToken);

      // The gateway gets one interface per VPN network, with every peer and what its peers may reach.
      const desired = await cp.app.services.vpn.desiredForHost(gateway);
      expect(desired.map((d) => [d.project, d.listen_port, d.addresses])).toEqual([
        ['vpa', 51820, ['fd50::1/48', '10.250.0.1/24']],
        ['vpb', 51821, ['fd50:0:1::1/48', '10.250.1.1/24']],
      ]);
      expect(desired[0]!.peers.map((p) => p.allowed_ips)).toEqual([
        ['fd50::2/128', '10.250.0.2/32'],
        ['fd50::3/128', '10.250.0.3/32', '192.168.77.0/24'],
      ]);
      expect(desired[0]!.peers.map((p) => p.endpoint)).toEqual([null, 'site.example.org:51820']);
      expect(desired[0]!.reach).toContain('10.31.0.0/24');
      expect(desired[0]!.reach).toContain('192.168.77.0/24');
      expect(desired[0]!.reach).not.toContain('10.32.0.0/24');
      const pub = execFileSync('wg', ['pubkey'], { input: `${desired[0]!.private_key}\n` })
        .toString()
        .trim();
      expect(pub).toBe(net.public_key);
      // The gateway's private key is stored sealed, not in the clear.
      const rows = await vpnRows(cp);
      expect(JSON.stringify(rows)).not.toContain(desired[0]!.private_key);

      // Removing a peer frees its address for the next.
      expect((await call('DELETE', `/v1/vpn-peers/phone?project=vpa`, undefined, userToken)).status).toBe(204);
      const again = await call('POST', '/v1/vpn-peers', body('tablet', {}), userToken);
      expect(again.body.peer.ipv6).toBe('fd50::2/128');
    });

    it('refuses a VPN network when the pool has no prefix left, and counts VPN networks and peers in quotas', async () => {
      const small = await call('POST', '/v1/vpn-pools', {
        name: 'tiny',
        ipv6: 'fd70::/63',
        network_prefix: 64,
        hosts: ['gw-1'],
        listen_port: 52000,
        endpoint: '2001:db8::1',
      });
      expect(small.status, JSON.stringify(small.body)).toBe(201);
      for (const n of ['t1', 't2']) {
        const r = await call('POST', '/v1/vpn-networks', { name: n, project: 'vpb', pool: 'tiny' }, otherToken);
        expect(r.status, JSON.stringify(r.body)).toBe(201);
      }
      expect((await call('GET', '/v1/vpn-networks/t2?project=vpb', undefined, otherToken)).body.endpoint).toBe(
        '[2001:db8::1]:52001',
      );
      await refused(
        'vpn_pool_exhausted',
        'POST',
        '/v1/vpn-networks',
        { name: 't3', project: 'vpb', pool: 'tiny' },
        otherToken,
      );
      expect((await call('DELETE', '/v1/vpn-networks/t1?project=vpb', undefined, otherToken)).status).toBe(204);
      const reuse = await call('POST', '/v1/vpn-networks', { name: 't4', project: 'vpb', pool: 'tiny' }, otherToken);
      expect(reuse.body.ipv6).toBe('fd70::/64');
      expectError(await call('DELETE', '/v1/vpn-pools/tiny'), 'in_use');

      expect((await call('PUT' as 'POST', '/v1/projects/vpb/limits', { vpn_networks: 3, vpn_peers: 1 })).status).toBe(
        200,
      );
      await refused(
        'quota_exceeded',
        'POST',
        '/v1/vpn-networks',
        { name: 't5', project: 'vpb', pool: 'tiny' },
        otherToken,
      );
      expect(
        (await call('POST', '/v1/vpn-peers', { name: 'p1', project: 'vpb', vpn_network: 't4' }, otherToken)).status,
      ).toBe(201);
      await refused(
        'quota_exceeded',
        'POST',
        '/v1/vpn-peers',
        { name: 'p2', project: 'vpb', vpn_network: 't4' },
        otherToken,
      );
      const usage = await call('GET', '/v1/projects/vpb/usage', undefined, otherToken);
      expect(JSON.stringify(usage.body)).toMatch(/vpn_networks/);
    });

    it('changes the connected networks in place: overlap checks as at creation, history, the gateways told', async () => {
      const lab = await call('POST', '/v1/networks', {
        name: 'lab',
        project: 'vpa',
        ipv4: '10.35.0.0/24',
        ipv6: 'auto',
      });
      expect(lab.status, JSON.stringify(lab.body)).toBe(201);
      const lan = (await call('GET', '/v1/networks/lan?project=vpa')).body;
      const before = (await call('GET', '/v1/vpn-networks/office?project=vpa', undefined, userToken))
        .body as VpnNetwork;
      const desiredBefore = (await cp.app.services.vpn.desiredForHost(gateway)).find((d) => d.id === before.id)!;
      expect(desiredBefore.reach).not.toContain('10.35.0.0/24');

      const res = await call(
        'PATCH',
        '/v1/vpn-networks/office?project=vpa',
        { spec: { networks: ['lan', 'lab'] }, labels: { team: 'ops' } },
        userToken,
      );
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      const after = res.body as VpnNetwork;
      expect(after.spec.networks).toEqual([lan.id, lab.body.id]);
      expect(after.labels).toEqual({ team: 'ops' });
      expect(after.revision).toBe(before.revision + 1);
      expect({ ...after, spec: before.spec, labels: before.labels, revision: 0, updated_at: '' }).toEqual({
        ...before,
        revision: 0,
        updated_at: '',
      });
      // The gateway's interface keeps its key, port, addresses and peers; only what the peers reach grows.
      const desired = (await cp.app.services.vpn.desiredForHost(gateway)).find((d) => d.id === before.id)!;
      expect(desired.reach).toContain('10.35.0.0/24');
      expect(desired.reach).toContain(lab.body.spec.ipv6);
      expect({ ...desired, reach: [] }).toEqual({ ...desiredBefore, reach: [] });
      const history = await cp.store.db
        .selectFrom('history')
        .select(['action', 'revision'])
        .where('resource_id', '=', before.id)
        .orderBy('revision')
        .execute();
      expect(history.map((h) => [h.action, Number(h.revision)])).toEqual([
        ['create', 1],
        ['update', 2],
      ]);

      // Each refusal has its code and changes nothing.
      const office = '/v1/vpn-networks/office?project=vpa';
      await refused('vpn_prefix_overlap', 'PATCH', office, { spec: { networks: ['lan', 'dup'] } }, userToken);
      await refused('network_not_found', 'PATCH', office, { spec: { networks: ['lan', 'nope'] } }, userToken);
      await refused('validation_failed', 'PATCH', office, { spec: { netwroks: ['lan'] } }, userToken);
      await refused('vpn_network_not_found', 'PATCH', office, { spec: { networks: [] } }, otherToken);
      // A network in the pool's own prefix cannot be connected either.
      const inPool = await call('POST', '/v1/networks', { name: 'inpool', project: 'vpa', ipv4: '10.250.9.0/24' });
      expect(inPool.status, JSON.stringify(inPool.body)).toBe(201);
      await refused('vpn_prefix_overlap', 'PATCH', office, { spec: { networks: ['inpool'] } }, userToken);
      expect((await call('DELETE', '/v1/networks/inpool?project=vpa')).status).toBe(204);

      // Back to one network: the gateway's reach shrinks again, labels stay.
      const back = await call('PATCH', office, { spec: { networks: ['lan'] } }, userToken);
      expect(back.status, JSON.stringify(back.body)).toBe(200);
      expect(back.body.labels).toEqual({ team: 'ops' });
      const shrunk = (await cp.app.services.vpn.desiredForHost(gateway)).find((d) => d.id === before.id)!;
      expect(shrunk.reach).not.toContain('10.35.0.0/24');
    });

    it("never lets a site peer's subnet and a connected network that overlap it in at once", async () => {
      for (let i = 0; i < 3; i++) {
        expect(
          (await call('POST', '/v1/networks', { name: `site-net${i}`, project: 'vpa', ipv4: `10.62.${i}.0/24` }))
            .status,
        ).toBe(201);
        const [patch, peer] = await Promise.all([
          call(
            'PATCH',
            '/v1/vpn-networks/office?project=vpa',
            { spec: { networks: ['lan', `site-net${i}`] } },
            userToken,
          ),
          call(
            'POST',
            '/v1/vpn-peers',
            { name: `site${i}`, project: 'vpa', vpn_network: 'office', subnets: [`10.62.${i}.128/25`] },
            userToken,
          ),
        ]);
        // One of them first, whichever: the other sees it and is refused.
        expect(patch.status === 200 ? peer.status : patch.status, JSON.stringify([patch.body, peer.body])).toBe(409);
        expect(patch.status === 200 || peer.status === 201).toBe(true);
        expect([patch, peer].find((r) => r.status === 409)!.body.error.code).toBe('vpn_prefix_overlap');
        if (patch.status === 200)
          expect(
            (await call('PATCH', '/v1/vpn-networks/office?project=vpa', { spec: { networks: ['lan'] } }, userToken))
              .status,
          ).toBe(200);
        else
          expect((await call('DELETE', `/v1/vpn-peers/site${i}?project=vpa`, undefined, userToken)).status).toBe(204);
      }
    });

    it('lets concurrent changes of one pool take turns: never two overlapping connections, never a deleted one', async () => {
      const make = async (name: string, project: string, ipv4: string) =>
        expect((await call('POST', '/v1/networks', { name, project, ipv4 })).status).toBe(201);
      await make('race-a', 'vpa', '10.60.0.0/24');
      await make('race-b', 'vpb', '10.60.0.0/25');
      const [a, b] = await Promise.all([
        call('PATCH', '/v1/vpn-networks/office?project=vpa', { spec: { networks: ['lan', 'race-a'] } }, userToken),
        call('PATCH', '/v1/vpn-networks/office?project=vpb', { spec: { networks: ['lan', 'race-b'] } }, otherToken),
      ]);
      expect([a.status, b.status].sort()).toEqual([200, 409]);
      expect([a, b].find((r) => r.status === 409)!.body.error.code).toBe('vpn_prefix_overlap');
      for (const [p, token] of [
        ['vpa', userToken],
        ['vpb', otherToken],
      ] as const)
        expect(
          (await call('PATCH', `/v1/vpn-networks/office?project=${p}`, { spec: { networks: ['lan'] } }, token)).status,
        ).toBe(200);
      for (let i = 0; i < 4; i++) {
        await make(`race-c${i}`, 'vpa', `10.61.${i}.0/24`);
        const [patch, del] = await Promise.all([
          call(
            'PATCH',
            '/v1/vpn-networks/office?project=vpa',
            { spec: { networks: ['lan', `race-c${i}`] } },
            userToken,
          ),
          call('DELETE', `/v1/networks/race-c${i}?project=vpa`, undefined, userToken),
        ]);
        const office = (await call('GET', '/v1/vpn-networks/office?project=vpa', undefined, userToken))
          .body as VpnNetwork;
        const exists = (await call('GET', `/v1/networks/race-c${i}?project=vpa`)).status === 200;
        if (patch.status === 200) {
          expectError(del, 'in_use');
          expect(exists).toBe(true);
          expect(office.spec.networks).toHaveLength(2);
          expect(
            (await call('PATCH', '/v1/vpn-networks/office?project=vpa', { spec: { networks: ['lan'] } })).status,
          ).toBe(200);
        } else {
          expect(del.status).toBe(204);
          expectError(patch, 'network_not_found');
          expect(exists).toBe(false);
          expect(office.spec.networks).toHaveLength(1);
        }
      }
    });

    it('refuses to delete a private network a VPN network is connected to, naming it', async () => {
      const rows = async () => ({
        vpn: await vpnRows(cp),
        networks: await cp.store.db.selectFrom('networks').selectAll().orderBy('id').execute(),
      });
      const before = await rows();
      const res = await call('DELETE', '/v1/networks/lan?project=vpa', undefined, userToken);
      expectError(res, 'in_use');
      expect(res.body.error.message).toContain('"office"');
      expect(res.body.error.details).toMatchObject({ kind: 'network', vpn_networks: ['office'] });
      expect(await rows()).toEqual(before);
      // Not connected (any more): deleted as before.
      expect((await call('DELETE', '/v1/networks/lab?project=vpa', undefined, userToken)).status).toBe(204);
    });

    it("reads peers' handshakes and transfer from the gateways over their agent links", async () => {
      const agent = await FakeAgent.connect(cp, 'gw-live', '192.0.2.10');
      try {
        const pool = await call('POST', '/v1/vpn-pools', {
          name: 'live',
          ipv6: 'fd80::/40',
          network_prefix: 48,
          hosts: ['gw-live', 'gw-1'],
          listen_port: 53000,
          endpoint: 'live.example.org',
        });
        expect(pool.status, JSON.stringify(pool.body)).toBe(201);
        const net = await call('POST', '/v1/vpn-networks', { name: 'remote', project: 'vpa', pool: 'live' }, userToken);
        expect(net.status, JSON.stringify(net.body)).toBe(201);
        const peer = (name: string) =>
          call('POST', '/v1/vpn-peers', { name, project: 'vpa', vpn_network: 'remote' }, userToken);
        const laptop = (await peer('laptop')).body as VpnPeerCreated;
        const spare = (await peer('spare')).body as VpnPeerCreated;
        // The gateway gets the new interface.
        await agent.latest('vpn', (items) => items.some((v) => v.id === net.body.id && v.peers.length === 2));

        /** Ask for the stats; the stand-in gateway answers with `reply` (built from the request it got). */
        const ask = async (reply: () => unknown) => {
          const from = agent.messages.length;
          const pending = call('GET', '/v1/vpn-networks/remote/stats?project=vpa', undefined, userToken);
          const req = await agent.next('vpn.stats.get', from);
          expect(req.vpn_network_id).toBe(net.body.id);
          agent.send({ ...(reply() as object), request_id: req.request_id, vpn_network_id: req.vpn_network_id });
          return pending;
        };
        const now = Math.floor(Date.now() / 1000);
        const stranger = generateKeyPair().publicKey;
        const res = await ask(() => ({
          type: 'vpn.stats',
          peers: [
            { public_key: stranger, endpoint: '203.0.113.1:1', latest_handshake: now, rx_bytes: 5, tx_bytes: 5 },
            {
              public_key: laptop.peer.public_key,
              endpoint: '198.51.100.7:40001',
              latest_handshake: now - 30,
              rx_bytes: 1240,
              tx_bytes: 980,
            },
            { public_key: spare.peer.public_key, endpoint: null, latest_handshake: 0, rx_bytes: 0, tx_bytes: 0 },
          ],
        }));
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        const stats = res.body as VpnNetworkStats;
        // gw-1 is not connected: one of the two gateways answered.
        expect(stats.gateways).toEqual({ total: 2, answered: 1 });
        expect(stats.vpn_network).toBe(net.body.id);
        expect(stats.peers.map((p) => p.name)).toEqual(['laptop', 'spare']);
        const [l, s] = stats.peers;
        expect(l).toMatchObject({
          peer: laptop.peer.id,
          public_key: laptop.peer.public_key,
          endpoint: '198.51.100.7:40001',
          latest_handshake: new Date((now - 30) * 1000).toISOString(),
          rx_bytes: 1240,
          tx_bytes: 980,
        });
        expect(l!.handshake_age_seconds).toBeGreaterThanOrEqual(30);
        expect(l!.handshake_age_seconds).toBeLessThan(40);
        expect(s).toMatchObject({ endpoint: null, latest_handshake: null, handshake_age_seconds: null, rx_bytes: 0 });
        expect(JSON.stringify(stats)).not.toContain(stranger);

        // The gateway has no interface yet: its reason is the answer (the other gateway is offline).
        const early = await ask(() => ({
          type: 'vpn.stats',
          error: { code: 'invalid_state', message: 'this gateway has no interface for it yet' },
        }));
        expectError(early, 'invalid_state');
        // Another tenant cannot read them.
        expectError(
          await call('GET', `/v1/vpn-networks/${net.body.id}/stats`, undefined, otherToken),
          'vpn_network_not_found',
        );
        // A pool whose only gateway is not connected.
        expectError(
          await call('GET', '/v1/vpn-networks/office/stats?project=vpa', undefined, userToken),
          'host_offline',
        );
        // Counters that fail the schema are refused: the link is closed, nothing of them is shown.
        const bad = await ask(() => ({
          type: 'vpn.stats',
          peers: [
            { public_key: laptop.peer.public_key, endpoint: null, latest_handshake: 0, rx_bytes: -1, tx_bytes: 0 },
          ],
        }));
        expectError(bad, 'host_offline');
      } finally {
        agent.close();
      }
    });
  });
}
